import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from './process.ts';

/**
 * What a process loaded, for tests that keep heavy modules out of a process (a cosigner node must not load the
 * Stellar SDK's root entry, which brings axios and the Horizon and RPC clients, nor a key backend it does not use).
 * Start the child with `traceEnv(file)` added to its environment; after it exits, `readTrace(file)` lists every
 * module URL it resolved and `forbiddenIn` names the ones a rule refuses.
 */
export const MODULE_TRACE_HOOK = join(REPO_ROOT, 'packages/testkit/src/module-trace-hook.mjs');

/** The environment that makes a child record its modules into `file` (NODE_OPTIONS is inherited and extended). */
export function traceEnv(file: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    NODE_OPTIONS: `${base.NODE_OPTIONS ?? ''} --import ${MODULE_TRACE_HOOK}`.trim(),
    COSIGNER_MODULE_TRACE: file,
  };
}

/** The module URLs the traced process resolved, in order. Rejects if the process did not exit through `exit`. */
export async function readTrace(file: string): Promise<string[]> {
  return JSON.parse(await readFile(file, 'utf8')) as string[];
}

/** A module a process must not load: a name for the test's message and the URL pattern that identifies it. */
export interface ModuleRule {
  name: string;
  pattern: RegExp;
}

/** The rules that `urls` break, each with the first URL that broke it. */
export function forbiddenIn(urls: readonly string[], rules: readonly ModuleRule[]): string[] {
  const hits: string[] = [];
  for (const r of rules) {
    const url = urls.find((u) => r.pattern.test(u));
    if (url) hits.push(`${r.name}: ${url}`);
  }
  return hits;
}

/**
 * The Stellar SDK's root entry (`@stellar/stellar-sdk`) and what only it brings: the Horizon and RPC clients and
 * their HTTP stack (feaxios, a fetch-based axios, in SDK 17; axios itself through `@stellar/stellar-sdk/axios`).
 * `@stellar/stellar-sdk/base` (XDR, keys, transactions) is allowed.
 */
export const SDK_ROOT_RULES: readonly ModuleRule[] = [
  { name: '@stellar/stellar-sdk root entry', pattern: /\/@stellar\/stellar-sdk\/lib\/(axios\/)?(esm|cjs)\/index\.js$/ },
  { name: 'the SDK Horizon client', pattern: /\/@stellar\/stellar-sdk\/lib\/(axios\/)?(esm|cjs)\/horizon\// },
  { name: 'the SDK RPC client', pattern: /\/@stellar\/stellar-sdk\/lib\/(axios\/)?(esm|cjs)\/rpc\// },
  { name: 'the SDK HTTP client', pattern: /\/@stellar\/stellar-sdk\/lib\/(axios\/)?(esm|cjs)\/http-client\// },
  { name: 'axios or feaxios', pattern: /\/node_modules\/(fe)?axios\// },
];
