import { readFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The web consoles' static files (the coordinator's at `/console/`, each node's on its admin listener), served
 * by the service itself from a FIXED list read once at start-up: no directory is ever resolved from a request
 * path, so there is no traversal to guard against, and nothing is fetched from elsewhere at run time.
 *
 * Why a tiny handler and not @fastify/static: the consoles are a handful of files known when the service is
 * built; an allow-list map is shorter than configuring a general file server to refuse everything else, and it
 * adds no dependency. Why no build step: the pages are plain ES modules (JavaScript with JSDoc types) that the
 * browser loads as they are, so what is reviewed is what runs, and the Docker image ships them with the source.
 */

/** The files shared by both consoles (style sheet, DOM and wording helpers), in packages/runtime/console/. */
export const SHARED_CONSOLE_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)), '../console');
const SHARED_FILES = ['console.css', 'dom.js', 'words.js'];

/**
 * Content-Security-Policy of every console response (CSP Level 3): scripts, styles and connections only from
 * this origin ('self' also allows ws:/wss: to the same host for the event stream), no inline script or style,
 * no plugins, no framing (clickjacking), no <base> rewriting, no form posts anywhere.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers every console file is sent with (also the index page). */
export const CONSOLE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  // The pages are small and change with a deploy: never let a stale script outlive an upgrade.
  'cache-control': 'no-store',
});

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

export interface ConsoleFile {
  body: Buffer;
  headers: Record<string, string>;
}

/**
 * Load a console: `index.html` plus the page scripts in `dir` (the service's own) and the shared files.
 * Returns the lookup a route calls with the requested file name (`''` is the index page); undefined when the name
 * is not in the list.
 * @throws Error when a listed file is missing (a broken install: better at start-up than on first visit)
 */
export function loadConsole(dir: string, own: readonly string[]): (name: string) => ConsoleFile | undefined {
  const files = new Map<string, ConsoleFile>();
  const add = (name: string, path: string): void => {
    const type = TYPES[extname(name)];
    if (type === undefined) throw new Error(`console file ${name} has no known content type`);
    files.set(name, { body: readFileSync(path), headers: { ...CONSOLE_HEADERS, 'content-type': type } });
  };
  add('index.html', join(dir, 'index.html'));
  for (const name of own) add(name, join(dir, name));
  for (const name of SHARED_FILES) add(name, join(SHARED_CONSOLE_DIR, name));
  return (name) => files.get(name === '' ? 'index.html' : name);
}
