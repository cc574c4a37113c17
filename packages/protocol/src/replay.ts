/**
 * Remembers message ids for as long as their timestamps are fresh, so a captured frame cannot be replayed.
 * A frame older than the freshness window is refused as stale before it gets here, so ids only need to be
 * kept for twice the window. Bounded: past `maxEntries` live ids, new frames are refused (a flood).
 */
export class ReplayGuard {
  readonly #seen = new Map<string, number>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;

  constructor(opts: { ttlMs: number; maxEntries?: number }) {
    this.#ttlMs = opts.ttlMs;
    this.#maxEntries = opts.maxEntries ?? 100_000;
  }

  /** True (and remembered) the first time an id is seen; false for a replay or when the guard is full. */
  accept(id: string, now: number): boolean {
    if (this.#seen.has(id)) return false;
    if (this.#seen.size >= this.#maxEntries) {
      this.prune(now);
      if (this.#seen.size >= this.#maxEntries) return false;
    }
    this.#seen.set(id, now + this.#ttlMs);
    return true;
  }

  /** Forget ids whose window has passed. Map iteration is in insertion order, which is expiry order. */
  prune(now: number): void {
    for (const [id, expires] of this.#seen) {
      if (expires > now) break;
      this.#seen.delete(id);
    }
  }

  get size(): number {
    return this.#seen.size;
  }
}

/** A token bucket: `rate` tokens a second, at most `burst` saved up. Bounds message rates per peer. */
export class TokenBucket {
  #tokens: number;
  #last: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now = Date.now(),
  ) {
    this.#tokens = burst;
    this.#last = now;
  }

  take(now = Date.now()): boolean {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
