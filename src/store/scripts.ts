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
redis.call('HDEL', KEYS[2], 'lastErrorCode', 'lastErrorMessage', 'lastErrorAt', 'lastErrorRetryAfterMs', 'refreshFailures')
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
 * Sliding-window call budget of one channel and endpoint, and the calling consumer's quota on it. Refused,
 * in this order: the channel is marked rejected (PolyV called it illegal) and the caller obeys the mark
 * ({3, 0, message}); the consumer has caused `quotaLimit` calls in the last `quotaWindow` ms ({5, wait, 0});
 * `limit` calls happened in the last `window` ms ({0, used, wait}). `limit` is the caller's share: the whole
 * budget for the proactive refresh, the budget minus the refresh reserve for everyone else.
 * KEYS: the window's sorted set, the counter hash (for a monotonic slot number), the rejected mark, the
 * consumer's quota sorted set. ARGV: now, windowMs, limit, obeyRejected (1/0), quotaLimit (0: none),
 * quotaWindowMs. Returns {1, usedAfter, slotNumber} when taken (the slot number is the member in both sets).
 */
export const TAKE_SLOT_LUA = `
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local quotaLimit = tonumber(ARGV[5])
local quotaWindow = tonumber(ARGV[6])
if ARGV[4] == '1' then
  local rejected = redis.call('GET', KEYS[3])
  if rejected then return {3, 0, rejected} end
end
if quotaLimit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - quotaWindow)
  if redis.call('ZCARD', KEYS[4]) >= quotaLimit then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    local wait = quotaWindow
    if oldest[2] then wait = tonumber(oldest[2]) + quotaWindow - now end
    if wait < 1 then wait = 1 end
    return {5, wait, 0}
  end
end
${SLIDING_WINDOW_TAKE}if quotaLimit > 0 then
  redis.call('ZADD', KEYS[4], now, seq)
  redis.call('PEXPIRE', KEYS[4], quotaWindow)
end
return {1, used + 1, seq}
`;

/**
 * The fleet-wide gate in front of PolyV: the rolling-window limiter of every call, the fleet's pause after
 * PolyV said `qps exceeds`, and the account's failure record.
 * - While the pause lasts (`until`), no call goes out ({4, wait, message}); the first call after it is the
 *   probe: it moves `until` on by `probeWindow` (longer than one PolyV call) and marks the pause `probing`,
 *   so no other call follows it until it has answered (its success ends the pause; another `qps exceeds`
 *   starts a new one); meanwhile refused callers are told to look again within a second.
 * - While an account's credentials are recorded as refused, no call with those same credentials (compared by
 *   fingerprint, so a replica started with a corrected secret is not held back) goes out until `retryAt`
 *   ({2, wait, message}); the first call after that is the account's probe and moves `retryAt` on by
 *   `accountRetry`. `force` (on-call) skips this wait, not the pause.
 * KEYS: the limiter's sorted set, its counter hash, the account's failure hash, the fleet's pause hash.
 * ARGV: now, windowMs, limit, force (1/0), accountRetryMs, credentials fingerprint, probeWindowMs.
 * Returns {1, usedAfter, member, probes} when taken: probes is 1 for the account's probe, plus 2 for the
 * pause's; {0, used, msUntilASlotFrees} when the limiter is full.
 */
export const TAKE_FLEET_SLOT_LUA = `
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local pausedUntil = tonumber(redis.call('HGET', KEYS[4], 'until') or '0')
if pausedUntil > 0 and now < pausedUntil then
  local wait = pausedUntil - now
  -- While the probe is out, look again soon: its success ends the pause long before its window does.
  if redis.call('HGET', KEYS[4], 'probing') == '1' and wait > 1000 then wait = 1000 end
  return {4, wait, redis.call('HGET', KEYS[4], 'message') or ''}
end
local retryAt = 0
if redis.call('HGET', KEYS[3], 'credentials') == ARGV[6] then
  retryAt = tonumber(redis.call('HGET', KEYS[3], 'retryAt') or '0')
end
if retryAt > 0 and now < retryAt and ARGV[4] ~= '1' then
  return {2, retryAt - now, redis.call('HGET', KEYS[3], 'message') or ''}
end
${SLIDING_WINDOW_TAKE}local probes = 0
if retryAt > 0 then
  probes = probes + 1
  redis.call('HSET', KEYS[3], 'retryAt', now + tonumber(ARGV[5]))
end
if pausedUntil > 0 then
  probes = probes + 2
  redis.call('HSET', KEYS[4], 'until', now + tonumber(ARGV[7]), 'probing', '1')
end
return {1, used + 1, seq, probes}
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

/**
 * Claims the warm channels whose refresh is due: each is moved a lease ahead in the same step, so two workers
 * never claim one channel, and a channel whose refresh job is lost (its worker died before queueing it) comes
 * due again when the lease ends. The refresh job sets the real next time when it finishes.
 * KEYS: the schedule sorted set. ARGV: now, leaseMs, limit. Returns the claimed channel IDs.
 */
export const CLAIM_DUE_LUA = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local leased = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', leased, member)
end
return due
`;
