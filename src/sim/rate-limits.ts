/** Counts events per key over a rolling window (a sliding log of event times). */
export class RollingWindowCounter {
  private readonly hits = new Map<string, number[]>();

  constructor(private readonly windowMs: number) {}

  /** Records one event at `now`; returns how many events fall in (now - window, now], this one included. */
  record(key: string, now: number): number {
    const times = this.hits.get(key) ?? [];
    const firstLive = times.findIndex((t) => t > now - this.windowMs);
    if (firstLive === -1) times.length = 0;
    else if (firstLive > 0) times.splice(0, firstLive);
    times.push(now);
    this.hits.set(key, times);
    return times.length;
  }
}

const IP_WINDOW_MS = 10_000;
const IP_BLOCK_MS = 5 * 60_000;

/**
 * PolyV's per-IP limit over the whole API domain: more than `limit` requests in 10 s blocks the IP for
 * 5 minutes, during which every request is refused (and not counted).
 */
export class IpRateLimiter {
  private readonly counter = new RollingWindowCounter(IP_WINDOW_MS);
  private readonly blockedUntil = new Map<string, number>();

  constructor(private readonly limit: number) {}

  /** True when the request may go on; false when this IP is (now) blocked. */
  admit(ip: string, now: number): boolean {
    const until = this.blockedUntil.get(ip);
    if (until !== undefined) {
      if (now < until) return false;
      this.blockedUntil.delete(ip);
    }
    if (this.counter.record(ip, now) > this.limit) {
      this.blockedUntil.set(ip, now + IP_BLOCK_MS);
      return false;
    }
    return true;
  }
}
