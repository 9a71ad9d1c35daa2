import type { PolyvAccount } from '../config/config.js';
import type { CachedCommonToken } from '../store/kind-token-store.js';
import { recordServed } from './record-served.js';
import type { TokenKindDeps } from './token-kind-deps.js';

/** The common token; `expireTime` is the broker's own: PolyV documents no lifetime (fetchedAt + the configured TTL). */
export type CommonToken = CachedCommonToken;

export interface ServedCommonToken extends CommonToken {
  readonly outcome: 'hit' | 'miss' | 'refresh';
}

export interface CommonTokenServiceOptions extends TokenKindDeps {
  minTtlSeconds: number;
  ttlSeconds: number;
}

/**
 * The deprecated common token (token + mediaChannelKey): cached for a configured time since its lifetime is
 * undocumented, fetched through the refresh core, with compare-and-refresh like the channel token.
 */
export class CommonTokenService {
  private readonly o: CommonTokenServiceOptions;

  constructor(options: CommonTokenServiceOptions) {
    this.o = options;
  }

  getToken(account: PolyvAccount, channelId: string): Promise<ServedCommonToken> {
    return this.serve(account, channelId, undefined);
  }

  /** Refreshes only if `rejectedToken` is still the cached token; otherwise returns the cached one. */
  refreshRejected(account: PolyvAccount, channelId: string, rejectedToken: string): Promise<ServedCommonToken> {
    return this.serve(account, channelId, rejectedToken);
  }

  private async serve(account: PolyvAccount, channelId: string, rejectedToken: string | undefined): Promise<ServedCommonToken> {
    const { clock } = this.o;
    const store = this.o.store.commonToken(account.appId, channelId);
    const minTtlMs = this.o.minTtlSeconds * 1000;
    const needed = (t: CommonToken | null) => t === null || t.expireTime - clock.now() < minTtlMs || t.token === rejectedToken;

    const { value: token, fetched } = await this.o.flights.readOrRun({
      store,
      purpose: rejectedToken === undefined ? 'read' : `rejected\n${rejectedToken}`,
      needed,
      fetch: () =>
        this.o.gateway.call({
          account,
          channelId,
          kind: 'common',
          send: async () => {
            const data = await this.o.polyv.getCommonToken(account, channelId);
            const fetchedAt = clock.now();
            const fresh: CommonToken = { ...data, fetchedAt, expireTime: fetchedAt + this.o.ttlSeconds * 1000 };
            await store.write(fresh, this.o.ttlSeconds * 1000);
            return fresh;
          },
        }),
    });
    let outcome: ServedCommonToken['outcome'] = 'hit';
    if (fetched) outcome = rejectedToken === undefined ? 'miss' : 'refresh';
    recordServed(this.o.metrics, 'common', outcome, token.expireTime - clock.now(), minTtlMs);
    return { ...token, outcome };
  }
}
