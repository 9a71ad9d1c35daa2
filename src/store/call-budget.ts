import { BudgetExhaustedError } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import { batchRead } from './batch-read.js';
import type { RedisKeys } from './redis-keys.js';
import { defineScripts, type RedisClient } from './redis-scripts.js';

export const HOUR_MS = 3_600_000;
export const GLOBAL_WINDOW_MS = 10_000;

export interface BudgetSlot {
  /** Monotonic per channel; used as the version of what the call returns. */
  readonly slot: number;
  /** Calls in the window including this one. */
  readonly used: number;
}

export interface BudgetOptions {
  redis: RedisClient;
  keys: RedisKeys;
  clock: Clock;
  /** Global (fleet-wide) calls allowed in any rolling 10 s. */
  globalPer10s: number;
}

/**
 * Hard call budgets held in Redis and shared by every replica: a rolling-hour budget per channel and
 * endpoint, and one rolling-10-s limiter for the whole fleet. Every PolyV call takes a slot first.
 */
export class CallBudget {
  private readonly redis: RedisClient;
  private readonly keys: RedisKeys;
  private readonly clock: Clock;
  private readonly globalPer10s: number;

  constructor(options: BudgetOptions) {
    this.redis = defineScripts(options.redis);
    this.keys = options.keys;
    this.clock = options.clock;
    this.globalPer10s = options.globalPer10s;
  }

  /**
   * Takes one slot from the fleet-wide limiter and one from the channel's hourly budget for `endpoint`, both
   * at once (one round trip). When either is refused, the slot the other gave is handed back at once, so a
   * refused call spends neither budget (for that instant a concurrent caller may find the slot taken: never
   * looser than the limit, at worst stricter). Throws BudgetExhaustedError with the wait until a slot frees,
   * naming the fleet limit first when both refuse.
   */
  async take(appId: string, channelId: string, perHour: number, endpoint = 'channel-token'): Promise<BudgetSlot> {
    const now = this.clock.now();
    const globalKey = this.keys.globalLimiter();
    const channelKey = this.keys.budget(appId, channelId, endpoint);
    const [[gOk, gUsed, gThird], [ok, used, third]] = await Promise.all([
      this.redis.ptbTakeSlot(globalKey, this.keys.globalCounter(), now, GLOBAL_WINDOW_MS, this.globalPer10s),
      this.redis.ptbTakeSlot(channelKey, this.keys.status(appId, channelId), now, HOUR_MS, perHour),
    ]);
    if (gOk === 1 && ok === 1) return { slot: third ?? 0, used: used ?? 0 };
    // The third value is the slot's member when taken, the wait until one frees when refused.
    await Promise.all([
      gOk === 1 && gThird !== undefined ? this.redis.zrem(globalKey, String(gThird)) : undefined,
      ok === 1 && third !== undefined ? this.redis.zrem(channelKey, String(third)) : undefined,
    ]);
    if (gOk !== 1) {
      throw new BudgetExhaustedError(
        'global',
        `the fleet-wide PolyV limit of ${this.globalPer10s} calls per 10 s is reached (${gUsed} used)`,
        gThird ?? GLOBAL_WINDOW_MS,
      );
    }
    throw new BudgetExhaustedError(
      'channel',
      `channel ${channelId} has used its budget of ${perHour} ${endpoint} calls in the last hour`,
      third ?? HOUR_MS,
    );
  }

  /** Calls made for the channel and endpoint in the rolling hour. */
  async used(appId: string, channelId: string, endpoint = 'channel-token'): Promise<number> {
    const now = this.clock.now();
    return this.redis.zcount(this.keys.budget(appId, channelId, endpoint), now - HOUR_MS, '+inf');
  }

  /** Calls in the rolling hour for many channels in one round trip. */
  async usedMany(appId: string, channelIds: readonly string[], endpoint = 'channel-token'): Promise<number[]> {
    const now = this.clock.now();
    const replies = await batchRead(
      this.redis,
      channelIds.map((ch) => ['zcount', this.keys.budget(appId, ch, endpoint), now - HOUR_MS, '+inf'] as const),
    );
    return replies.map((value) => (typeof value === 'number' ? value : 0));
  }

  /** Time of the oldest call still inside the rolling hour, or null. */
  async oldestCall(appId: string, channelId: string, endpoint = 'channel-token'): Promise<number | null> {
    const now = this.clock.now();
    const [, score] = await this.redis.zrangebyscore(
      this.keys.budget(appId, channelId, endpoint),
      now - HOUR_MS,
      '+inf',
      'WITHSCORES',
      'LIMIT',
      0,
      1,
    );
    return score === undefined ? null : Number(score);
  }

  /** Calls made by the whole fleet in the rolling 10 s. */
  async globalUsed(): Promise<number> {
    const now = this.clock.now();
    return this.redis.zcount(this.keys.globalLimiter(), now - GLOBAL_WINDOW_MS, '+inf');
  }
}
