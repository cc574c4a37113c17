// Preloaded with `node --import <this file>` (see module-trace.ts): records the URL of every module the process
// resolves, ESM and CommonJS alike, and writes them as a JSON array to $COSIGNER_MODULE_TRACE when the process exits.
// module.registerHooks runs in the process's own thread and is synchronous (Node >= 22.15), and hooks chain: tsx's
// own resolve hook, registered later, hands every bare specifier on to this one. `process.moduleLoadList` would
// list Node's builtins only, and `require.cache` misses ES modules, which is what the Stellar SDK ships.
import { writeFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const out = process.env.COSIGNER_MODULE_TRACE;
if (out) {
  const seen = new Set();
  registerHooks({
    resolve(specifier, context, next) {
      const r = next(specifier, context);
      seen.add(r.url);
      return r;
    },
  });
  process.on('exit', () => writeFileSync(out, JSON.stringify([...seen])));
}
