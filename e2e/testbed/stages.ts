// kwok plays the kubelets of the test bed's fake nodes through "stages": rules
// that match a Node or Pod and patch its status (or delete it). From kwok v0.8
// no stages are built in, so the test bed passes its own set in kwok's config.
//
// Pod behaviour is steered by annotations on the pod (or a Job's pod template):
//   testbed.spillway.io/outcome    succeed | fail | run   (Job pods default to succeed,
//                                                          other pods keep running)
//   testbed.spillway.io/run-for    Go duration spent Running before the outcome ("2s")
//   testbed.spillway.io/exit-code  container exit code when failing (default 1)
//   testbed.spillway.io/reason     container termination reason when failing (default Error)

/** Annotation that decides what a pod on a fake node does once Running. */
export const OUTCOME_ANNOTATION = 'testbed.spillway.io/outcome';
/** Annotation: how long (Go duration, e.g. "2s") a pod stays Running before its outcome. */
export const RUN_FOR_ANNOTATION = 'testbed.spillway.io/run-for';
/** Annotation: exit code of the failed containers (default 1). */
export const EXIT_CODE_ANNOTATION = 'testbed.spillway.io/exit-code';
/** Annotation: termination reason of the failed containers (default "Error"). */
export const REASON_ANNOTATION = 'testbed.spillway.io/reason';

export type PodOutcome = 'succeed' | 'fail' | 'run';

/** Annotations that make a pod (or every pod of a Job) end a given way. */
export function podOutcome(
  outcome: PodOutcome,
  opts: { runFor?: string; exitCode?: number; reason?: string } = {},
): Record<string, string> {
  const annotations: Record<string, string> = { [OUTCOME_ANNOTATION]: outcome };
  if (opts.runFor !== undefined) annotations[RUN_FOR_ANNOTATION] = opts.runFor;
  if (opts.exitCode !== undefined) annotations[EXIT_CODE_ANNOTATION] = String(opts.exitCode);
  if (opts.reason !== undefined) annotations[REASON_ANNOTATION] = opts.reason;
  return annotations;
}

interface Expression {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

interface Stage {
  name: string;
  kind: 'Node' | 'Pod';
  match: Expression[];
  delay?: { fromAnnotation: string } | { ms: number; jitterMs: number };
  next: { statusTemplate: string } | { delete: true };
}

const annotation = (name: string): string => `.metadata.annotations["${name}"]`;
const readyStatus = '.status.conditions.[] | select( .type == "Ready" ) | .status';
const notDeleted: Expression = { key: '.metadata.deletionTimestamp', operator: 'DoesNotExist' };
const phaseIs = (phase: string): Expression => ({
  key: '.status.phase',
  operator: 'In',
  values: [phase],
});

const nodeConditions = `
{{ $now := Now }}
conditions:
{{ range $c := list
  (list "Ready" "True" "KubeletReady" "kubelet is posting ready status")
  (list "MemoryPressure" "False" "KubeletHasSufficientMemory" "kubelet has sufficient memory available")
  (list "DiskPressure" "False" "KubeletHasNoDiskPressure" "kubelet has no disk pressure")
  (list "PIDPressure" "False" "KubeletHasSufficientPID" "kubelet has sufficient PID available")
  (list "NetworkUnavailable" "False" "RouteCreated" "the test bed's nodes need no routes") }}
- type: {{ index $c 0 | Quote }}
  status: {{ index $c 1 | Quote }}
  reason: {{ index $c 2 | Quote }}
  message: {{ index $c 3 | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ end }}`;

// Capacity and allocatable are left as the test created them: the status is
// applied as a strategic merge patch, so only the fields written here change.
const nodeReadyTemplate = `${nodeConditions}
addresses:
- type: InternalIP
  address: {{ NodeIP | Quote }}
- type: Hostname
  address: {{ .metadata.name | Quote }}
{{ with NodePort }}
daemonEndpoints:
  kubeletEndpoint:
    Port: {{ . }}
{{ end }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  kubeProxyVersion: {{ printf "kwok-%s" Version | Quote }}
  containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
  kernelVersion: {{ printf "kwok-%s" Version | Quote }}
  osImage: "Spillway test bed"
  machineID: {{ .metadata.name | Quote }}
  systemUUID: {{ .metadata.uid | Quote }}
  bootID: {{ .metadata.uid | Quote }}
phase: Running`;

const podRunningTemplate = `
{{ $now := Now }}
conditions:
- type: PodReadyToStartContainers
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: {{ printf "testbed://%s" .image | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: {{ printf "testbed://%s" .image | Quote }}
  containerID: {{ printf "testbed://%s" .name | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ with NodeIPWith .spec.nodeName }}
hostIP: {{ . | Quote }}
hostIPs:
- ip: {{ . | Quote }}
{{ end }}
{{ with PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ . | Quote }}
podIPs:
- ip: {{ . | Quote }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}`;

function podTerminatedTemplate(phase: 'Succeeded' | 'Failed'): string {
  const failed = phase === 'Failed';
  const code = failed ? `{{ or ( index $annotations "${EXIT_CODE_ANNOTATION}" ) "1" }}` : '0';
  const reason = failed
    ? `{{ or ( index $annotations "${REASON_ANNOTATION}" ) "Error" | Quote }}`
    : 'Completed';
  return `
{{ $now := Now }}
{{ $annotations := or .metadata.annotations dict }}
{{ $started := or .status.startTime $now }}
conditions:
- type: PodReadyToStartContainers
  status: "False"
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "False"
  reason: ${failed ? 'PodFailed' : 'PodCompleted'}
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: ${failed ? 'PodFailed' : 'PodCompleted'}
  lastTransitionTime: {{ $now | Quote }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: {{ printf "testbed://%s" .image | Quote }}
  containerID: {{ printf "testbed://%s" .name | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: ${code}
      reason: ${reason}
      startedAt: {{ $started | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
phase: ${phase}`;
}

const runFor = { fromAnnotation: RUN_FOR_ANNOTATION };

const STAGES: Stage[] = [
  {
    name: 'spillway-node-ready',
    kind: 'Node',
    match: [{ key: readyStatus, operator: 'NotIn', values: ['True'] }],
    next: { statusTemplate: nodeReadyTemplate },
  },
  {
    // Status heartbeat every few minutes, as a kubelet does; liveness itself
    // comes from kwok renewing the node's Lease.
    name: 'spillway-node-heartbeat',
    kind: 'Node',
    match: [phaseIs('Running'), { key: readyStatus, operator: 'In', values: ['True'] }],
    delay: { ms: 240_000, jitterMs: 60_000 },
    next: { statusTemplate: nodeConditions },
  },
  {
    name: 'spillway-pod-running',
    kind: 'Pod',
    match: [
      notDeleted,
      phaseIs('Pending'),
      { key: readyStatus, operator: 'NotIn', values: ['True'] },
    ],
    next: { statusTemplate: podRunningTemplate },
  },
  {
    name: 'spillway-job-pod-succeed',
    kind: 'Pod',
    match: [
      notDeleted,
      phaseIs('Running'),
      { key: '.metadata.ownerReferences.[].kind', operator: 'In', values: ['Job'] },
      { key: annotation(OUTCOME_ANNOTATION), operator: 'NotIn', values: ['fail', 'run'] },
    ],
    delay: runFor,
    next: { statusTemplate: podTerminatedTemplate('Succeeded') },
  },
  {
    name: 'spillway-pod-succeed',
    kind: 'Pod',
    match: [
      notDeleted,
      phaseIs('Running'),
      { key: annotation(OUTCOME_ANNOTATION), operator: 'In', values: ['succeed'] },
    ],
    delay: runFor,
    next: { statusTemplate: podTerminatedTemplate('Succeeded') },
  },
  {
    name: 'spillway-pod-fail',
    kind: 'Pod',
    match: [
      notDeleted,
      phaseIs('Running'),
      { key: annotation(OUTCOME_ANNOTATION), operator: 'In', values: ['fail'] },
    ],
    delay: runFor,
    next: { statusTemplate: podTerminatedTemplate('Failed') },
  },
  {
    // A kubelet removes a terminating pod once its containers are gone; here they never ran.
    name: 'spillway-pod-delete',
    kind: 'Pod',
    match: [{ key: '.metadata.deletionTimestamp', operator: 'Exists' }],
    next: { delete: true },
  },
];

function stageObject(stage: Stage): object {
  let delay: object | undefined;
  if (stage.delay && 'fromAnnotation' in stage.delay) {
    delay = {
      durationMilliseconds: 0,
      durationFrom: { jq: { expression: annotation(stage.delay.fromAnnotation) } },
    };
  } else if (stage.delay) {
    delay = {
      durationMilliseconds: stage.delay.ms,
      jitterDurationMilliseconds: stage.delay.ms + stage.delay.jitterMs,
    };
  }
  return {
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'Stage',
    metadata: { name: stage.name },
    spec: {
      resourceRef: { apiGroup: 'v1', kind: stage.kind },
      selector: {
        matchExpressions: stage.match.map((m) => ({
          key: m.key,
          operator: m.operator,
          ...(m.values ? { values: m.values } : {}),
        })),
      },
      ...(delay ? { delay } : {}),
      next: stage.next,
    },
  };
}

/** kwok's configuration file: its options plus every stage, as a multi-document YAML (JSON documents). */
export function kwokConfigFile(options: Record<string, unknown>): string {
  const docs: object[] = [
    { apiVersion: 'config.kwok.x-k8s.io/v1alpha1', kind: 'KwokConfiguration', options },
    ...STAGES.map(stageObject),
  ];
  return docs.map((d) => JSON.stringify(d, null, 2)).join('\n---\n') + '\n';
}
