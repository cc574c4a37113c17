/**
 * One write system call per socket per turn of the event loop, instead of one per message.
 *
 * Why: ws writes every message it sends with its own `cork()`/`uncork()` pair, so each `send` is one `writev(2)`.
 * On loopback (and on any TCP stack) most of a small write's cost is the system call and the kernel's per-segment
 * work, part of which is the receiver's, done in the sender's call. The coordinator sends several messages per
 * socket in one turn under load: after one group commit (runtime/group-commit.ts) it fans out every proposal of
 * the batch to each node and pushes every event of the batch to each event-stream subscriber. A CPU profile under
 * c=64 put `writev` at about 10% of the coordinator's busy time (bench/README.md, "The coordinator's CPU per
 * proposal").
 *
 * `beforeWrite()`, called before a message is handed to ws, corks the underlying socket once per turn and
 * uncorks it on `process.nextTick`. Node's cork is counted, so ws's own cork/uncork pair inside stays balanced and
 * the writes of the turn leave together in one `writev` when the outer cork is released. The tick queue runs after
 * the current callback and its microtasks (a promise continuation that sends is still in the same batch), before
 * the event loop moves on: no message waits for I/O or a timer, only for the code that is already running. Nothing
 * about ordering, back-pressure or `bufferedAmount` changes: the bytes are queued in the socket's writable buffer
 * exactly as before, only flushed a few microseconds later.
 */

/** The part of a `net.Socket` this needs. */
export interface Corkable {
  cork(): void;
  uncork(): void;
  readonly destroyed: boolean;
}

export interface WriteBatch {
  /** Call before each write of this turn: the first call corks the socket until the current tick ends. */
  beforeWrite(): void;
  /** Turns in which the socket was corked (tests, metrics). */
  readonly batches: number;
}

export function writeBatch(socket: Corkable): WriteBatch {
  let corked = false;
  let batches = 0;
  const release = (): void => {
    corked = false;
    // A destroyed socket drops its buffer anyway; uncork on it is harmless but pointless.
    if (!socket.destroyed) socket.uncork();
  };
  return {
    beforeWrite(): void {
      if (corked || socket.destroyed) return;
      corked = true;
      batches++;
      socket.cork();
      process.nextTick(release);
    },
    get batches() {
      return batches;
    },
  };
}
