import { createHash } from 'node:crypto';
import type { PolyvAccount } from '../config/config.js';
import type { Caller } from '../domain/caller.js';
import type { CachedViewerToken } from '../store/kind-token-store.js';
import { recordServed } from './record-served.js';
import type { TokenKindDeps } from './token-kind-deps.js';

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

export interface ViewerTokenServiceOptions extends TokenKindDeps {
  minTtlSeconds: number;
}

/** Digest of everything sent for a viewer, so a changed nickname or avatar gets a token of its own. */
export function profileDigest(p: ViewerProfile): string {
  const fields = [p.viewerId, p.nickname ?? '', p.avatar ?? '', p.openid ?? '', p.actor ?? ''];
  return createHash('sha256').update(JSON.stringify(fields), 'utf8').digest('hex').slice(0, 32);
}

/**
 * Viewer watch-API tokens: cached per channel and viewer profile until shortly before their 5 hours are up
 * (counted from the moment the broker asked, so never later than PolyV's own expiry), fetched on demand
 * through the refresh core. Viewers are too many to refresh ahead; Redis entries expire by themselves.
 */
export class ViewerTokenService {
  private readonly o: ViewerTokenServiceOptions;

  constructor(options: ViewerTokenServiceOptions) {
    this.o = options;
  }

  async getToken(account: PolyvAccount, channelId: string, profile: ViewerProfile, caller?: Caller): Promise<ServedViewerToken> {
    const { clock } = this.o;
    const store = this.o.store.viewerToken(account.appId, channelId, profileDigest(profile));
    const minTtlMs = this.o.minTtlSeconds * 1000;
    const needed = (t: CachedViewerToken | null) => t === null || t.expireTime - clock.now() < minTtlMs;

    const { value: token, fetched } = await this.o.flights.readOrRun({
      store,
      purpose: `read\n${caller?.name ?? '-'}`,
      needed,
      fetch: () =>
        this.o.gateway.call({
          account,
          channelId,
          kind: 'watch_api',
          reason: 'miss',
          caller,
          send: async () => {
            const askedAt = clock.now();
            const data = await this.o.polyv.getWatchApiToken(account, { channelId, ...profile });
            const fresh = { token: data.token, expireTime: askedAt + WATCH_API_TOKEN_LIFETIME_MS };
            await store.write(fresh, fresh.expireTime - clock.now());
            return fresh;
          },
        }),
    });
    const outcome: ServedViewerToken['outcome'] = fetched ? 'miss' : 'hit';
    recordServed(this.o.metrics, 'watch_api', outcome, token.expireTime - clock.now(), minTtlMs);
    return { token: token.token, expireTime: token.expireTime, outcome };
  }
}
