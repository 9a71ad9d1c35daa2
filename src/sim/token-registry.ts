import { randomBytes } from 'node:crypto';
import type { SimTokenCheck, SimTokenKind } from './sim-types.js';

const HOUR_MS = 3_600_000;
/** Lifetimes of the tokens whose lifetime the caller cannot choose (common: undocumented, taken as 24 h). */
export const FIXED_LIFETIME_MS: Readonly<Record<Exclude<SimTokenKind, 'channel'>, number>> = {
  'watch-api': 5 * HOUR_MS,
  common: 24 * HOUR_MS,
  'watch-url': HOUR_MS,
};
/** Above this many remembered tokens, long-expired ones are forgotten (they then check as unknown). */
const PRUNE_ABOVE = 100_000;
const FORGET_AFTER_EXPIRY_MS = HOUR_MS;

interface IssuedToken {
  kind: SimTokenKind;
  channelId: string;
  expiresAt: number;
  invalidated: boolean;
  used: boolean;
}

export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

/** Short lower-case alphanumeric token like PolyV's watch-API tokens ("fri7txjyy1"). */
function randomAlnum(length: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(length)].map((b) => alphabet[b % alphabet.length]).join('');
}

/** Every token the simulator issued, with what makes it valid or not. */
export class TokenRegistry {
  private readonly tokens = new Map<string, IssuedToken>();
  /** `appId channelId` → the channel's current non-disposable token (a channel ID is the account's own). */
  private readonly currentChannelToken = new Map<string, string>();

  constructor(private readonly invalidatePreviousChannelToken: boolean) {}

  issueChannelToken(
    appId: string,
    channelId: string,
    expireSeconds: number,
    disposable: boolean,
    now: number,
  ): { channelToken: string; expireTime: number } {
    const channelToken = randomHex(16);
    const expireTime = now + expireSeconds * 1000;
    if (!disposable) {
      const owner = `${appId} ${channelId}`;
      const previous = this.currentChannelToken.get(owner);
      const record = previous === undefined ? undefined : this.tokens.get(key('channel', previous));
      if (record !== undefined && this.invalidatePreviousChannelToken) record.invalidated = true;
      this.currentChannelToken.set(owner, channelToken);
    }
    this.remember('channel', channelToken, { channelId, expiresAt: expireTime }, now);
    return { channelToken, expireTime };
  }

  issue(kind: Exclude<SimTokenKind, 'channel'>, channelId: string, now: number): string {
    const token = kind === 'watch-api' ? randomAlnum(10) : randomHex(16);
    this.remember(kind, token, { channelId, expiresAt: now + FIXED_LIFETIME_MS[kind] }, now);
    return token;
  }

  check(kind: SimTokenKind, channelId: string, token: string, now: number): SimTokenCheck {
    const record = this.tokens.get(key(kind, token));
    if (record === undefined) return { valid: false, reason: 'unknown token' };
    if (record.channelId !== channelId) return { valid: false, reason: `issued for channel ${record.channelId}` };
    if (now >= record.expiresAt) return { valid: false, reason: 'expired' };
    if (record.invalidated) return { valid: false, reason: 'invalidated by a newer channel token' };
    if (record.used) return { valid: false, reason: 'already used' };
    return { valid: true };
  }

  /** Opens a one-time watch URL: valid the first time (and then used up), invalid afterwards. */
  useWatchUrl(channelId: string, token: string, now: number): SimTokenCheck {
    const result = this.check('watch-url', channelId, token, now);
    const record = this.tokens.get(key('watch-url', token));
    if (result.valid && record !== undefined) record.used = true;
    return result;
  }

  private remember(kind: SimTokenKind, token: string, fields: Pick<IssuedToken, 'channelId' | 'expiresAt'>, now: number): void {
    if (this.tokens.size >= PRUNE_ABOVE) this.prune(now);
    this.tokens.set(key(kind, token), { kind, ...fields, invalidated: false, used: false });
  }

  private prune(now: number): void {
    for (const [k, record] of this.tokens) {
      if (record.expiresAt + FORGET_AFTER_EXPIRY_MS < now) this.tokens.delete(k);
    }
  }
}

function key(kind: SimTokenKind, token: string): string {
  return `${kind}\u0000${token}`;
}
