// spillctl broker init: the broker's PKI directory, an admin identity, the settings file.
import { resolve } from 'node:path';
import { brokerInit } from '../broker-init.js';
import type { Context } from '../context.js';
import { renderData, type OutputFormat } from '../output.js';
import { writeSettings } from '../settings.js';

export interface BrokerInitFlags {
  dir: string;
  force?: boolean;
  serverDnsNames: string[];
  serverIps: string[];
  adminName: string;
  broker: string;
  writeConfig: boolean;
  output: OutputFormat;
}

export function cmdBrokerInit(ctx: Context, f: BrokerInitFlags): void {
  const result = brokerInit({
    dir: resolve(ctx.io.cwd, f.dir),
    force: f.force === true,
    dnsNames: f.serverDnsNames,
    ipAddresses: f.serverIps,
    adminName: f.adminName,
  });
  if (f.writeConfig) {
    writeSettings(ctx.configPath, {
      server: ctx.server,
      token: result.adminToken,
      broker: f.broker,
      caFile: result.caFile,
      clientCertificate: result.adminCertFile,
      clientKey: result.adminKeyFile,
    });
  }
  if (f.output === 'json' || f.output === 'yaml') {
    ctx.out(
      renderData(
        {
          ...result,
          server: ctx.server,
          broker: f.broker,
          configFile: f.writeConfig ? ctx.configPath : null,
        },
        f.output,
      ),
    );
    return;
  }
  const lines = result.files.map((x) => `wrote ${x.path} (${x.mode})`);
  lines.push(
    f.writeConfig
      ? `admin token ${result.adminTokenId} saved to ${ctx.configPath} (server ${ctx.server}, broker ${f.broker})`
      : `admin token (shown once): ${result.adminToken}`,
    '',
    'Start the broker on this directory:',
    `  spillway-broker --pki-dir ${result.dir}`,
    'then join clusters:',
    `  spillctl join <cluster-name> --role donor --kubeconfig <file>`,
  );
  ctx.out(`${lines.join('\n')}\n`);
}
