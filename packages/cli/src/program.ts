import { Argument, Command, CommanderError, Option } from 'commander';
import { ErrorCode, SpillwayError } from '@spillway/common';
import { cmdBrokerInit } from './commands/broker-init.js';
import { cmdCordon } from './commands/cordon.js';
import { cmdDescribe } from './commands/describe.js';
import { RESOURCE_NAMES, cmdGet } from './commands/get.js';
import { cmdJoin } from './commands/join.js';
import { cmdLocalList, cmdLocalStop } from './commands/local.js';
import { cmdOffloadNamespace } from './commands/offload.js';
import { cmdPeer } from './commands/peer.js';
import { cmdSimulate } from './commands/simulate.js';
import { cmdTokenCreate } from './commands/token.js';
import { cmdUnpeer } from './commands/unpeer.js';
import { Context, type CliIO, type GlobalOptions } from './context.js';
import {
  EXIT,
  EXIT_CODES_HELP,
  UsageError,
  errorLine,
  exitCodeOf,
  type ExitCode,
} from './errors.js';
import { DEFAULT_NAMESPACE } from './manifests.js';
import { GET_OUTPUT_FORMATS, OUTPUT_FORMATS } from './output.js';
import {
  clusterId,
  collect,
  duration,
  hostPort,
  keyValue,
  nonNegativeInt,
  positiveInt,
  serverUrl,
} from './validate.js';

export const VERSION = '0.1.0';

const ROOT_HELP_AFTER = `
Settings: --server/SPILLWAY_SERVER (default http://127.0.0.1:8080) and --token/SPILLWAY_TOKEN
reach the broker's REST API; both can come from the settings file ~/.spillway/config (or
--config/SPILLWAY_CONFIG), which \`spillctl broker init\` writes (YAML, mode 0600: server, token,
broker, caFile, clientCertificate, clientKey). Flags win over variables, variables over the file.
Output (-o) is table (default), wide, json or yaml; progress goes to stderr, results to stdout.

${EXIT_CODES_HELP}

Examples:
  spillctl broker init --dir ./pki && spillway-broker --pki-dir ./pki
  spillctl join gpu-east --role donor --broker 10.0.0.5:7443 --kubeconfig east.yaml
  spillctl peer lab gpu-east --max-gpus 8 --wait
  spillctl get capacity -o wide
`;

function example(text: string): string {
  return `\nExamples:\n${text
    .trim()
    .split('\n')
    .map((l) => `  ${l.trim()}`)
    .join('\n')}\n\n${EXIT_CODES_HELP}\n`;
}

function outputOption(): Option {
  return new Option('-o, --output <format>', 'output format')
    .choices(OUTPUT_FORMATS)
    .default('table');
}

function timeoutOption(def: string, what: string): Option {
  return new Option('--timeout <duration>', what).argParser(duration).default(durationMs(def), def);
}

function durationMs(s: string): number {
  return duration(s);
}

/** The commander tree. Actions receive a Context built from the global flags. */
export function buildProgram(io: CliIO): Command {
  const program = new Command('spillctl');
  program
    .description(
      'Spillway admin CLI: join clusters to the broker, peer them, and watch GPUs spill over.',
    )
    .version(VERSION, '--version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      // Commander's own usage errors become one line on stderr (see run()).
      outputError: () => undefined,
    })
    .showHelpAfterError(false)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .option('--server <url>', "the broker's REST API [SPILLWAY_SERVER]", serverUrl)
    .option('--token <token>', 'bearer token for the REST API [SPILLWAY_TOKEN]')
    .option('--config <file>', 'settings file [SPILLWAY_CONFIG] (default ~/.spillway/config)')
    .option('--kubeconfig <file>', 'kubeconfig of the cluster a command acts on [KUBECONFIG]')
    .option('--context <name>', 'kubeconfig context')
    .addOption(
      new Option('--request-timeout <duration>', 'timeout of each call to the broker')
        .argParser(duration)
        .default(30_000, '30s'),
    )
    .option(
      '--state-dir <dir>',
      'where --local processes keep pid files and logs [SPILLWAY_STATE_DIR] (default ~/.spillway/local)',
    )
    .option('-q, --quiet', 'no progress output')
    .addHelpText('after', ROOT_HELP_AFTER);

  const ctx = (cmd: Command): Context => new Context(io, cmd.optsWithGlobals<GlobalOptions>());
  const group = (name: string, description: string, subs: string): Command =>
    program
      .command(name)
      .description(description)
      .argument('[command]')
      .action((sub: string | undefined) => {
        throw new UsageError(
          sub === undefined
            ? `"spillctl ${name}" needs a subcommand: ${subs} (see spillctl ${name} --help)`
            : `unknown command "${name} ${sub}"; one of: ${subs}`,
        );
      });

  // broker init ---------------------------------------------------------------------
  const broker = group('broker', 'set up the broker', 'init');
  broker
    .command('init')
    .description(
      "create the broker's PKI directory: CA, server certificate, an admin client certificate and an admin token (keys 0600)",
    )
    .option('--dir <dir>', "the broker's --pki-dir", '.spillway/broker/pki')
    .option('--force', 'replace an existing CA (every cluster must join again)')
    .option(
      '--server-dns-names <names>',
      'DNS names in the server certificate (comma-separated)',
      (v) => v.split(',').filter(Boolean),
      ['localhost'],
    )
    .option(
      '--server-ips <ips>',
      'IP addresses in the server certificate (comma-separated)',
      (v) => v.split(',').filter(Boolean),
      ['127.0.0.1'],
    )
    .option('--admin-name <name>', 'name in the admin client certificate', 'admin')
    .option(
      '--broker <host:port>',
      "the broker's gRPC address, recorded for `join`",
      hostPort,
      '127.0.0.1:7443',
    )
    .option('--no-write-config', 'print the admin token instead of saving it to the settings file')
    .addOption(outputOption())
    .addHelpText(
      'after',
      example(`
        spillctl broker init --dir /etc/spillway/pki --server-dns-names broker.lab.example
        spillctl broker init --dir ./pki --server http://10.0.0.5:8080 --broker 10.0.0.5:7443`),
    )
    .action((opts: Parameters<typeof cmdBrokerInit>[1], cmd: Command) =>
      cmdBrokerInit(ctx(cmd), opts),
    );

  // join ----------------------------------------------------------------------------
  program
    .command('join')
    .description(
      'join a cluster: create a join token and install what the agent (and on origins the virtual-node shim) needs',
    )
    .addArgument(new Argument('<cluster-name>', 'the cluster ID to join as').argParser(clusterId))
    .option(
      '--broker <host:port>',
      "the broker's gRPC address the agent dials (default from the settings file)",
      hostPort,
    )
    .addOption(
      new Option('--role <role>', 'origin borrows GPUs, donor lends them, both does both')
        .choices(['origin', 'donor', 'both'])
        .default('both'),
    )
    .option(
      '--namespace <ns>',
      'namespace for the agent, its identity and the token Secret',
      DEFAULT_NAMESPACE,
    )
    .option('--ttl <duration>', 'how long the join token stays valid (1m..24h)', '15m')
    .option('--ca-file <file>', 'broker CA certificate (default from the settings file)')
    .option(
      '--local',
      'run the agent (and shim) here as background processes and wait until connected',
    )
    .option('--rejoin', "delete the cluster's existing broker identity so the agent joins anew")
    .option('--log-level <level>', 'log level of --local processes', 'info')
    .option(
      '--agent-flag <flag>',
      'with --local: extra flag for the agent, e.g. --agent-flag=--reserved-gpus-per-node=1 (repeatable)',
      collect,
    )
    .option(
      '--virtual-node-flag <flag>',
      'with --local: extra flag for the shim, e.g. --virtual-node-flag=--grace-period=2s (repeatable)',
      collect,
    )
    .addOption(timeoutOption('2m', 'with --local: how long to wait for the parts to connect'))
    .addOption(outputOption())
    .addHelpText(
      'after',
      example(`
        spillctl join gpu-east --role donor --broker 10.0.0.5:7443 --kubeconfig east.yaml
        spillctl join lab --role origin --kubeconfig lab.yaml --local --timeout 1m`),
    )
    .action(async (cluster: string, opts: Parameters<typeof cmdJoin>[2], cmd: Command) =>
      cmdJoin(ctx(cmd), cluster, opts),
    );

  // peer / unpeer -------------------------------------------------------------------
  program
    .command('peer')
    .description('let an origin offload GPU pods to a donor (creating it again updates its limits)')
    .addArgument(new Argument('<origin>').argParser(clusterId))
    .addArgument(new Argument('<donor>').argParser(clusterId))
    .option(
      '--max-gpus <n>',
      'GPUs the origin may use on the donor (0 = only the donor policy limits)',
      nonNegativeInt,
    )
    .option('--gpu-product <product>', 'lend only this GPU product (repeatable)', collect)
    .option(
      '--wait',
      'wait until the donor is Ready (and, with --kubeconfig of the origin, its virtual node)',
    )
    .addOption(timeoutOption('2m', 'with --wait: how long to wait'))
    .addOption(outputOption())
    .addHelpText(
      'after',
      example(`
        spillctl peer lab gpu-east
        spillctl peer lab gpu-east --max-gpus 8 --gpu-product NVIDIA-H100-80GB-HBM3 --wait`),
    )
    .action(
      async (origin: string, donor: string, opts: Parameters<typeof cmdPeer>[3], cmd: Command) =>
        cmdPeer(ctx(cmd), origin, donor, opts),
    );

  program
    .command('unpeer')
    .description(
      'remove a peering; refuses while offloaded pods run, unless --drain (wait for them) or --force (delete them)',
    )
    .addArgument(new Argument('<origin>').argParser(clusterId))
    .addArgument(new Argument('<donor>').argParser(clusterId))
    .option('--drain', 'stop new placements and wait for offloaded pods to finish, then remove')
    .option(
      '--force',
      'remove now: the donor deletes the tenant namespace with its pods (after --drain: if the drain times out)',
    )
    .addOption(
      timeoutOption(
        '5m',
        'how long to wait for the drain, and for the deletion after --force (at least 1m)',
      ),
    )
    .addOption(outputOption())
    .addHelpText(
      'after',
      example(`
        spillctl unpeer lab gpu-east
        spillctl unpeer lab gpu-east --drain --timeout 10m
        spillctl unpeer lab gpu-east --drain --force --timeout 2m`),
    )
    .action(
      async (origin: string, donor: string, opts: Parameters<typeof cmdUnpeer>[3], cmd: Command) =>
        cmdUnpeer(ctx(cmd), origin, donor, opts),
    );

  // get / describe ------------------------------------------------------------------
  program
    .command('get')
    .description('list clusters, capacity, peerings, offloads or GPU usage')
    .addArgument(
      new Argument('<resource>', 'clusters|capacity|peerings|offloads|usage').choices(
        RESOURCE_NAMES,
      ),
    )
    .addArgument(new Argument('[name]', 'one cluster (get clusters only)'))
    .option(
      '--origin <cluster>',
      'peerings/offloads of this origin; capacity lendable to it',
      clusterId,
    )
    .option('--donor <cluster>', 'peerings/offloads on this donor', clusterId)
    .option(
      '--state <states>',
      'offloads in these states (comma-separated: open,bound,released,expired,ended)',
    )
    .option('--gpu-product <product>', 'capacity of this GPU product')
    .option('--resource <name>', 'capacity of this resource, e.g. nvidia.com/gpu')
    .option('--min-gpu-memory <MiB>', 'capacity of GPUs with at least this memory', nonNegativeInt)
    .option('--since <time>', 'usage from this time: a duration back (24h, 7d) or RFC 3339')
    .option('--until <time>', 'usage up to this time (default now): a duration back or RFC 3339')
    .option(
      '--by <keys>',
      'usage grouped by these keys (comma-separated: origin,namespace,donor,product,resource; default origin,donor)',
    )
    .addOption(
      new Option('-o, --output <format>', 'output format (csv: get usage only)')
        .choices(GET_OUTPUT_FORMATS)
        .default('table'),
    )
    .addHelpText(
      'after',
      example(`
        spillctl get clusters -o wide
        spillctl get capacity --gpu-product NVIDIA-L4
        spillctl get offloads --origin lab --state bound -o yaml
        spillctl get usage --since 7d --by origin,product -o csv`),
    )
    .action(
      async (
        resource: string,
        name: string | undefined,
        opts: Parameters<typeof cmdGet>[3],
        cmd: Command,
      ) => cmdGet(ctx(cmd), resource, name, opts),
    );

  program
    .command('describe')
    .description('show a cluster in detail: state, connections, policy, nodes, peerings')
    .addArgument(new Argument('<kind>').choices(['cluster', 'clusters', 'cl']))
    .addArgument(new Argument('<name>').argParser(clusterId))
    .addOption(outputOption())
    .addHelpText('after', example('spillctl describe cluster gpu-east'))
    .action(
      async (
        kind: string,
        name: string,
        opts: { output: Parameters<typeof cmdDescribe>[3] },
        cmd: Command,
      ) => cmdDescribe(ctx(cmd), kind, name, opts.output),
    );

  // cordon / uncordon ---------------------------------------------------------------
  for (const [name, cordoned] of [
    ['cordon', true],
    ['uncordon', false],
  ] as const) {
    program
      .command(name)
      .description(
        cordoned
          ? 'stop placing new pods on a donor; running offloads stay'
          : 'let a cordoned donor take new placements again',
      )
      .addArgument(new Argument('<cluster>').argParser(clusterId))
      .addOption(outputOption())
      .addHelpText('after', example(`spillctl ${name} gpu-east`))
      .action(
        async (cluster: string, opts: { output: Parameters<typeof cmdCordon>[3] }, cmd: Command) =>
          cmdCordon(ctx(cmd), cluster, cordoned, opts.output),
      );
  }

  // offload namespace ---------------------------------------------------------------
  const offload = group('offload', 'opt namespaces of an origin in to offloading', 'namespace');
  offload
    .command('namespace')
    .description(
      'label a namespace of the origin (--kubeconfig) so its pending GPU pods are offloaded',
    )
    .argument('<namespace>')
    .option('--disable', 'remove the label: stop offloading new pods of this namespace')
    .addHelpText(
      'after',
      example(`
        spillctl offload namespace ml-team --kubeconfig lab.yaml
        spillctl offload namespace ml-team --disable --kubeconfig lab.yaml`),
    )
    .action(async (namespace: string, opts: { disable?: boolean }, cmd: Command) => {
      if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace)) {
        throw new UsageError(`"${namespace}" is not a valid namespace name`);
      }
      return cmdOffloadNamespace(ctx(cmd), namespace, opts.disable === true);
    });

  // simulate ------------------------------------------------------------------------
  program
    .command('simulate')
    .description(
      'ask the broker where a GPU pod of an origin would be placed, and why not elsewhere (reserves nothing)',
    )
    .requiredOption('--origin <cluster>', 'the origin the pod would come from', clusterId)
    .requiredOption('--gpus <n>', 'GPUs the pod requests', positiveInt)
    .option('--gpu-product <product>', 'require this GPU product (nvidia.com/gpu.product)')
    .option('--resource <name>', 'GPU resource name', 'nvidia.com/gpu')
    .option('--selector <key=value>', 'node selector (repeatable)', keyValue)
    .option('--donor <cluster>', 'consider only this donor (repeatable)', collect)
    .addOption(
      new Option('--policy <policy>', 'placement policy').choices(['binpack', 'spread', 'cost']),
    )
    .addOption(outputOption())
    .addHelpText(
      'after',
      example(`
        spillctl simulate --origin lab --gpus 2
        spillctl simulate --origin lab --gpus 4 --gpu-product NVIDIA-H100-80GB-HBM3 -o wide`),
    )
    .action(async (opts: Parameters<typeof cmdSimulate>[1], cmd: Command) =>
      cmdSimulate(ctx(cmd), opts),
    );

  // token create --------------------------------------------------------------------
  const token = group('token', 'REST API tokens', 'create');
  token
    .command('create')
    .description('create a REST API token (printed once)')
    .addOption(
      new Option('--role <role>', 'what the token may do')
        .choices(['admin', 'viewer'])
        .default('viewer'),
    )
    .option('--description <text>', 'what the token is for')
    .addOption(outputOption())
    .addHelpText('after', example('spillctl token create --role viewer --description grafana'))
    .action(
      async (
        opts: {
          role: 'admin' | 'viewer';
          description?: string;
          output: Parameters<typeof cmdTokenCreate>[3];
        },
        cmd: Command,
      ) => cmdTokenCreate(ctx(cmd), opts.role, opts.description, opts.output),
    );

  // local ---------------------------------------------------------------------------
  const local = group('local', 'processes started by join --local', 'list, stop');
  local
    .command('list')
    .description('list the agents and shims started by join --local')
    .addOption(outputOption())
    .addHelpText('after', example('spillctl local list'))
    .action((opts: { output: Parameters<typeof cmdLocalList>[1] }, cmd: Command) =>
      cmdLocalList(ctx(cmd), opts.output),
    );
  local
    .command('stop')
    .description('stop the agent and shim of clusters started by join --local')
    .argument('[clusters...]')
    .option('--all', 'stop every local process')
    .addHelpText('after', example('spillctl local stop gpu-east\nspillctl local stop --all'))
    .action(async (clusters: string[], opts: { all?: boolean }, cmd: Command) =>
      cmdLocalStop(ctx(cmd), clusters, opts.all === true),
    );

  return program;
}

/** Commander's message without its "error: " prefix, as one line. */
function commanderLine(err: CommanderError): string {
  return err.message.replace(/^error:\s*/i, '').replace(/\s*\n\s*/g, ' ');
}

/** Runs spillctl with `argv` (without node and script); resolves to the exit code. */
export async function run(argv: readonly string[], io: CliIO): Promise<ExitCode> {
  const program = buildProgram(io);
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT.OK;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help'
      ) {
        return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      }
      io.stderr.write(`spillctl: ${commanderLine(err)}\n`);
      return EXIT.USAGE;
    }
    const code = exitCodeOf(err);
    io.stderr.write(
      code === EXIT.INTERRUPTED ? 'spillctl: interrupted\n' : `spillctl: ${errorLine(err)}\n`,
    );
    return code;
  }
}

export { SpillwayError, ErrorCode };
