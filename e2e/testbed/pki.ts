import { generateKeyPair, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import forge from 'node-forge';

/** A PEM certificate and its PEM private key. */
export interface KeyPair {
  certPem: string;
  keyPem: string;
}

/** Where a cluster's PKI files are, and the PEMs for building kubeconfigs. */
export interface ClusterPki {
  dir: string;
  ca: KeyPair;
  caCertFile: string;
  caKeyFile: string;
  apiserverCertFile: string;
  apiserverKeyFile: string;
  /** Used by the kube-apiserver to reach kubelet servers (kwok's server plays the kubelet). */
  kubeletClientCertFile: string;
  kubeletClientKeyFile: string;
  /** The aggregation layer's client identity (front-proxy-client). */
  proxyClientCertFile: string;
  proxyClientKeyFile: string;
  kwokServingCertFile: string;
  kwokServingKeyFile: string;
  serviceAccountKeyFile: string;
  serviceAccountPubFile: string;
  admin: KeyPair;
  controllerManager: KeyPair;
  scheduler: KeyPair;
  kwok: KeyPair;
}

interface RsaKeys {
  publicPem: string;
  privatePem: string;
}

function rsaKeys(): Promise<RsaKeys> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      'rsa',
      {
        modulusLength: 2048,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      },
      (err, publicPem, privatePem) => (err ? reject(err) : resolve({ publicPem, privatePem })),
    );
  });
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // a positive serial number
  return bytes.toString('hex');
}

interface LeafOptions {
  commonName: string;
  organizations?: string[];
  server?: { dnsNames: string[]; ips: string[] };
  client?: boolean;
}

const HOUR = 3600_000;

function createCa(name: string, keys: RsaKeys): KeyPair {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicPem);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - HOUR);
  cert.validity.notAfter = new Date(Date.now() + 10 * 365 * 24 * HOUR);
  const subject = [{ name: 'commonName', value: `spillway-testbed-ca-${name}` }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keys.privatePem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem };
}

function createLeaf(ca: KeyPair, keys: RsaKeys, opts: LeafOptions): KeyPair {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicPem);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - HOUR);
  cert.validity.notAfter = new Date(Date.now() + 365 * 24 * HOUR);
  cert.setSubject([
    { name: 'commonName', value: opts.commonName },
    ...(opts.organizations ?? []).map((value) => ({ name: 'organizationName', value })),
  ]);
  cert.setIssuer(caCert.subject.attributes);
  const extensions: object[] = [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    {
      name: 'extKeyUsage',
      serverAuth: opts.server !== undefined,
      clientAuth: opts.client === true,
    },
    {
      name: 'authorityKeyIdentifier',
      keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes(),
    },
  ];
  if (opts.server) {
    extensions.push({
      name: 'subjectAltName',
      altNames: [
        ...opts.server.dnsNames.map((value) => ({ type: 2, value })),
        ...opts.server.ips.map((ip) => ({ type: 7, ip })),
      ],
    });
  }
  cert.setExtensions(extensions);
  cert.sign(forge.pki.privateKeyFromPem(ca.keyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem };
}

/** The API server's service IP for `kubernetes.default` in the test bed's service range. */
export const KUBERNETES_SERVICE_IP = '10.96.0.1';
export const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/16';

/**
 * Creates a cluster's own CA and every certificate its components need, and
 * writes the files the Kubernetes binaries read into `dir`.
 */
export async function createClusterPki(name: string, dir: string): Promise<ClusterPki> {
  // Key generation is native and runs on the thread pool, so all at once.
  const [
    caKeys,
    apiKeys,
    kubeletKeys,
    kwokServeKeys,
    saKeys,
    adminKeys,
    kcmKeys,
    schedKeys,
    kwokKeys,
    proxyKeys,
  ] = await Promise.all([
    rsaKeys(),
    rsaKeys(),
    rsaKeys(),
    rsaKeys(),
    rsaKeys(),
    rsaKeys(),
    rsaKeys(),
    rsaKeys(),
    rsaKeys(),
    rsaKeys(),
  ]);
  const ca = createCa(name, caKeys);
  const loopback = { dnsNames: ['localhost'], ips: ['127.0.0.1'] };
  const apiserver = createLeaf(ca, apiKeys, {
    commonName: 'kube-apiserver',
    server: {
      dnsNames: [
        'localhost',
        'kubernetes',
        'kubernetes.default',
        'kubernetes.default.svc',
        'kubernetes.default.svc.cluster.local',
      ],
      ips: ['127.0.0.1', KUBERNETES_SERVICE_IP],
    },
  });
  const kubeletClient = createLeaf(ca, kubeletKeys, {
    commonName: 'kube-apiserver-kubelet-client',
    organizations: ['system:masters'],
    client: true,
  });
  const proxyClient = createLeaf(ca, proxyKeys, { commonName: 'front-proxy-client', client: true });
  const kwokServing = createLeaf(ca, kwokServeKeys, {
    commonName: 'kwok-server',
    server: loopback,
  });
  const admin = createLeaf(ca, adminKeys, {
    commonName: 'spillway-testbed-admin',
    organizations: ['system:masters'],
    client: true,
  });
  const controllerManager = createLeaf(ca, kcmKeys, {
    commonName: 'system:kube-controller-manager',
    client: true,
  });
  const scheduler = createLeaf(ca, schedKeys, {
    commonName: 'system:kube-scheduler',
    client: true,
  });
  // kwok writes the status of every node and pod it simulates, as a kubelet fleet would.
  const kwok = createLeaf(ca, kwokKeys, {
    commonName: 'kwok-controller',
    organizations: ['system:masters'],
    client: true,
  });

  const file = (n: string): string => join(dir, n);
  const pki: ClusterPki = {
    dir,
    ca,
    caCertFile: file('ca.crt'),
    caKeyFile: file('ca.key'),
    apiserverCertFile: file('apiserver.crt'),
    apiserverKeyFile: file('apiserver.key'),
    kubeletClientCertFile: file('apiserver-kubelet-client.crt'),
    kubeletClientKeyFile: file('apiserver-kubelet-client.key'),
    proxyClientCertFile: file('front-proxy-client.crt'),
    proxyClientKeyFile: file('front-proxy-client.key'),
    kwokServingCertFile: file('kwok-serving.crt'),
    kwokServingKeyFile: file('kwok-serving.key'),
    serviceAccountKeyFile: file('sa.key'),
    serviceAccountPubFile: file('sa.pub'),
    admin,
    controllerManager,
    scheduler,
    kwok,
  };
  const mode = { mode: 0o600 };
  await Promise.all([
    writeFile(pki.caCertFile, ca.certPem),
    writeFile(pki.caKeyFile, ca.keyPem, mode),
    writeFile(pki.apiserverCertFile, apiserver.certPem),
    writeFile(pki.apiserverKeyFile, apiserver.keyPem, mode),
    writeFile(pki.kubeletClientCertFile, kubeletClient.certPem),
    writeFile(pki.kubeletClientKeyFile, kubeletClient.keyPem, mode),
    writeFile(pki.proxyClientCertFile, proxyClient.certPem),
    writeFile(pki.proxyClientKeyFile, proxyClient.keyPem, mode),
    writeFile(pki.kwokServingCertFile, kwokServing.certPem),
    writeFile(pki.kwokServingKeyFile, kwokServing.keyPem, mode),
    writeFile(pki.serviceAccountKeyFile, saKeys.privatePem, mode),
    writeFile(pki.serviceAccountPubFile, saKeys.publicPem),
  ]);
  return pki;
}

/** A kubeconfig (JSON, which every Kubernetes client reads as YAML) with embedded credentials. */
export function kubeconfigJson(opts: {
  clusterName: string;
  server: string;
  caPem: string;
  user: string;
  client: KeyPair;
}): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: opts.clusterName,
          cluster: { server: opts.server, 'certificate-authority-data': b64(opts.caPem) },
        },
      ],
      users: [
        {
          name: opts.user,
          user: {
            'client-certificate-data': b64(opts.client.certPem),
            'client-key-data': b64(opts.client.keyPem),
          },
        },
      ],
      contexts: [
        { name: opts.clusterName, context: { cluster: opts.clusterName, user: opts.user } },
      ],
      'current-context': opts.clusterName,
    },
    null,
    2,
  );
}
