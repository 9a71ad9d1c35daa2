/**
 * The broker's Lua scripts. Each touches keys of one hash slot only (a channel's keys share a hash tag), so
 * they run unchanged on Redis Cluster.
 */

/**
 * Versioned token write: a write whose version is not newer than the stored one is ignored, so a slow or late
 * refresh can never overwrite a newer token. A write that took effect is announced on the events channel in
 * the same step (replicas drop their in-process copy), so no crash can separate the two.
 * KEYS: token hash, status hash. ARGV: version, token, expireTime, fetchedAt, events channel, event message.
 * Returns 1 when written, 0 when a newer (or the same) version is already stored.
 */
export const WRITE_TOKEN_LUA = `
local current = tonumber(redis.call('HGET', KEYS[2], 'tokenVersion') or '0')
local version = tonumber(ARGV[1])
if version <= current then return 0 end
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'expireTime', ARGV[3], 'version', ARGV[1], 'fetchedAt', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'tokenVersion', ARGV[1], 'lastRefreshAt', ARGV[4])
redis.call('HDEL', KEYS[2], 'lastErrorCode', 'lastErrorMessage', 'lastErrorAt', 'lastErrorRetryAfterMs')
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
`;

/**
 * The sliding-window step both slot scripts share: with `now`, `window` and `limit` set, and KEYS[1] the
 * window's sorted set and KEYS[2] the counter hash, either returns {0, used, msUntilASlotFrees} or leaves
 * `used` (before this call) and `seq` (the new slot's number) set, the slot taken.
 */
const SLIDING_WINDOW_TAKE = `redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = window
  if oldest[2] then wait = tonumber(oldest[2]) + window - now end
  if wait < 1 then wait = 1 end
  return {0, used, wait}
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('ZADD', KEYS[1], now, seq)
redis.call('PEXPIRE', KEYS[1], window)
`;

/**
 * Sliding-window call budget of one channel and endpoint. Takes one slot if fewer than `limit` calls happened
 * in the last `window` ms, unless the channel is marked rejected (PolyV called it illegal) and the caller
 * obeys the mark.
 * KEYS: the window's sorted set, the counter hash (for a monotonic slot number), the rejected mark.
 * ARGV: now, windowMs, limit, obeyRejected (1/0).
 * Returns {1, usedAfter, slotNumber}, {0, used, msUntilASlotFrees} or {3, 0, rejectedMessage}.
 */
export const TAKE_SLOT_LUA = `
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
if ARGV[4] == '1' then
  local rejected = redis.call('GET', KEYS[3])
  if rejected then return {3, 0, rejected} end
end
${SLIDING_WINDOW_TAKE}return {1, used + 1, seq}
`;

/**
 * The fleet-wide gate in front of PolyV: the rolling-window limiter of every call, and the account's failure
 * record. While an account's credentials are recorded as refused, no call with those same credentials
 * (compared by fingerprint, so a replica started with a corrected secret is not held back) goes out until
 * `retryAt`; the first call after that is the one probe, and moves `retryAt` on by `probeEvery` so no other
 * call follows it. `force` (on-call) skips the wait.
 * KEYS: the limiter's sorted set, its counter hash, the account's failure hash.
 * ARGV: now, windowMs, limit, force (1/0), probeEveryMs, credentials fingerprint.
 * Returns {1, usedAfter, member, probe}, {0, used, msUntilASlotFrees} or {2, msUntilRetry, message}.
 */
export const TAKE_FLEET_SLOT_LUA = `
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local retryAt = 0
if redis.call('HGET', KEYS[3], 'credentials') == ARGV[6] then
  retryAt = tonumber(redis.call('HGET', KEYS[3], 'retryAt') or '0')
end
if retryAt > 0 and now < retryAt and ARGV[4] ~= '1' then
  return {2, retryAt - now, redis.call('HGET', KEYS[3], 'message') or ''}
end
${SLIDING_WINDOW_TAKE}local probe = 0
if retryAt > 0 then
  probe = 1
  redis.call('HSET', KEYS[3], 'retryAt', now + tonumber(ARGV[5]))
end
return {1, used + 1, seq, probe}
`;

/** Deletes a lock only if it still holds our value. KEYS: lock. ARGV: owner value. */
export const RELEASE_LOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * Hands out the oldest pooled watch URL that is still fresh, dropping stale ones on the way. LPOP is atomic,
 * so each URL goes to exactly one caller across all replicas.
 * Entries are `<mintedAt>:<payload>`. KEYS: pool list. ARGV: minimum mintedAt (ms). Returns the entry or nil.
 */
export const POP_FRESH_LUA = `
local minted = tonumber(ARGV[1])
while true do
  local v = redis.call('LPOP', KEYS[1])
  if not v then return false end
  local at = tonumber(string.match(v, '^(%d+):'))
  if at and at >= minted then return v end
end
`;

/** Drops stale entries from the head of a pool (oldest first) and returns its length. KEYS: pool. ARGV: min mintedAt. */
export const TRIM_STALE_LUA = `
local minted = tonumber(ARGV[1])
while true do
  local v = redis.call('LINDEX', KEYS[1], 0)
  if not v then break end
  local at = tonumber(string.match(v, '^(%d+):'))
  if at and at >= minted then break end
  redis.call('LPOP', KEYS[1])
end
return redis.call('LLEN', KEYS[1])
`;
