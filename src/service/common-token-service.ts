import type { PolyvAccount } from '../config/config.js';
import type { Caller } from '../domain/caller.js';
import type { CachedCommonToken } from '../store/kind-token-store.js';
import { recordServed } from './record-served.js';
import type { TokenKindDeps } from './token-kind-deps.js';

/** The common token; `expireTime` is the broker's own: PolyV documents no lifetime (fetchedAt + the configured TTL). */
export type CommonToken = CachedCommonToken;

export interface ServedCommonToken extends CommonToken {
  readonly outcome: 'hit' | 'miss' | 'refresh' | 'report_too_soon';
}

export interface CommonTokenServiceOptions extends TokenKindDeps {
  minTtlSeconds: number;
  ttlSeconds: number;
  /** A report of the current token younger than this is answered with it, without a PolyV call. */
  reportMinAgeMs?: number | undefined;
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

  getToken(account: PolyvAccount, channelId: string, caller?: Caller): Promise<ServedCommonToken> {
    return this.serve(account, channelId, undefined, caller);
  }

  /**
   * Refreshes only if `rejectedToken` is still the cached token and at least the minimum report age old;
   * otherwise returns the cached one (`report_too_soon` when it was the reported one).
   */
  refreshRejected(account: PolyvAccount, channelId: string, rejectedToken: string, caller?: Caller): Promise<ServedCommonToken> {
    return this.serve(account, channelId, rejectedToken, caller);
  }

  private async serve(
    account: PolyvAccount,
    channelId: string,
    rejectedToken: string | undefined,
    caller: Caller | undefined,
  ): Promise<ServedCommonToken> {
    const { clock } = this.o;
    const store = this.o.store.commonToken(account.appId, channelId);
    const minTtlMs = this.o.minTtlSeconds * 1000;
    const usable = (t: CommonToken) => t.expireTime - clock.now() >= minTtlMs;
    const tooYoung = (t: CommonToken) => clock.now() - t.fetchedAt < (this.o.reportMinAgeMs ?? 0);
    const needed = (t: CommonToken | null) => t === null || !usable(t) || (t.token === rejectedToken && !tooYoung(t));

    const { value: token, fetched } = await this.o.flights.readOrRun({
      store,
      purpose: `${rejectedToken === undefined ? 'read' : `rejected\n${rejectedToken}`}\n${caller?.name ?? '-'}`,
      needed,
      fetch: () =>
        this.o.gateway.call({
          account,
          channelId,
          kind: 'common',
          reason: rejectedToken === undefined ? 'miss' : 'report',
          caller,
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
    else if (token.token === rejectedToken) outcome = 'report_too_soon';
    recordServed(this.o.metrics, 'common', outcome, token.expireTime - clock.now(), minTtlMs);
    return { ...token, outcome };
  }
}
