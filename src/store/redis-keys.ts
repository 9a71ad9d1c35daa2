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

  /** Hash: seq (call counter, the version source), tokenVersion, lastError*, lastRefreshAt, nextRefreshAt. */
  status(appId: string, channelId: string): string {
    return `${this.channel(appId, channelId)}:status`;
  }

  /** Sorted set of one endpoint's calls for the channel in the rolling hour (score = call time in ms). */
  budget(appId: string, channelId: string, endpoint: string = 'channel-token'): string {
    return `${this.channel(appId, channelId)}:budget:${endpoint}`;
  }

  /** String: owner of the single-flight refresh lock, with a PX expiry. */
  lock(appId: string, channelId: string): string {
    return `${this.channel(appId, channelId)}:lock`;
  }

  /** String: PolyV's message for a channel it called illegal, with a PX expiry. */
  rejected(appId: string, channelId: string): string {
    return `${this.channel(appId, channelId)}:rejected`;
  }

  /** Set of the account's warm channel IDs. */
  warm(appId: string): string {
    return `${this.prefix}:{${appId}}:warm`;
  }

  /** Sorted set of every PolyV call of the fleet in the rolling 10 s (the per-IP limit). */
  globalLimiter(): string {
    return `${this.prefix}:{global}:polyv-calls`;
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
