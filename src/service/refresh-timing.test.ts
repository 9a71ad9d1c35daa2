import { describe, expect, it } from 'vitest';
import { isRefreshDue, refreshDueAt, refreshJitterMs, type TimingPolicy } from './refresh-timing.js';

const policy: TimingPolicy = { refreshBeforeMs: 300_000, minTtlMs: 60_000 };
const expireTime = 10_000_000;

describe('refresh timing', () => {
  it('when a refresh job runs at its jittered due time, then the refresh is due (it does not re-run until the window opens)', () => {
    for (const r of [0, 0.25, 0.5, 0.999]) {
      const dueAt = refreshDueAt(expireTime, policy, () => r);
      expect(dueAt).toBeLessThanOrEqual(expireTime - policy.refreshBeforeMs);
      expect(isRefreshDue(expireTime, dueAt, policy)).toBe(true);
    }
  });

  it('when the token is younger than its refresh window and the jitter, then no refresh is due', () => {
    const earliest = expireTime - policy.refreshBeforeMs - refreshJitterMs(policy);
    expect(isRefreshDue(expireTime, earliest - 1, policy)).toBe(false);
    expect(isRefreshDue(expireTime, earliest, policy)).toBe(true);
  });
});
