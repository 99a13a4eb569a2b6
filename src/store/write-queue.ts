interface Waiting<C> {
  key: string;
  urgent: boolean;
  run: (session: C) => Promise<unknown>;
  done: (value: unknown) => void;
  fail: (err: unknown) => void;
}

/**
 * Serialises a store's writes as group commits. Each round takes every queued write for a distinct key
 * (a job id) and runs them concurrently inside one session (for the file store: one hold of the
 * cross-process lock), so their fsyncs overlap instead of queueing; writes for the same key stay in
 * order, one per round. Urgent writes (claims, which a run's start and NAS's 202 wait for) are taken
 * first when a round is full.
 *
 * Twenty occurrences due in the same second used to claim one fsync after another, and the first run's
 * own history write waited behind all of them.
 */
export class WriteQueue<C> {
  private readonly waiting: Waiting<C>[] = [];
  private running = false;
  private idle: Array<() => void> = [];

  constructor(
    /** Opens a session, runs the round's writes in it, and closes it; rejects only if the session fails. */
    private readonly session: (round: (ctx: C) => Promise<void>) => Promise<void>,
    private readonly roundLimit = 64,
  ) {}

  run<T>(key: string, task: (ctx: C) => Promise<T>, urgent = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ key, urgent, run: task, done: resolve as (value: unknown) => void, fail: reject });
      this.next();
    });
  }

  /** Resolves once nothing is queued or running. */
  whenIdle(): Promise<void> {
    if (!this.running && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private next(): void {
    if (this.running) return;
    if (this.waiting.length === 0) {
      for (const resolve of this.idle.splice(0)) resolve();
      return;
    }
    this.running = true;
    // The round is taken a microtask later, so writes queued in this same turn (a burst of claims) join it.
    queueMicrotask(() => void this.commit(this.takeRound()));
  }

  private async commit(round: Waiting<C>[]): Promise<void> {
    const settled: Array<() => void> = [];
    try {
      await this.session(async (ctx) => {
        await Promise.all(
          round.map(async (w) => {
            try {
              const value = await w.run(ctx);
              settled.push(() => w.done(value));
            } catch (err) {
              settled.push(() => w.fail(err));
            }
          }),
        );
      });
      // Callers resume only once the session is closed (the lock released): a caller may act on the
      // files at once, even hand them to another process.
      for (const settle of settled) settle();
    } catch (err) {
      // The session failed (the lock could not be taken, or not released): the whole round fails with it.
      for (const w of round) w.fail(err);
    } finally {
      this.running = false;
      this.next();
    }
  }

  /** The next round: urgent first, then in arrival order, at most one write per key. */
  private takeRound(): Waiting<C>[] {
    const round: Waiting<C>[] = [];
    const keys = new Set<string>();
    for (const urgent of [true, false]) {
      for (let i = 0; i < this.waiting.length && round.length < this.roundLimit; ) {
        const w = this.waiting[i]!;
        // A key already in the round, or with an earlier write still waiting, keeps its order.
        if (
          w.urgent === urgent &&
          !keys.has(w.key) &&
          !this.waiting.slice(0, i).some((e) => e.key === w.key)
        ) {
          round.push(w);
          keys.add(w.key);
          this.waiting.splice(i, 1);
        } else {
          i += 1;
        }
      }
    }
    return round;
  }
}
