/**
 * What keeps a scale-to-zero process awake: requests in flight, runs going, NAS calls pending, alerts not yet
 * delivered (bounded by their attempt limit). The idle watcher (src/scheduler/idle-exit.ts) exits only when
 * every count is zero for the configured time.
 */
export type ActivityKind = 'request' | 'run' | 'nas' | 'arming' | 'alert';

export class Activity {
  private readonly counts: Record<ActivityKind, number> = {
    request: 0,
    run: 0,
    nas: 0,
    arming: 0,
    alert: 0,
  };
  private readonly listeners = new Set<() => void>();

  /** Mark the start of some work; call the returned function exactly once when it ends. */
  begin(kind: ActivityKind): () => void {
    this.counts[kind] += 1;
    this.notify();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.counts[kind] -= 1;
      this.notify();
    };
  }

  /** Run `fn` as activity of `kind`. */
  async track<T>(kind: ActivityKind, fn: () => Promise<T>): Promise<T> {
    const end = this.begin(kind);
    try {
      return await fn();
    } finally {
      end();
    }
  }

  get busy(): boolean {
    return (
      this.counts.request + this.counts.run + this.counts.nas + this.counts.arming + this.counts.alert > 0
    );
  }

  snapshot(): Readonly<Record<ActivityKind, number>> {
    return { ...this.counts };
  }

  /** Resolves once no activity of `kind` is going on. */
  whenIdle(kind: ActivityKind): Promise<void> {
    if (this.counts[kind] === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const stop = this.onChange(() => {
        if (this.counts[kind] === 0) {
          stop();
          resolve();
        }
      });
    });
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }
}
