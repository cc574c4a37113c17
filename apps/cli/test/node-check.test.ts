import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NODE_API_FLOOR, NODE_FLOOR, nodeProblem } from '../bin/node-check.js';

describe('the Node.js floor (bin/node-check.js)', () => {
  it('is the floor package.json states in engines', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      engines: { node: string };
    };
    expect(`>=${NODE_FLOOR.replace(/\.0$/, '')}`).toBe(pkg.engines.node);
  });

  it('lets this runtime through (the suite runs on a supported Node)', () => {
    expect(nodeProblem(process.versions)).toBeNull();
  });

  it.each([
    ['22.14.0', '10'],
    ['22.23.5', '10'],
    ['24.22.3', '10'],
    ['26.0.0', '10'],
  ])('accepts Node %s (Node-API %s)', (node, napi) => {
    expect(nodeProblem({ node, napi })).toBeNull();
  });

  it.each([
    ['20.19.6', '9'],
    ['22.13.1', '9'],
    ['21.7.3', '9'],
    ['22.14.0', '9'],
    ['22.14.0', undefined],
  ])('refuses Node %s (Node-API %s) with one sentence naming the floor', (node, napi) => {
    const problem = nodeProblem(napi === undefined ? { node } : { node, napi });
    expect(problem).toContain(`Node.js ${NODE_FLOOR} or later is required (Node-API ${NODE_API_FLOOR})`);
    expect(problem).toContain(`this is ${node}`);
  });
});
