import type { Clock } from '../lib/clock.js';
import type { CachedToken } from '../store/token-store.js';

export interface LastServedTokensOptions {
  clock: Clock;
  /** Most channels remembered; the one whose token changed longest ago is dropped first. */
  maxEntries?: number;
  /** While Redis is failing, try it again (in the background, one try at a time) this often. */
  probeEveryMs?: number;
}

const DEFAULT_MAX_ENTRIES = 100_000;
const DEFAULT_PROBE_EVERY_MS = 250;

/**
 * The last channel token this replica served, per channel, so that it can go on answering while Redis is
 * unreachable. That is safe: while Redis is away no replica can take a budget slot or store a new token, so
 * the token last served is still the current one, and it is served only while it has the minimum TTL left.
 *
 * It also tracks whether Redis is failing. While it is, reads are answered from memory at once (none waits
 * out the Redis command timeout), and one background read at a time, every `probeEveryMs`, finds out when
 * Redis is back.
 */
export class LastServedTokens {
  private readonly tokens = new Map<string, CachedToken>();
  private readonly clock: Clock;
  private readonly maxEntries: number;
  private readonly probeEveryMs: number;
  private failing = false;
  private nextProbeAt = 0;
  private probing = false;

  constructor(options: LastServedTokensOptions) {
    this.clock = options.clock;
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.probeEveryMs = options.probeEveryMs ?? DEFAULT_PROBE_EVERY_MS;
  }

  remember(appId: string, channelId: string, token: CachedToken): void {
    const key = `${appId}:${channelId}`;
    if (this.tokens.get(key) === token) return;
    this.tokens.delete(key);
    if (this.tokens.size >= this.maxEntries) {
      const oldest = this.tokens.keys().next();
      if (oldest.done !== true) this.tokens.delete(oldest.value);
    }
    this.tokens.set(key, token);
  }

  get(appId: string, channelId: string): CachedToken | undefined {
    return this.tokens.get(`${appId}:${channelId}`);
  }

  /** Whether the last Redis read failed (and no probe has succeeded since). */
  get redisFailing(): boolean {
    return this.failing;
  }

  /** Records a failed Redis read; returns true when Redis had been answering until now. */
  redisFailed(): boolean {
    const wasAnswering = !this.failing;
    this.failing = true;
    this.nextProbeAt = this.clock.now() + this.probeEveryMs;
    return wasAnswering;
  }

  redisAnswered(): void {
    this.failing = false;
  }

  /** True when the caller should try Redis now (in the background); it must report with `probed`. */
  probeDue(): boolean {
    if (this.probing || this.clock.now() < this.nextProbeAt) return false;
    this.probing = true;
    return true;
  }

  probed(ok: boolean): void {
    this.probing = false;
    if (ok) this.redisAnswered();
    else this.redisFailed();
  }
}
