import { rename, writeFile } from 'node:fs/promises';

/**
 * Every long-running command accepts `--ready-file <path>` and writes `{ url, pid }` there once it serves.
 * Written to a temporary name and renamed, so a reader never sees half a file.
 */
export async function writeReadyFile(
  path: string | undefined,
  info: { url: string; [k: string]: unknown },
): Promise<void> {
  if (!path) return;
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify({ ...info, pid: process.pid }), { mode: 0o600 });
  await rename(tmp, path);
}

/** Run `close` once on SIGINT/SIGTERM, then exit. Returns a function that removes the handlers. */
export function onShutdown(close: () => Promise<void>, exit: (code: number) => void = process.exit): () => void {
  let closing = false;
  const handler = (): void => {
    if (closing) return;
    closing = true;
    close().then(
      () => exit(0),
      () => exit(1),
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
