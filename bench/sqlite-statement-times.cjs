/*
 * A --require preload that times every better-sqlite3 statement a process runs, by statement shape
 * (placeholder lists folded), and writes the 25 costliest to /tmp/sqlite-statement-times-<pid>.txt
 * every 2 s and at exit. Used for docs/benchmarks.md ("Import": where SQLite's share goes):
 *
 *   NODE_OPTIONS="--require $PWD/bench/sqlite-statement-times.cjs" npm run bench:import -- --db sqlite --rows 50000
 *
 * (the server inherits NODE_OPTIONS; the benchmark's own processes write files too, mostly empty).
 * SQLITE_EXTRA_PRAGMAS="wal_autocheckpoint = 0;..." also runs those pragmas on every connection right
 * after the service sets `synchronous` (an experiment's knob, not a setting of the service).
 * Times are wall time on the calling thread, the preload's own overhead included.
 */
const Module = require('node:module');
const { writeFileSync } = require('node:fs');

const load = Module._load;
let patched = false;
const times = new Map();

Module._load = function (request) {
  const loaded = load.apply(this, arguments);
  if (patched || request !== 'better-sqlite3') return loaded;
  patched = true;
  const prepare = loaded.prototype.prepare;
  const pragma = loaded.prototype.pragma;
  loaded.prototype.pragma = function (sql, options) {
    const result = pragma.call(this, sql, options);
    if (/synchronous = NORMAL/.test(sql) && process.env.SQLITE_EXTRA_PRAGMAS) {
      for (const extra of process.env.SQLITE_EXTRA_PRAGMAS.split(';')) pragma.call(this, extra);
    }
    return result;
  };
  loaded.prototype.prepare = function (sql) {
    const statement = prepare.call(this, sql);
    const shape = sql.replace(/\?(, \?)*/g, '?*').replace(/\s+/g, ' ').slice(0, 110);
    for (const method of ['run', 'all', 'get', 'iterate']) {
      const original = statement[method];
      if (typeof original !== 'function') continue;
      statement[method] = function () {
        const started = process.hrtime.bigint();
        try {
          return original.apply(this, arguments);
        } finally {
          const entry = times.get(shape) ?? { calls: 0, ns: 0n };
          entry.calls++;
          entry.ns += process.hrtime.bigint() - started;
          times.set(shape, entry);
        }
      };
    }
    return statement;
  };
  const dump = () => {
    const top = [...times.entries()].sort((a, b) => Number(b[1].ns - a[1].ns)).slice(0, 25);
    writeFileSync(`/tmp/sqlite-statement-times-${process.pid}.txt`, top.map(([shape, e]) => `${(Number(e.ns) / 1e6).toFixed(0)} ms\t${e.calls}\t${shape}`).join('\n') + '\n');
  };
  setInterval(dump, 2000).unref();
  process.on('exit', dump);
  return loaded;
};
