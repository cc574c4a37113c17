// Preloaded into every cluster child by `BENCH_PROFILE=<dir>` (NODE_OPTIONS=--import ...), because Node refuses
// --cpu-prof in NODE_OPTIONS. Starts V8's built-in sampling profiler through node:inspector and writes
// <dir>/<pid>-<command>.cpuprofile when the process exits (the services exit through process.exit on SIGTERM).
// An in-thread inspector session answers synchronously, so the exit handler can still write the file.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_PROFILE;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  const name = process.argv.slice(2).find((a) => !a.startsWith('-')) ?? 'main';
  const nodeId = process.argv.includes('--config')
    ? (process.argv[process.argv.indexOf('--config') + 1] ?? '').split('/').slice(-2, -1)[0]
    : undefined;
  process.on('exit', () => {
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(join(dir, `${process.pid}-${nodeId ?? name}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
