/** Source of "now" in epoch milliseconds (same shape as the broker's Clock). */
export interface ClientClock {
  now(): number;
}

/** Shares one running promise per key among concurrent callers; a settled promise is forgotten at once. */
export class SingleFlight<T> {
  private readonly running = new Map<string, Promise<T>>();

  run(key: string, work: () => Promise<T>): Promise<T> {
    const existing = this.running.get(key);
    if (existing !== undefined) return existing;
    const promise = Promise.resolve()
      .then(work)
      .finally(() => {
        if (this.running.get(key) === promise) this.running.delete(key);
      });
    this.running.set(key, promise);
    return promise;
  }
}

interface Entry<T> {
  readonly value: T;
  /** Served from memory until this instant (ms): `expireTime - refreshMarginMs`. */
  readonly freshUntil: number;
}

/**
 * In-process token cache: a value is served until `expireTime - marginMs`, concurrent loads of one key share
 * one promise, and a failed load leaves nothing behind. Each `set`/`delete` starts a new generation, so a
 * load that started before it cannot overwrite what it stored (a slow GET never undoes a refresh).
 */
export class TokenCache<T extends { readonly expireTime: number }> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly generations = new Map<string, number>();
  private readonly loads = new SingleFlight<T>();
  /** Bumped by `clear()`: loads that started before it store nothing. */
  private epoch = 0;

  constructor(
    private readonly clock: ClientClock,
    private readonly marginMs: number,
  ) {}

  /** The cached value if it is still fresh. */
  peek(key: string): T | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (this.clock.now() < entry.freshUntil) return entry.value;
    this.entries.delete(key);
    return undefined;
  }

  /** The fresh cached value, or the result of `load` shared by every concurrent caller of this key. */
  get(key: string, load: () => Promise<T>): Promise<T> {
    const hit = this.peek(key);
    if (hit !== undefined) return Promise.resolve(hit);
    const generation = this.generation(key);
    const epoch = this.epoch;
    return this.loads.run(key, async () => {
      const value = await load();
      if (this.generation(key) === generation && this.epoch === epoch) this.store(key, value);
      return value;
    });
  }

  set(key: string, value: T): void {
    this.bump(key);
    this.store(key, value);
  }

  /** Forgets the key, or only when `unless` does not hold for the cached value. */
  delete(key: string, unless?: (cached: T) => boolean): void {
    const entry = this.entries.get(key);
    if (entry !== undefined && unless?.(entry.value) === true) return;
    this.bump(key);
    this.entries.delete(key);
  }

  clear(): void {
    this.epoch += 1;
    this.entries.clear();
  }

  private store(key: string, value: T): void {
    const freshUntil = value.expireTime - this.marginMs;
    if (this.clock.now() < freshUntil) this.entries.set(key, { value, freshUntil });
    else this.entries.delete(key);
  }

  private generation(key: string): number {
    return this.generations.get(key) ?? 0;
  }

  private bump(key: string): void {
    this.generations.set(key, this.generation(key) + 1);
  }
}
