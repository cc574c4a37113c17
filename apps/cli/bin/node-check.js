// The Node.js floor, checked before anything else loads. Plain JavaScript on purpose: it runs before any loader, on
// whatever node started it. Below the floor the first SQLite access would not fail cleanly: better-sqlite3 13 is
// built for Node-API 10 (Node 22.14 and later in the 22 line) and segfaults on an older runtime (measured: 22.13.1
// exits 139 on its first database). package.json "engines" states the same floor; a test keeps the two equal.

/** The lowest Node.js release every process of the project runs on. */
export const NODE_FLOOR = '22.14.0';
/** The Node-API version better-sqlite3 13's binary is built for. */
export const NODE_API_FLOOR = 10;

/** Why this runtime cannot run the project, or null. `versions` is `process.versions`. */
export function nodeProblem(versions) {
  const have = versions.node.split('.').map(Number);
  const want = NODE_FLOOR.split('.').map(Number);
  const older = have[0] - want[0] || have[1] - want[1] || have[2] - want[2];
  const napi = Number(versions.napi ?? 0);
  if (older >= 0 && napi >= NODE_API_FLOOR) return null;
  return (
    `Node.js ${NODE_FLOOR} or later is required (Node-API ${NODE_API_FLOOR}); this is ${versions.node}` +
    ` (Node-API ${versions.napi ?? 'none'}). Install Node 24 LTS: see README.md, "Quick start".`
  );
}
