/** Pure timing rules of channel tokens; every argument and result is in epoch ms. */

export interface TimingPolicy {
  readonly refreshBeforeMs: number;
  readonly minTtlMs: number;
}

/** A token may be served only while at least the minimum TTL remains. */
export function isServable(expireTime: number, now: number, policy: TimingPolicy): boolean {
  return expireTime - now >= policy.minTtlMs;
}

/** Largest early shift applied to a refresh so that many channels fetched together spread out. */
export function refreshJitterMs(policy: TimingPolicy): number {
  return Math.min(30_000, Math.floor(policy.refreshBeforeMs / 10));
}

/**
 * When the scheduled refresh of a token is due: `expireTime - refreshBefore`, moved earlier by up to the
 * jitter (never later, so readers never meet a token below the minimum TTL).
 */
export function refreshDueAt(expireTime: number, policy: TimingPolicy, random: () => number = Math.random): number {
  return expireTime - policy.refreshBeforeMs - Math.floor(random() * refreshJitterMs(policy));
}

/**
 * A refresh is due once the token has entered its refresh window, widened by the jitter: a job that
 * `refreshDueAt` moved up to the jitter earlier must find its refresh due when it runs (otherwise it would
 * re-run without delay until the unwidened window opened, and the jitter would spread nothing).
 */
export function isRefreshDue(expireTime: number, now: number, policy: TimingPolicy): boolean {
  return now >= expireTime - policy.refreshBeforeMs - refreshJitterMs(policy);
}

/** Exponential backoff with full jitter: a random wait in [base, min(cap, base * 2^failures)]. */
export function backoffMs(failures: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(baseMs + random() * Math.max(0, ceiling - baseMs));
}
