#!/usr/bin/env node
// The `cosigner` executable. The project runs its TypeScript sources through tsx's loader (on Node 20 and 24
// alike), so there is no build step between a change and a running cluster.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/main.ts');
await main(process.argv);
