/**
 * A MariaDB Galera cluster on loopback ports, for trying the service on a replicated database
 * and for benchmarks (docs/galera-cluster.md):
 *
 *   npm run galera -- start [--dir D] [--nodes 3] [--base-port P]   # leaves it running
 *   npm run galera -- status --dir D
 *   npm run galera -- stop --dir D                                  # stops it, removes D
 */
import { parseArgs } from 'node:util';
import { nodeStatus, readClusterState, startGaleraCluster, stopClusterInDir } from './galera/cluster';

const USAGE = `usage: npm run galera -- start [--dir D] [--nodes 3] [--base-port P]
       npm run galera -- status --dir D
       npm run galera -- stop --dir D`;

function integer(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new Error(`--${name} must be a whole number (got "${raw}")`);
  return Number(raw);
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { dir: { type: 'string' }, nodes: { type: 'string' }, 'base-port': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const command = positionals[0];
  if (values.help || positionals.length !== 1 || !['start', 'status', 'stop'].includes(command ?? '')) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  if (command === 'start') {
    const started = Date.now();
    const cluster = await startGaleraCluster({
      dir: values.dir,
      nodes: integer('nodes', values.nodes),
      basePort: integer('base-port', values['base-port']),
      detached: true,
    });
    console.log(`Galera cluster of ${cluster.nodes.length} nodes up in ${((Date.now() - started) / 1000).toFixed(1)} s, in ${cluster.dir}`);
    for (const node of cluster.nodes) console.log(`  node ${node.index}: ${node.url}  (pid ${node.pid})`);
    console.log(`stop it with: npm run galera -- stop --dir ${cluster.dir}`);
    return 0;
  }
  if (!values.dir) throw new Error(`${command} needs --dir (the directory start printed)`);
  if (command === 'status') {
    const state = readClusterState(values.dir);
    let synced = 0;
    for (const node of state.nodes) {
      const s = await nodeStatus(node.index, node.sqlPort);
      if (s.reachable && s.ready && s.state === 'Synced') synced++;
      console.log(
        `node ${node.index}: ${`mysql://root@127.0.0.1:${node.sqlPort}`}  ` +
          (s.reachable ? `${s.state}, ready ${s.ready ? 'ON' : 'OFF'}, cluster size ${s.clusterSize}` : `unreachable (${s.error})`),
      );
    }
    return synced === state.nodes.length ? 0 : 1;
  }
  await stopClusterInDir(values.dir);
  console.log(`stopped; ${values.dir} removed`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`galera-cluster: ${err.message}`);
    process.exit(1);
  },
);
