import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { freePort } from '../../test/support/processes';

/**
 * A MariaDB Galera cluster of a few nodes on loopback ports in one directory, for tests, the
 * benchmark and people trying the service on a replicated database (docs/galera-cluster.md).
 *
 * Galera cannot start all nodes at once on an empty cluster: the first node bootstraps a new
 * cluster (--wsrep-new-cluster), and each further node joins and receives a full copy (rsync
 * state snapshot transfer) only once the previous one is Synced, so nodes start one after another.
 */

export const GALERA_PROVIDER = '/usr/lib/galera/libgalera_smm.so';

export interface GaleraClusterOptions {
  /** Number of nodes (default 3). */
  nodes?: number;
  /** Where the nodes live; must be missing or empty, and is removed by stop(). Default: a fresh mkdtemp. */
  dir?: string;
  /**
   * Ports: node i gets SQL basePort+i, group communication (gmcast) basePort+10+i, incremental
   * state transfer basePort+20+i, full state transfer basePort+30+i. Default: free ports.
   */
  basePort?: number;
  /**
   * evs.suspect_timeout in ms: how long a silent peer is waited for before the others drop it
   * from the cluster, and so how long writes stall on the survivors. Default Galera's (5 000),
   * what production sees; tests may shorten it. Below 3 s the keepalive and inactivity-check
   * periods are shortened with it (Galera wants keepalive < suspect/3, check < suspect/2).
   */
  suspectTimeoutMs?: number;
  /** evs.inactive_timeout in ms (Galera's default 15 000): the hard limit after which a silent peer is dropped. Not below suspectTimeoutMs. */
  inactiveTimeoutMs?: number;
  /** More wsrep_provider_options, "key=value;key=value", appended last (so they win). */
  providerOptions?: string;
  /** innodb_buffer_pool_size per node (default 64M: the machine runs other things). */
  bufferPoolSize?: string;
  /** gcache.size per node: the write-set cache that incremental state transfer serves from (default 64M). */
  gcacheSize?: string;
  /**
   * Leave the nodes running when this process exits (the CLI's start). Default false: every
   * node is killed and the directory removed when this process ends, however it ends.
   */
  detached?: boolean;
  /** How long one node may take to become Synced, in ms (default 120 000). */
  nodeStartTimeoutMs?: number;
}

export interface GaleraNode {
  index: number;
  sqlPort: number;
  /** mysql://root@127.0.0.1:<sqlPort> (append /<database>). */
  url: string;
  /** mariadbd's pid (it leads its own process group); 0 while killed. */
  pid: number;
  dataDir: string;
  /** The node's error log: startup, state transfers, view changes. */
  errorLog: string;
}

export type GaleraNodeStatus =
  | { index: number; reachable: true; ready: boolean; clusterSize: number; state: string }
  | { index: number; reachable: false; error: string };

export interface GaleraCluster {
  dir: string;
  nodes: GaleraNode[];
  /** Creates a database (utf8mb4, utf8mb4_bin, as the service expects) through node `via` (default the first running one); DDL reaches every node. */
  createDatabase(name: string, via?: number): Promise<void>;
  /** SIGKILL to node i and its children: a crashed host. Resolves once it is gone. */
  kill(i: number): Promise<void>;
  /**
   * SIGSTOP to node i: its sockets stay open and it answers nothing, a node cut off from its peers.
   * Resolves once every thread of it is stopped (the signal takes effect asynchronously; a query
   * sent in between could still be answered).
   */
  pause(i: number): Promise<void>;
  /** SIGCONT to node i: it carries on, finds it was left out, and rejoins. */
  resume(i: number): void;
  /** Starts a killed node again; it rejoins by IST (or SST). Resolves when it is Synced. */
  restart(i: number): Promise<void>;
  /** Per node: wsrep_ready, wsrep_cluster_size and wsrep_local_state_comment, or why it did not answer. */
  status(timeoutMs?: number): Promise<GaleraNodeStatus[]>;
  /** Stops every node (resuming paused ones first) and removes the directory. */
  stop(): Promise<void>;
}

/** What the CLI's stop and status need to find a detached cluster: written to <dir>/cluster.json. */
export interface GaleraClusterState {
  dir: string;
  nodes: Array<GaleraNode & { gmcastPort: number; istPort: number; sstPort: number; config: string }>;
}

export const STATE_FILE = 'cluster.json';

interface NodeSetup {
  index: number;
  sqlPort: number;
  gmcastPort: number;
  istPort: number;
  sstPort: number;
  home: string;
  dataDir: string;
  config: string;
  errorLog: string;
}

interface LiveNode {
  setup: NodeSetup;
  child?: ChildProcess;
  /** Resolves when the current process has exited. */
  gone: Promise<void>;
  exited: boolean;
  paused: boolean;
}

// Clusters this process owns: killed and removed when it exits (normally or by process.exit).
const owned = new Set<{ nodes: LiveNode[]; dir: string }>();
process.on('exit', () => {
  for (const cluster of owned) {
    for (const node of cluster.nodes) if (node.child && !node.exited) signalGroup(node.child.pid, 'SIGCONT', 'SIGKILL');
    rmSync(cluster.dir, { recursive: true, force: true });
  }
});

function signalGroup(pid: number | undefined, ...signals: NodeJS.Signals[]): void {
  if (!pid) return;
  for (const signal of signals) {
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Waits until every thread of pid is in state T (stopped), as /proc shows it. */
async function allThreadsStopped(pid: number, timeoutMs: number): Promise<void> {
  const taskDir = `/proc/${pid}/task`;
  if (!existsSync(taskDir)) return; // not Linux, or gone: nothing to wait for
  const started = Date.now();
  for (;;) {
    const states = readdirSync(taskDir).map((tid) => {
      try {
        // stat is "tid (comm) S ...": the state follows the last ')' (comm may hold spaces and parentheses).
        const stat = readFileSync(path.join(taskDir, tid, 'stat'), 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      } catch {
        return 'T'; // the thread ended meanwhile
      }
    });
    if (states.every((state) => state === 'T' || state === 't')) return;
    if (Date.now() - started > timeoutMs) throw new Error(`process ${pid} was sent SIGSTOP but not all its threads stopped within ${timeoutMs} ms (states ${states.join('')})`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function binary(...names: string[]): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) {
    for (const name of names) if (existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  throw new Error(`none of ${names.join(', ')} is installed: the Galera cluster needs it (apt-get install -y mariadb-server galera-4 rsync)`);
}

function checkInstalled(): void {
  if (!existsSync(GALERA_PROVIDER)) {
    throw new Error(`galera-4 is not installed (${GALERA_PROVIDER} is missing): apt-get install -y galera-4 rsync`);
  }
  binary('rsync');
  binary('mariadbd', 'mysqld');
  binary('mariadb-install-db', 'mysql_install_db');
  binary('wsrep_sst_rsync');
}

function logTail(file: string, chars = 3000): string {
  try {
    return readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '(no error log written)';
  }
}

/** mariadbd refuses to run as root; as root the nodes run as mysql (rsync transfers need a non-root owner too). */
function serverUser(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'mysql'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'mysql'], { encoding: 'utf8' }).trim());
    return { name: 'mysql', uid, gid };
  } catch {
    throw new Error('running as root, the Galera nodes must run as user mysql, and there is no such user (it comes with mariadb-server)');
  }
}

function run(file: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 120_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${path.basename(file)} failed: ${err.message}\n${stdout}\n${stderr}`)) : resolve(),
    );
  });
}

async function choosePorts(count: number, basePort: number | undefined): Promise<NodeSetup[]> {
  const setups: NodeSetup[] = [];
  const taken = new Set<number>();
  const next = async (offset: number) => {
    if (basePort !== undefined) return basePort + offset;
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) return taken.add(port), port;
    }
  };
  for (let i = 0; i < count; i++) {
    setups.push({
      index: i,
      sqlPort: await next(i),
      gmcastPort: await next(10 + i),
      istPort: await next(20 + i),
      sstPort: await next(30 + i),
      home: '',
      dataDir: '',
      config: '',
      errorLog: '',
    });
  }
  return setups;
}

function writeConfig(setup: NodeSetup, all: NodeSetup[], options: GaleraClusterOptions, user: string | undefined): void {
  const provider = [
    `gmcast.listen_addr=tcp://127.0.0.1:${setup.gmcastPort}`,
    `ist.recv_addr=127.0.0.1:${setup.istPort}`,
    `gcache.size=${options.gcacheSize ?? '64M'}`,
    ...evsOptions(options),
    ...(options.providerOptions ? [options.providerOptions] : []),
  ].join(';');
  const lines = [
    '# Written by scripts/galera/cluster.ts; docs/galera-cluster.md says why each setting is there.',
    '[mysqld]',
    ...(user ? [`user=${user}`] : []),
    `datadir=${setup.dataDir}`,
    `socket=${path.join(setup.home, 'mariadb.sock')}`,
    `pid-file=${path.join(setup.home, 'mariadb.pid')}`,
    `log-error=${setup.errorLog}`,
    `port=${setup.sqlPort}`,
    'bind-address=127.0.0.1',
    'skip-name-resolve',
    'skip-log-bin',
    `innodb_buffer_pool_size=${options.bufferPoolSize ?? '64M'}`,
    'innodb_log_file_size=32M',
    'max_connections=200',
    // What Galera requires: row events, InnoDB, interleaved auto-increment locks.
    'binlog_format=ROW',
    'default_storage_engine=InnoDB',
    'innodb_autoinc_lock_mode=2',
    'wsrep_on=ON',
    `wsrep_provider=${GALERA_PROVIDER}`,
    'wsrep_cluster_name=consent-galera',
    `wsrep_cluster_address=gcomm://${all.map((n) => `127.0.0.1:${n.gmcastPort}`).join(',')}`,
    `wsrep_node_name=node${setup.index}`,
    `wsrep_node_address=127.0.0.1:${setup.gmcastPort}`,
    `wsrep_node_incoming_address=127.0.0.1:${setup.sqlPort}`,
    'wsrep_sst_method=rsync',
    `wsrep_sst_receive_address=127.0.0.1:${setup.sstPort}`,
    `wsrep_provider_options="${provider}"`,
    '',
  ];
  writeFileSync(setup.config, lines.join('\n'));
}

/** ISO 8601 duration, as Galera reads periods. */
function period(ms: number): string {
  return `PT${ms / 1000}S`;
}

function evsOptions(options: GaleraClusterOptions): string[] {
  const { suspectTimeoutMs: suspect, inactiveTimeoutMs: inactive } = options;
  for (const [name, value] of [['suspectTimeoutMs', suspect], ['inactiveTimeoutMs', inactive]] as const) {
    if (value !== undefined && (!Number.isInteger(value) || value < 500)) throw new Error(`${name} must be a whole number of ms, at least 500 (got ${value})`);
  }
  if ((inactive ?? 15_000) < (suspect ?? 5000)) throw new Error(`inactiveTimeoutMs (${inactive ?? 15_000}) must not be below suspectTimeoutMs (${suspect ?? 5000})`);
  const out: string[] = [];
  if (suspect !== undefined) {
    out.push(`evs.suspect_timeout=${period(suspect)}`);
    // Galera's defaults (keepalive 1 s, inactivity check 0.5 s) are out of range for short timeouts.
    if (suspect < 3100) out.push(`evs.keepalive_period=${period(Math.max(100, Math.floor(suspect / 4)))}`);
    if (suspect < 1100) out.push(`evs.inactive_check_period=${period(Math.max(100, Math.floor(suspect / 4)))}`);
  }
  if (inactive !== undefined) out.push(`evs.inactive_timeout=${period(inactive)}`);
  return out;
}

function url(port: number): string {
  return `mysql://root@127.0.0.1:${port}`;
}

/** The node's wsrep status, or why it did not answer within timeoutMs. */
export async function nodeStatus(index: number, sqlPort: number, timeoutMs = 2000): Promise<GaleraNodeStatus> {
  let connection: mysql.Connection | undefined;
  const work = (async (): Promise<GaleraNodeStatus> => {
    connection = await mysql.createConnection({ uri: url(sqlPort), connectTimeout: timeoutMs });
    const [rows] = await connection.query<mysql.RowDataPacket[]>(
      "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_cluster_size', 'wsrep_local_state_comment')",
    );
    const value = (name: string) => String(rows.find((r) => r.Variable_name === name)?.Value ?? '');
    return { index, reachable: true, ready: value('wsrep_ready') === 'ON', clusterSize: Number(value('wsrep_cluster_size') || 0), state: value('wsrep_local_state_comment') };
  })();
  // A node stopped with SIGSTOP never answers, not even the QUIT: drop the socket instead of
  // waiting, also when the connection only completes after the timeout (the node was resumed).
  const close = () => connection?.destroy();
  work.then(close, close);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)));
  try {
    return await Promise.race([work, timeout]);
  } catch (err) {
    return { index, reachable: false, error: (err as Error).message };
  } finally {
    clearTimeout(timer);
    close();
  }
}

export async function startGaleraCluster(options: GaleraClusterOptions = {}): Promise<GaleraCluster> {
  checkInstalled();
  evsOptions(options);
  const count = options.nodes ?? 3;
  if (!Number.isInteger(count) || count < 1 || count > 9) throw new Error(`nodes must be 1 to 9 (got ${count})`);
  if (options.basePort !== undefined && (!Number.isInteger(options.basePort) || options.basePort < 1024 || options.basePort + 39 > 65535)) {
    throw new Error(`basePort must be 1024 to 65496 (node ports go up to basePort+39; got ${options.basePort})`);
  }
  const nodeStartTimeoutMs = options.nodeStartTimeoutMs ?? 120_000;
  const user = serverUser();

  let dir: string;
  if (options.dir) {
    dir = path.resolve(options.dir);
    if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`${dir} is not empty: the cluster needs a directory of its own (stop removes it)`);
    mkdirSync(dir, { recursive: true });
  } else {
    dir = mkdtempSync(path.join(os.tmpdir(), 'consent-galera-'));
  }

  const nodes: LiveNode[] = [];
  const entry = { nodes, dir };
  // Until start succeeds (and for as long as the cluster lives, unless detached), whatever ends
  // this process ends the nodes too: the exit handler above, and, for deaths that run no handler
  // (SIGKILL, a signal nobody handles), this shell: it sees its stdin close, kills every node's
  // process group and removes the directory. A detached start tells it "keep" and lets it go.
  owned.add(entry);
  const watchdog = spawn(
    'sh',
    [
      '-c',
      `trap '' HUP INT TERM
groups=""
while IFS= read -r line; do
  case $line in
    keep) exit 0 ;;
    -*) groups=$(for g in $groups; do [ "$g" = "\${line#-}" ] || echo "$g"; done) ;;
    *) groups="$groups $line" ;;
  esac
done
for g in $groups; do kill -CONT "-$g"; kill -KILL "-$g"; done 2>/dev/null
rm -rf -- "$1"`,
      'galera-watchdog',
      dir,
    ],
    { detached: true, stdio: ['pipe', 'ignore', 'ignore'] },
  );
  watchdog.unref();
  (watchdog.stdin as unknown as { unref(): void }).unref();
  const toWatchdog = (line: string) => {
    if (watchdog.stdin?.writable) watchdog.stdin.write(`${line}\n`);
  };

  const stopNode = async (node: LiveNode, graceMs: number) => {
    if (!node.child || node.exited) return;
    signalGroup(node.child.pid, 'SIGCONT');
    node.paused = false;
    node.child.kill('SIGTERM');
    const kill = setTimeout(() => signalGroup(node.child?.pid, 'SIGKILL'), graceMs);
    await node.gone;
    clearTimeout(kill);
    // SST helpers (rsync daemon) left in the group.
    signalGroup(node.child.pid, 'SIGKILL');
  };

  const stop = async () => {
    await Promise.all(nodes.map((node) => stopNode(node, 30_000)));
    rmSync(dir, { recursive: true, force: true });
    owned.delete(entry);
    watchdog.stdin?.end();
  };

  const launch = (node: LiveNode, extra: string[]) => {
    const child = spawn(binary('mariadbd', 'mysqld'), [`--defaults-file=${node.setup.config}`, ...extra], {
      detached: true,
      stdio: 'ignore',
    });
    node.child = child;
    node.exited = false;
    node.paused = false;
    node.gone = new Promise<void>((resolve) =>
      child.once('exit', () => {
        node.exited = true;
        if (child.pid) toWatchdog(`-${child.pid}`);
        resolve();
      }),
    );
    if (options.detached) child.unref();
    if (child.pid) toWatchdog(String(child.pid));
  };

  const waitSynced = async (node: LiveNode, clusterSize: number, what: string) => {
    const started = Date.now();
    let last = 'not reachable yet';
    for (;;) {
      if (node.exited) throw new Error(`Galera node ${node.setup.index} exited while ${what}\n--- ${node.setup.errorLog} (tail):\n${logTail(node.setup.errorLog)}`);
      const s = await nodeStatus(node.setup.index, node.setup.sqlPort, 2000);
      if (s.reachable) {
        last = `state ${s.state}, ready ${s.ready}, cluster size ${s.clusterSize}`;
        if (s.ready && s.state === 'Synced' && s.clusterSize >= clusterSize) return;
      } else {
        last = s.error;
      }
      if (Date.now() - started > nodeStartTimeoutMs) {
        throw new Error(
          `Galera node ${node.setup.index} (SQL port ${node.setup.sqlPort}) was not Synced within ${nodeStartTimeoutMs} ms while ${what} (last: ${last})\n--- ${node.setup.errorLog} (tail):\n${logTail(node.setup.errorLog)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  const snapshot = (): GaleraNode[] =>
    nodes.map((n) => ({ index: n.setup.index, sqlPort: n.setup.sqlPort, url: url(n.setup.sqlPort), pid: n.child && !n.exited ? n.child.pid ?? 0 : 0, dataDir: n.setup.dataDir, errorLog: n.setup.errorLog }));

  const writeState = () => {
    const state: GaleraClusterState = {
      dir,
      nodes: nodes.map((n, i) => ({
        ...snapshot()[i]!,
        gmcastPort: n.setup.gmcastPort,
        istPort: n.setup.istPort,
        sstPort: n.setup.sstPort,
        config: n.setup.config,
      })),
    };
    writeFileSync(path.join(dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
  };

  const cluster: GaleraCluster = {
    dir,
    nodes: [],
    async createDatabase(name, via) {
      const index = via ?? nodes.findIndex((n) => !n.exited && !n.paused);
      if (index < 0) throw new Error('no Galera node is running');
      const connection = await mysql.createConnection(url(nodes[index]!.setup.sqlPort));
      try {
        await connection.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
      } finally {
        await connection.end();
      }
    },
    async kill(i) {
      const node = nodeAt(i);
      if (node.exited) return;
      signalGroup(node.child?.pid, 'SIGKILL');
      await node.gone;
      cluster.nodes = snapshot();
    },
    async pause(i) {
      const node = nodeAt(i);
      signalGroup(node.child?.pid, 'SIGSTOP');
      node.paused = true;
      if (node.child?.pid) await allThreadsStopped(node.child.pid, 5000);
    },
    resume(i) {
      const node = nodeAt(i);
      signalGroup(node.child?.pid, 'SIGCONT');
      node.paused = false;
    },
    async restart(i) {
      const node = nodeAt(i);
      if (!node.exited) throw new Error(`Galera node ${i} is running (pid ${node.child?.pid}): kill it before restarting it`);
      if (!nodes.some((n) => !n.exited)) throw new Error('no Galera node is running: a restarted node has no cluster to join (start a new cluster)');
      // After a crash grastate.dat says seqno -1 and the node would ask for a full copy (SST);
      // with the position InnoDB recovers it asks for the missing writes only (IST), as
      // galera_recovery does under systemd.
      launch(node, [`--wsrep_start_position=${await recoverPosition(node.setup)}`]);
      cluster.nodes = snapshot();
      writeState();
      await waitSynced(node, 1, 'rejoining');
    },
    status: (timeoutMs = 2000) => Promise.all(nodes.map((n) => nodeStatus(n.setup.index, n.setup.sqlPort, timeoutMs))),
    stop,
  };
  function nodeAt(i: number): LiveNode {
    const node = nodes[i];
    if (!node) throw new Error(`there is no Galera node ${i} (the cluster has ${nodes.length})`);
    return node;
  }

  try {
    const setups = await choosePorts(count, options.basePort);
    for (const setup of setups) {
      setup.home = path.join(dir, `node${setup.index}`);
      setup.dataDir = path.join(setup.home, 'data');
      setup.config = path.join(setup.home, 'my.cnf');
      setup.errorLog = path.join(setup.home, 'error.log');
      mkdirSync(setup.dataDir, { recursive: true });
      writeConfig(setup, setups, options, user?.name);
      nodes.push({ setup, gone: Promise.resolve(), exited: true, paused: false });
    }
    if (user) {
      for (const p of [dir, ...setups.flatMap((s) => [s.home, s.dataDir, s.config])]) chownSync(p, user.uid, user.gid);
      try {
        execFileSync('runuser', ['-u', user.name, '--', 'test', '-w', dir], { stdio: 'ignore' });
      } catch {
        throw new Error(`user ${user.name} cannot write ${dir}: every directory above it must be open to ${user.name}`);
      }
    }
    // Only the first node needs system tables: the others receive all of its data by rsync.
    await run(binary('mariadb-install-db', 'mysql_install_db'), [
      '--no-defaults',
      `--datadir=${setups[0]!.dataDir}`,
      ...(user ? [`--user=${user.name}`] : []),
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      '--skip-name-resolve',
      '--innodb-log-file-size=32M',
      '--force',
    ]);
    for (const node of nodes) {
      launch(node, node.setup.index === 0 ? ['--wsrep-new-cluster'] : []);
      cluster.nodes = snapshot();
      writeState();
      await waitSynced(node, node.setup.index + 1, node.setup.index === 0 ? 'bootstrapping the cluster' : 'joining the cluster');
    }
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  cluster.nodes = snapshot();
  writeState();
  if (options.detached) {
    toWatchdog('keep');
    watchdog.stdin?.end();
    owned.delete(entry);
  }
  return cluster;
}

/** The last committed position (uuid:seqno) in a stopped node's InnoDB, found by mariadbd --wsrep-recover. */
async function recoverPosition(setup: NodeSetup): Promise<string> {
  const log = path.join(setup.home, 'recover.log');
  rmSync(log, { force: true });
  try {
    await run(binary('mariadbd', 'mysqld'), [`--defaults-file=${setup.config}`, '--wsrep-recover', `--log-error=${log}`]);
  } catch (err) {
    throw new Error(`recovering the position of Galera node ${setup.index} failed: ${(err as Error).message}\n--- ${log} (tail):\n${logTail(log)}`);
  }
  const found = /WSREP: Recovered position: (\S+:-?\d+)/.exec(logTail(log, 100_000));
  if (!found) throw new Error(`mariadbd --wsrep-recover found no position for Galera node ${setup.index}\n--- ${log} (tail):\n${logTail(log)}`);
  return found[1]!;
}

/** The state file of a cluster started in `dir`. */
export function readClusterState(dir: string): GaleraClusterState {
  const file = path.join(path.resolve(dir), STATE_FILE);
  if (!existsSync(file)) throw new Error(`${file} does not exist: no Galera cluster was started in ${dir}`);
  return JSON.parse(readFileSync(file, 'utf8')) as GaleraClusterState;
}

/** Is `pid` still the mariadbd of this node (and not a process that got its number since)? */
function isNodeProcess(pid: number, config: string): boolean {
  if (!pid) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`--defaults-file=${config}`);
  } catch {
    return false;
  }
}

/** Stops a cluster started (detached) in `dir`, found by its state file, and removes the directory. */
export async function stopClusterInDir(dir: string, graceMs = 30_000): Promise<void> {
  const state = readClusterState(dir);
  const live = state.nodes.filter((n) => isNodeProcess(n.pid, n.config));
  for (const n of live) {
    signalGroup(n.pid, 'SIGCONT');
    try {
      process.kill(n.pid, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  const started = Date.now();
  while (live.some((n) => isNodeProcess(n.pid, n.config))) {
    if (Date.now() - started > graceMs) {
      for (const n of live) if (isNodeProcess(n.pid, n.config)) signalGroup(n.pid, 'SIGKILL');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const n of live) signalGroup(n.pid, 'SIGKILL');
  rmSync(state.dir, { recursive: true, force: true });
}
