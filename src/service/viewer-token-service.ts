import { createHash } from 'node:crypto';
import type { PolyvAccount } from '../config/config.js';
import { recordServed } from './record-served.js';
import type { TokenKindDeps } from './token-kind-deps.js';
import type { SingleFlight } from './single-flight.js';

/** get-watch-api-token says its token is valid for 5 hours. */
export const WATCH_API_TOKEN_LIFETIME_MS = 5 * 3600 * 1000;

export interface ViewerProfile {
  readonly viewerId: string;
  readonly nickname?: string | undefined;
  readonly avatar?: string | undefined;
  readonly openid?: string | undefined;
  readonly actor?: string | undefined;
}

export interface ServedViewerToken {
  readonly token: string;
  readonly expireTime: number;
  readonly outcome: 'hit' | 'miss';
}

interface CachedViewerToken {
  token: string;
  expireTime: number;
}

export interface ViewerTokenServiceOptions extends TokenKindDeps {
  flights: SingleFlight;
  minTtlSeconds: number;
}

/** Digest of everything sent for a viewer, so a changed nickname or avatar gets a token of its own. */
export function profileDigest(p: ViewerProfile): string {
  const fields = [p.viewerId, p.nickname ?? '', p.avatar ?? '', p.openid ?? '', p.actor ?? ''];
  return createHash('sha256').update(JSON.stringify(fields), 'utf8').digest('hex').slice(0, 32);
}

/**
 * Viewer watch-API tokens: cached per channel and viewer profile until shortly before their 5 hours are up
 * (counted from the moment the broker asked, so never later than PolyV's own expiry), fetched on demand,
 * single-flight across replicas. Viewers are too many to refresh ahead; Redis entries expire by themselves.
 */
export class ViewerTokenService {
  private readonly o: ViewerTokenServiceOptions;

  constructor(options: ViewerTokenServiceOptions) {
    this.o = options;
  }

  async getToken(account: PolyvAccount, channelId: string, profile: ViewerProfile): Promise<ServedViewerToken> {
    const { redis, keys, clock } = this.o;
    const key = keys.watchToken(account.appId, channelId, profileDigest(profile));
    const minTtlMs = this.o.minTtlSeconds * 1000;
    const usable = (t: CachedViewerToken | null) => t !== null && t.expireTime - clock.now() >= minTtlMs;
    const read = async (): Promise<CachedViewerToken | null> => parse(this.o.sealed.open(await redis.get(key), key));

    const cached = await read();
    let outcome: ServedViewerToken['outcome'] = 'hit';
    let token = cached;
    if (!usable(cached)) {
      outcome = 'miss';
      token = await this.o.flights.run(keys.lockFor(key), keys.failureFor(key), {
        read,
        needed: (cur) => !usable(cur),
        fetch: () =>
          this.o.gateway.call(account, channelId, 'watch-api-token', account.budgets?.watchTokenPerHour ?? this.o.perHour, async () => {
            const askedAt = clock.now();
            const data = await this.o.polyv.getWatchApiToken(account, { channelId, ...profile });
            const fresh: CachedViewerToken = { token: data.token, expireTime: askedAt + WATCH_API_TOKEN_LIFETIME_MS };
            const ttlMs = fresh.expireTime - clock.now();
            if (ttlMs > 0) await redis.set(key, this.o.sealed.seal(fresh, key), 'PX', ttlMs);
            return fresh;
          }),
      });
    }
    const served = token!;
    recordServed(this.o.metrics, 'watch_api', outcome, served.expireTime - clock.now(), minTtlMs);
    return { token: served.token, expireTime: served.expireTime, outcome };
  }
}

function parse(value: unknown): CachedViewerToken | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Partial<CachedViewerToken>;
  return typeof v.token === 'string' && typeof v.expireTime === 'number' ? { token: v.token, expireTime: v.expireTime } : null;
}
