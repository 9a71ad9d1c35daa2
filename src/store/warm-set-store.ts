import type { RedisKeys } from './redis-keys.js';
import { defineScripts, type RedisClient } from './redis-scripts.js';
import { guardRedis, repliesOf } from './redis-unavailable.js';

/** How a channel came to be warm: how it leaves the warm set again. */
export type WarmMode = 'pinned' | 'on-demand' | 'window';

/** A warm window: refreshed from shortly before `warmFrom` until `warmUntil` (epoch ms; null: open). */
export interface WarmWindow {
  readonly warmFrom: number | null;
  readonly warmUntil: number | null;
}

/** A channel's place in the warm set. */
export interface WarmEntry {
  readonly mode: WarmMode;
  /** Epoch ms its refresh is next due (or the end of a worker's lease on it). */
  readonly nextRefreshAt: number;
  readonly window: WarmWindow | null;
}

export interface WarmCounts {
  readonly total: number;
  readonly pinned: number;
  readonly window: number;
  readonly onDemand: number;
}

/** Most channels in one command of a batch operation. */
const BATCH = 500;

function formatWindow(w: WarmWindow): string {
  return `${w.warmFrom ?? ''}:${w.warmUntil ?? ''}`;
}

function parseWindow(value: string): WarmWindow {
  const [from = '', until = ''] = value.split(':');
  const at = (s: string) => (s === '' || !Number.isFinite(Number(s)) ? null : Number(s));
  return { warmFrom: at(from), warmUntil: at(until) };
}

/**
 * The warm set in Redis (key schema v2): one sorted set per account scored by each channel's next refresh
 * time, plus the few pinned and windowed channels in two hashes. An on-demand channel costs one sorted-set
 * member and nothing else; every key here carries the account's hash tag, so each change is one MULTI.
 */
export class WarmSetStore {
  private readonly redis: RedisClient;
  private readonly keys: RedisKeys;

  constructor(options: { redis: RedisClient; keys: RedisKeys }) {
    this.redis = defineScripts(options.redis);
    this.keys = options.keys;
  }

  /** Pins a channel (warm until DELETE), dropping any window, with its refresh due at `dueAt`. */
  async pin(appId: string, channelId: string, dueAt: number, now: number): Promise<void> {
    const k = this.keys;
    await guardRedis(
      this.redis
        .multi()
        .hset(k.pinned(appId), channelId, now)
        .hdel(k.windows(appId), channelId)
        .zadd(k.schedule(appId), dueAt, channelId)
        .exec(),
    ).then(repliesOf);
  }

  /** Makes a channel warm in a window (dropping a pin), its first refresh due at `dueAt`. */
  async setWindow(appId: string, channelId: string, window: WarmWindow, dueAt: number): Promise<void> {
    const k = this.keys;
    await guardRedis(
      this.redis
        .multi()
        .hset(k.windows(appId), channelId, formatWindow(window))
        .hdel(k.pinned(appId), channelId)
        .zadd(k.schedule(appId), dueAt, channelId)
        .exec(),
    ).then(repliesOf);
  }

  /** Puts a channel in the warm set (on demand) or moves its refresh to `dueAt`; returns whether it joined. */
  async add(appId: string, channelId: string, dueAt: number): Promise<boolean> {
    return Number(await guardRedis(this.redis.zadd(this.keys.schedule(appId), dueAt, channelId))) === 1;
  }

  /** Moves the refresh of a channel that is still warm (one that left meanwhile stays out). */
  async reschedule(appId: string, channelId: string, dueAt: number): Promise<void> {
    await guardRedis(this.redis.zadd(this.keys.schedule(appId), 'XX', dueAt, channelId));
  }

  /** Adds a channel with `dueAt` unless it is in the warm set already; returns whether it was added. */
  async addIfAbsent(appId: string, channelId: string, dueAt: number): Promise<boolean> {
    return (await this.addManyIfAbsent(appId, [[channelId, dueAt]])) === 1;
  }

  /** addIfAbsent for many channels, 500 to a command; returns how many were added. */
  async addManyIfAbsent(appId: string, entries: ReadonlyArray<readonly [channelId: string, dueAt: number]>): Promise<number> {
    let added = 0;
    for (let i = 0; i < entries.length; i += BATCH) {
      const args = entries.slice(i, i + BATCH).flatMap(([channelId, dueAt]) => [dueAt, channelId]);
      added += Number(await guardRedis(this.redis.zadd(this.keys.schedule(appId), 'NX', ...args)));
    }
    return added;
  }

  /** Of `channelIds`, those not pinned (HMGET, 500 to a command). */
  async notPinned(appId: string, channelIds: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < channelIds.length; i += BATCH) {
      const batch = channelIds.slice(i, i + BATCH);
      const values = await guardRedis(this.redis.hmget(this.keys.pinned(appId), ...batch));
      batch.forEach((channelId, j) => {
        if (values[j] === null || values[j] === undefined) out.push(channelId);
      });
    }
    return out;
  }

  /** Takes a channel out of the warm set, whatever its mode; returns whether it was in it. */
  async leave(appId: string, channelId: string): Promise<boolean> {
    const k = this.keys;
    const [removed] = repliesOf(
      await guardRedis(
        this.redis
          .multi()
          .zrem(k.schedule(appId), channelId)
          .hdel(k.pinned(appId), channelId)
          .hdel(k.windows(appId), channelId)
          .srem(k.warm(appId), channelId)
          .exec(),
      ),
    );
    return Number(removed) === 1;
  }

  /** The channel's place in the warm set, or null when it is not in it. */
  async entry(appId: string, channelId: string): Promise<WarmEntry | null> {
    const k = this.keys;
    // Three commands sent together rather than a pipeline: a pipeline per request (channel state is read per
    // request) made API replicas' RSS grow by a third over two minutes of load on Node 24 (fault suite).
    const [score, pinned, window] = await guardRedis(
      Promise.all([this.redis.zscore(k.schedule(appId), channelId), this.redis.hget(k.pinned(appId), channelId), this.redis.hget(k.windows(appId), channelId)]),
    );
    if (score === null || score === undefined) return null;
    const nextRefreshAt = Number(score);
    if (window !== null && window !== undefined) return { mode: 'window', nextRefreshAt, window: parseWindow(window) };
    return { mode: pinned !== null && pinned !== undefined ? 'pinned' : 'on-demand', nextRefreshAt, window: null };
  }

  /** Claims up to `limit` channels whose refresh is due, leasing each for `leaseMs` (see CLAIM_DUE_LUA). */
  async claimDue(appId: string, now: number, leaseMs: number, limit: number): Promise<string[]> {
    return guardRedis(this.redis.ptbClaimDue(this.keys.schedule(appId), now, leaseMs, limit));
  }

  /** The account's warm channels by mode (windows not yet open included), in one round trip. */
  async count(appId: string): Promise<WarmCounts> {
    const k = this.keys;
    const replies = await guardRedis(this.redis.multi().zcard(k.schedule(appId)).hlen(k.pinned(appId)).hlen(k.windows(appId)).exec());
    const [total = 0, pinned = 0, window = 0] = repliesOf(replies).map(Number);
    return { total, pinned, window, onDemand: Math.max(0, total - pinned - window) };
  }

  /** Iterates the warm set in batches (ZSCAN), so 100k channels never block Redis. */
  async *scan(appId: string, batch = 500): AsyncGenerator<string[]> {
    let cursor = '0';
    do {
      const [next, flat] = await guardRedis(this.redis.zscan(this.keys.schedule(appId), cursor, 'COUNT', batch));
      cursor = next;
      const members = flat.filter((_, i) => i % 2 === 0);
      if (members.length > 0) yield members;
    } while (cursor !== '0');
  }

  /** The account's warm windows (few: set by on-call and deployments), by channel ID. */
  async windowsOf(appId: string): Promise<Map<string, WarmWindow>> {
    const all = await guardRedis(this.redis.hgetall(this.keys.windows(appId)));
    return new Map(Object.entries(all).map(([channelId, value]) => [channelId, parseWindow(value)]));
  }

  /** Every pinned and windowed channel (few: set by configuration and on-call), for reconcile. */
  async pinnedAndWindows(appId: string): Promise<string[]> {
    const k = this.keys;
    const [pinned, windows] = await Promise.all([guardRedis(this.redis.hkeys(k.pinned(appId))), guardRedis(this.redis.hkeys(k.windows(appId)))]);
    return [...pinned, ...windows];
  }

  // ---- key schema v1 (read by the migration) ----

  /** Iterates the v1 warm set in batches (SSCAN). */
  async *scanV1(appId: string, batch = 500): AsyncGenerator<string[]> {
    let cursor = '0';
    do {
      const [next, members] = await guardRedis(this.redis.sscan(this.keys.warm(appId), cursor, 'COUNT', batch));
      cursor = next;
      if (members.length > 0) yield members;
    } while (cursor !== '0');
  }

  /** Removes migrated channels from the v1 warm set (v1 workers then end their jobs as "not warm"). */
  async removeV1(appId: string, channelIds: readonly string[]): Promise<void> {
    if (channelIds.length > 0) await guardRedis(this.redis.srem(this.keys.warm(appId), ...channelIds));
  }

  /** Records the schema version the workers migrated the fleet's keys to. */
  async markSchema(version: number): Promise<void> {
    await guardRedis(this.redis.set(this.keys.schemaVersion(), String(version)));
  }

  async schema(): Promise<number | null> {
    const v = await guardRedis(this.redis.get(this.keys.schemaVersion()));
    return v === null ? null : Number(v);
  }
}
