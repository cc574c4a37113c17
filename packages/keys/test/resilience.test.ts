import { describe, expect, it } from 'vitest';
import { keysErrors } from '../src/errors.ts';
import { type CircuitState, Resilience, withTimeout } from '../src/resilience.ts';

function harness(over: ConstructorParameters<typeof Resilience>[0] = {}) {
  let now = 1_000;
  const sleeps: number[] = [];
  const states: CircuitState[] = [];
  const r = new Resilience({
    retries: 2,
    baseDelayMs: 10,
    maxDelayMs: 15,
    failureThreshold: 3,
    resetAfterMs: 100,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.99,
    onStateChange: (s) => states.push(s),
    ...over,
  });
  return { r, sleeps, states, advance: (ms: number) => (now += ms) };
}

const unavailable = () => keysErrors.error('KEYS_BACKEND_UNAVAILABLE');
const fail = (e: Error) => async (): Promise<never> => {
  throw e;
};

describe('withTimeout', () => {
  it('returns the result in time and aborts the signal with KEYS_BACKEND_TIMEOUT when late', async () => {
    expect(await withTimeout(async () => 7, 1000)).toBe(7);
    let aborted = false;
    const late = withTimeout(
      (signal) =>
        new Promise<number>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve(1);
          });
        }),
      5,
    );
    await expect(late).rejects.toMatchObject({ code: 'KEYS_BACKEND_TIMEOUT', details: { timeoutMs: 5 } });
    expect(aborted).toBe(true);
  });
});

describe('Resilience', () => {
  it('retries KEYS_BACKEND_UNAVAILABLE with capped exponential backoff and jitter, then succeeds', async () => {
    const { r, sleeps } = harness();
    let calls = 0;
    const out = await r.run(async () => {
      calls++;
      if (calls < 3) throw unavailable();
      return 'ok';
    });
    expect(out).toBe('ok');
    expect(calls).toBe(3);
    // random 0.99 of ceilings 10 then min(15, 20)
    expect(sleeps).toEqual([9, 14]);
  });

  it('gives up after the bounded retries and does not retry other errors', async () => {
    const { r } = harness();
    let calls = 0;
    await expect(
      r.run(async () => {
        calls++;
        throw unavailable();
      }),
    ).rejects.toMatchObject({ code: 'KEYS_BACKEND_UNAVAILABLE' });
    expect(calls).toBe(3);
    calls = 0;
    await expect(
      r.run(async () => {
        calls++;
        throw keysErrors.error('KEYS_ACCESS_DENIED');
      }),
    ).rejects.toMatchObject({ code: 'KEYS_ACCESS_DENIED' });
    expect(calls).toBe(1);
  });

  it('opens after N failed calls, refuses fast, lets one probe through after the cool-down', async () => {
    const { r, states, advance } = harness({ retries: 0 });
    for (let i = 0; i < 3; i++)
      await expect(r.run(fail(unavailable()))).rejects.toMatchObject({ code: 'KEYS_BACKEND_UNAVAILABLE' });
    expect(r.state).toBe('open');
    let called = false;
    await expect(
      r.run(async () => {
        called = true;
      }),
    ).rejects.toMatchObject({
      code: 'KEYS_CIRCUIT_OPEN',
      details: { lastFailure: 'KEYS_BACKEND_UNAVAILABLE', retryInMs: 100 },
    });
    expect(called).toBe(false);

    advance(100);
    expect(r.state).toBe('half-open');
    // The probe fails: open again for a full cool-down.
    await expect(r.run(fail(keysErrors.error('KEYS_BACKEND_TIMEOUT')))).rejects.toMatchObject({
      code: 'KEYS_BACKEND_TIMEOUT',
    });
    expect(r.state).toBe('open');
    advance(100);
    // Only one probe at a time: a second call while the probe runs is refused.
    let release!: () => void;
    const probe = r.run(() => new Promise<string>((res) => (release = () => res('up'))));
    await expect(r.run(async () => 'second')).rejects.toMatchObject({ code: 'KEYS_CIRCUIT_OPEN' });
    release();
    expect(await probe).toBe('up');
    expect(r.state).toBe('closed');
    expect(states).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
  });

  it('does not count a healthy backend refusal as a failure, and closes on a probe that gets one', async () => {
    const { r, advance } = harness({ retries: 0 });
    for (let i = 0; i < 5; i++) await expect(r.run(fail(keysErrors.error('KEYS_ACCESS_DENIED')))).rejects.toThrow();
    expect(r.state).toBe('closed');
    for (let i = 0; i < 3; i++) await expect(r.run(fail(new Error('socket hang up')))).rejects.toThrow();
    expect(r.state).toBe('open');
    advance(100);
    await expect(r.run(fail(keysErrors.error('KEYS_KEY_DISABLED')))).rejects.toMatchObject({
      code: 'KEYS_KEY_DISABLED',
    });
    expect(r.state).toBe('closed');
  });

  it('resets the failure count on success', async () => {
    const { r } = harness({ retries: 0 });
    for (let round = 0; round < 3; round++) {
      await expect(r.run(fail(unavailable()))).rejects.toThrow();
      await expect(r.run(fail(unavailable()))).rejects.toThrow();
      await r.run(async () => 1);
    }
    expect(r.state).toBe('closed');
  });

  it('has working defaults', async () => {
    const r = new Resilience();
    expect(await r.run(async (signal) => signal.aborted)).toBe(false);
    expect(r.state).toBe('closed');
  });
});
