import type { BudgetEndpoint } from '../domain/token-kinds.js';
import { BrokerError, BudgetExhaustedError, type FailureRecord } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import { batchCommands } from './batch-commands.js';
import type { RedisKeys } from './redis-keys.js';
import { defineScripts, type RedisClient } from './redis-scripts.js';
import { guardRedis } from './redis-unavailable.js';

export const HOUR_MS = 3_600_000;
export const GLOBAL_WINDOW_MS = 10_000;

/** After PolyV refused an account's credentials, how long until one call may try again. */
export const ACCOUNT_RETRY_MS = 5 * 60_000;
/** How long a failure record of an account outlives its last failure. */
const ACCOUNT_FAILURE_KEEP_MS = 24 * HOUR_MS;

export interface BudgetSlot {
  /** Monotonic per channel; used as the version of what the call returns. */
  readonly slot: number;
  /** Calls in the window including this one. */
  readonly used: number;
  /** The account's one try after a recorded failure of its credentials. */
  readonly probe: boolean;
  /** The fleet's one try after a pause (`qps exceeds`). */
  readonly pauseProbe: boolean;
}

export interface TakeOptions {
  /** Refuse while the channel is marked rejected (default true). */
  obeyRejected?: boolean | undefined;
  /** On-call: one try even while the account's credentials are recorded as refused. */
  force?: boolean | undefined;
  /** A fingerprint of the credentials the call is signed with (never the secret). */
  credentials?: string | undefined;
  /** Of `perHour`, what only reserved callers may spend (the channel token's refresh reserve). */
  reservePerHour?: number | undefined;
  /** The proactive refresh (and on-call): may spend the reserve. */
  reserved?: boolean | undefined;
  /** The consumer that causes the call, and how many calls it may cause per channel and endpoint and hour (0: no quota). */
  consumer?: { readonly name: string; readonly perHour: number } | undefined;
}

/**
 * How many calls of a channel's rolling hour a caller may fill: all of `perHour` for a reserved caller (the
 * proactive refresh), `perHour - reservePerHour` for everyone else, so the last `reservePerHour` slots are
 * always left for the refresh. Never below 0.
 */
export function slotLimit(perHour: number, reservePerHour: number, reserved: boolean): number {
  return reserved ? perHour : Math.max(0, perHour - reservePerHour);
}

export interface BudgetOptions {
  redis: RedisClient;
  keys: RedisKeys;
  clock: Clock;
  /** Global (fleet-wide) calls allowed in any rolling 10 s. */
  globalPer10s: number;
  /** How long a probe after a pause or a refused account holds back every other call (default 30 s). */
  probeWindowMs?: number | undefined;
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

  /** How long a probe holds back every other call (longer than one PolyV call and its re-signed retry). */
  private readonly probeWindowMs: number;

  constructor(options: BudgetOptions) {
    this.probeWindowMs = options.probeWindowMs ?? 30_000;
    this.redis = defineScripts(options.redis);
    this.keys = options.keys;
    this.clock = options.clock;
    this.globalPer10s = options.globalPer10s;
  }

  /**
   * Takes one slot from the fleet-wide limiter and one from the channel's hourly budget for `endpoint` (and,
   * with `consumer`, one from that consumer's quota), all at once (one round trip). When one is refused, the
   * slots the others gave are handed back at once, so a refused call spends nothing (for that instant a
   * concurrent caller may find the slot taken: never looser than the limit, at worst stricter).
   *
   * Refused, in this order: the fleet is pausing after `qps exceeds` (upstream_rate_limited, until its probe);
   * the account's credentials are recorded as refused (upstream_auth_failed, until its probe; `force` skips
   * this wait); the channel is marked rejected (channel_not_in_account; unless `obeyRejected: false`); the
   * consumer's quota (upstream_quota_exceeded); the fleet limit; the channel's budget (BudgetExhaustedError
   * with the wait until a slot frees). Unless `reserved`, the channel's budget ends `reservePerHour` early:
   * that part is the proactive refresh's alone. `probe` says the call is the one try after a recorded
   * failure or pause; its outcome ends it or renews it.
   */
  async take(appId: string, channelId: string, perHour: number, endpoint: BudgetEndpoint = 'channel-token', options: TakeOptions = {}): Promise<BudgetSlot> {
    const now = this.clock.now();
    const globalKey = this.keys.globalLimiter();
    const channelKey = this.keys.budget(appId, channelId, endpoint);
    const quota = options.consumer !== undefined && options.consumer.perHour > 0 ? options.consumer : undefined;
    const quotaKey = this.keys.consumerQuota(appId, channelId, endpoint, quota?.name ?? '-');
    const limit = slotLimit(perHour, options.reservePerHour ?? 0, options.reserved ?? false);
    const [fleet, channel] = await guardRedis(
      Promise.all([
        this.redis.ptbTakeFleetSlot(
          globalKey,
          this.keys.globalCounter(),
          this.keys.accountFailure(appId),
          this.keys.upstreamPause(),
          now,
          GLOBAL_WINDOW_MS,
          this.globalPer10s,
          options.force === true ? 1 : 0,
          ACCOUNT_RETRY_MS,
          options.credentials ?? '',
          this.probeWindowMs,
        ),
        this.redis.ptbTakeSlot(
          channelKey,
          this.keys.status(appId, channelId),
          this.keys.rejected(appId, channelId),
          quotaKey,
          now,
          HOUR_MS,
          limit,
          options.obeyRejected === false ? 0 : 1,
          quota?.perHour ?? 0,
          HOUR_MS,
        ),
      ]),
    );
    const [gOk, gUsed, gThird, gProbes] = fleet;
    const [ok, used, third] = channel;
    if (gOk === 1 && ok === 1) {
      const probes = Number(gProbes);
      return { slot: Number(third), used: Number(used), probe: (probes & 1) !== 0, pauseProbe: (probes & 2) !== 0 };
    }
    // The third value is the slot's member when taken, the wait (or a message) when refused.
    await guardRedis(
      Promise.all([
        gOk === 1 && gThird !== undefined ? this.redis.zrem(globalKey, String(gThird)) : undefined,
        ok === 1 && third !== undefined ? this.redis.zrem(channelKey, String(third)) : undefined,
        ok === 1 && third !== undefined && quota !== undefined ? this.redis.zrem(quotaKey, String(third)) : undefined,
      ]),
    );
    if (gOk === 4) {
      throw new BrokerError('upstream_rate_limited', `PolyV calls are paused fleet-wide after PolyV said: ${String(gThird)}`, {
        retryAfterMs: Number(gUsed),
      });
    }
    if (gOk === 2) throw new BrokerError('upstream_auth_failed', String(gThird), { retryAfterMs: Number(gUsed) });
    if (ok === 3) {
      throw new BrokerError('channel_not_in_account', `channel ${channelId} does not belong to this PolyV account (${String(third)})`);
    }
    if (ok === 5) {
      throw new BrokerError(
        'upstream_quota_exceeded',
        `consumer ${quota?.name ?? '-'} has caused its quota of ${quota?.perHour ?? 0} ${endpoint} calls for channel ${channelId} in the last hour`,
        { retryAfterMs: Number(used) },
      );
    }
    if (gOk !== 1) {
      throw new BudgetExhaustedError(
        'global',
        `the fleet-wide PolyV limit of ${this.globalPer10s} calls per 10 s is reached (${gUsed} used)`,
        Number(gThird ?? GLOBAL_WINDOW_MS),
      );
    }
    const reserve = limit < perHour ? ` (the last ${perHour - limit} kept for the proactive refresh)` : '';
    throw new BudgetExhaustedError(
      'channel',
      `channel ${channelId} has used its budget of ${perHour} ${endpoint} calls in the last hour${reserve}`,
      Number(third ?? HOUR_MS),
    );
  }

  /** Pauses every PolyV call of the fleet for `pauseMs` (PolyV said `qps exceeds`); then one probe. */
  async recordPause(failure: FailureRecord, pauseMs: number): Promise<void> {
    const key = this.keys.upstreamPause();
    const fields = { code: failure.code, message: failure.message, at: failure.at, until: failure.at + pauseMs };
    await guardRedis(this.redis.multi().del(key).hset(key, fields).pexpire(key, pauseMs + ACCOUNT_FAILURE_KEEP_MS).exec());
  }

  /** Ends the pause (the probe went through). */
  async clearPause(): Promise<void> {
    await guardRedis(this.redis.del(this.keys.upstreamPause()));
  }

  /** The fleet's pause and when it ends (or ended, while its probe is awaited), or null when there is none. */
  async readPause(): Promise<(FailureRecord & { until: number }) | null> {
    const h = await guardRedis(this.redis.hgetall(this.keys.upstreamPause()));
    if (h['until'] === undefined) return null;
    return { code: h['code'] ?? 'upstream_rate_limited', message: h['message'] ?? '', at: Number(h['at'] ?? 0), until: Number(h['until']) };
  }

  /**
   * Records that PolyV refused the account's credentials (`credentials`: a fingerprint, never the secret): no
   * call for the account with those credentials goes out, on any replica, until ACCOUNT_RETRY_MS have passed;
   * then one probe.
   */
  async recordAccountFailure(appId: string, failure: FailureRecord, credentials: string): Promise<void> {
    const key = this.keys.accountFailure(appId);
    const fields = { code: failure.code, message: failure.message, at: failure.at, retryAt: failure.at + ACCOUNT_RETRY_MS, credentials };
    await guardRedis(
      this.redis
        .multi()
        .hset(key, fields)
        .pexpire(key, ACCOUNT_FAILURE_KEEP_MS)
        .exec(),
    );
  }

  /** Forgets the account's failure (a call went through). */
  async clearAccountFailure(appId: string): Promise<void> {
    await guardRedis(this.redis.del(this.keys.accountFailure(appId)));
  }

  /** The account's recorded failure and when the next try may go out, or null when none is recorded. */
  async readAccountFailure(appId: string): Promise<(FailureRecord & { retryAt: number }) | null> {
    const h = await guardRedis(this.redis.hgetall(this.keys.accountFailure(appId)));
    if (h['code'] === undefined) return null;
    return { code: h['code'], message: h['message'] ?? '', at: Number(h['at'] ?? 0), retryAt: Number(h['retryAt'] ?? 0) };
  }

  /** Calls made for the channel and endpoint in the rolling hour. */
  async used(appId: string, channelId: string, endpoint: BudgetEndpoint = 'channel-token'): Promise<number> {
    const now = this.clock.now();
    return guardRedis(this.redis.zcount(this.keys.budget(appId, channelId, endpoint), now - HOUR_MS, '+inf'));
  }

  /** Calls in the rolling hour for many channels in one round trip. */
  async usedMany(appId: string, channelIds: readonly string[], endpoint: BudgetEndpoint = 'channel-token'): Promise<number[]> {
    const now = this.clock.now();
    const replies = await guardRedis(batchCommands(
      this.redis,
      channelIds.map((ch) => ['zcount', this.keys.budget(appId, ch, endpoint), now - HOUR_MS, '+inf'] as const),
    ));
    return replies.map((value) => (typeof value === 'number' ? value : 0));
  }

  /** Time of the oldest call still inside the rolling hour, or null. */
  async oldestCall(appId: string, channelId: string, endpoint: BudgetEndpoint = 'channel-token'): Promise<number | null> {
    const now = this.clock.now();
    const [, score] = await guardRedis(this.redis.zrangebyscore(
      this.keys.budget(appId, channelId, endpoint),
      now - HOUR_MS,
      '+inf',
      'WITHSCORES',
      'LIMIT',
      0,
      1,
    ));
    return score === undefined ? null : Number(score);
  }

  /** Calls made by the whole fleet in the rolling 10 s. */
  async globalUsed(): Promise<number> {
    const now = this.clock.now();
    return guardRedis(this.redis.zcount(this.keys.globalLimiter(), now - GLOBAL_WINDOW_MS, '+inf'));
  }
}
