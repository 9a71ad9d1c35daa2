/**
 * Every Redis key and channel name the broker uses is built here and nowhere else.
 *
 * A channel's keys share the hash tag `{appId:channelId}`, so the Lua scripts that touch several of them run
 * on one Redis Cluster slot. BullMQ gets its own hash-tagged prefix for the same reason.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {
    if (!/^[a-z0-9_-]{1,32}$/.test(prefix)) throw new Error(`invalid Redis key prefix: ${prefix}`);
  }

  private channel(appId: string, channelId: string): string {
    return `${this.prefix}:{${appId}:${channelId}}`;
  }

  /** Hash: token, expireTime, version, fetchedAt. Expires with the token. */
  token(appId: string, channelId: string): string {
    return `${this.channel(appId, channelId)}:token`;
  }

  /**
   * Hash: seq (call counter, the version source), tokenVersion, lastError*, lastRefreshAt, lastReadAt (key
   * schema v1 replicas also write nextRefreshAt, which v2 keeps in `schedule`).
   */
  status(appId: string, channelId: string): string {
    return `${this.channel(appId, channelId)}:status`;
  }

  /** Sorted set of one endpoint's calls for the channel in the rolling hour (score = call time in ms). */
  budget(appId: string, channelId: string, endpoint: string = 'channel-token'): string {
    return `${this.channel(appId, channelId)}:budget:${endpoint}`;
  }

  /**
   * Sorted set of the PolyV calls one consumer caused for the channel and endpoint in the rolling hour
   * (score = call time in ms, member = the call's slot number).
   */
  consumerQuota(appId: string, channelId: string, endpoint: string, consumer: string): string {
    return `${this.channel(appId, channelId)}:quota:${endpoint}:${consumer}`;
  }

  /** String: owner of the single-flight refresh lock, with a PX expiry. */
  lock(appId: string, channelId: string): string {
    return `${this.channel(appId, channelId)}:lock`;
  }

  /** String: PolyV's message for a channel it called illegal, with a PX expiry. */
  rejected(appId: string, channelId: string): string {
    return `${this.channel(appId, channelId)}:rejected`;
  }

  /** String (JSON {token, expireTime}): a viewer's watch-API token, per profile digest; expires with it. */
  watchToken(appId: string, channelId: string, profileDigest: string): string {
    return `${this.channel(appId, channelId)}:watch-token:${profileDigest}`;
  }

  /** String (JSON {token, mediaChannelKey, fetchedAt, expireTime}): the deprecated common token. */
  commonToken(appId: string, channelId: string): string {
    return `${this.channel(appId, channelId)}:common-token`;
  }

  /** List of pre-minted single-use watch-page URLs (JSON {url, mintedAt, expireTime}), oldest first. */
  watchUrlPool(appId: string, channelId: string): string {
    return `${this.channel(appId, channelId)}:watch-urls`;
  }

  /** String: owner of the single-flight lock guarding `resourceKey` (a key built above), with a PX expiry. */
  lockFor(resourceKey: string): string {
    return `${resourceKey}:lock`;
  }

  /** String (JSON error): the last failure of the fetch guarded by that lock, read by replicas that waited on it. */
  failureFor(resourceKey: string): string {
    return `${resourceKey}:failure`;
  }

  /**
   * Key schema v1 only: the set of the account's warm channel IDs. Read by the migration to v2 (and still
   * written by v1 replicas while a rolling upgrade runs); v2 replicas keep the warm set in `schedule`.
   */
  warm(appId: string): string {
    return `${this.prefix}:{${appId}}:warm`;
  }

  /**
   * Sorted set, the warm set (key schema v2): every channel kept warm, scored by the epoch ms its refresh is
   * next due (a worker that claimed it moved the score a lease ahead). Members only, no per-channel key.
   */
  schedule(appId: string): string {
    return `${this.prefix}:{${appId}}:schedule`;
  }

  /** Hash: pinned channel ID -> epoch ms it was pinned (by configuration or PUT without a window). */
  pinned(appId: string): string {
    return `${this.prefix}:{${appId}}:pinned`;
  }

  /** Hash: channel ID -> "<warmFrom>:<warmUntil>" (epoch ms, either may be empty): channels warm in a window. */
  windows(appId: string): string {
    return `${this.prefix}:{${appId}}:windows`;
  }

  /** String: the key schema version the fleet's workers have migrated to ("2"). */
  schemaVersion(): string {
    return `${this.prefix}:{global}:schema-version`;
  }

  /** Sorted set of every PolyV call of the fleet in the rolling 10 s (the per-IP limit). */
  globalLimiter(): string {
    return `${this.prefix}:{global}:polyv-calls`;
  }

  /**
   * Hash (code, message, at, retryAt): the account's credentials were refused by PolyV; no call for the
   * account goes out before retryAt (same slot as the limiter, whose script checks it).
   */
  accountFailure(appId: string): string {
    return `${this.prefix}:{global}:account-failure:${appId}`;
  }

  /**
   * Hash (code, message, at, until): PolyV said `qps exceeds`; no replica calls PolyV before `until` (same slot
   * as the limiter, whose script checks it).
   */
  upstreamPause(): string {
    return `${this.prefix}:{global}:upstream-pause`;
  }

  /** Hash holding the fleet-wide call counter (same slot as the limiter's set). */
  globalCounter(): string {
    return `${this.prefix}:{global}:counter`;
  }

  /** BullMQ key prefix; the braces keep every queue key in one Cluster slot. */
  bullPrefix(): string {
    return `{${this.prefix}}:bull`;
  }

  /** Pub/sub channel on which token changes are announced. */
  events(): string {
    return `${this.prefix}:events`;
  }
}
