import type { PolyvAccount } from '../config/config.js';
import { recordServed } from './record-served.js';
import type { TokenKindDeps } from './token-kind-deps.js';
import type { SingleFlight } from './single-flight.js';

export interface CommonToken {
  readonly token: string;
  readonly mediaChannelKey: string;
  readonly fetchedAt: number;
  /** The broker's own expiry: PolyV documents no lifetime, so this is fetchedAt + the configured TTL. */
  readonly expireTime: number;
}

export interface ServedCommonToken extends CommonToken {
  readonly outcome: 'hit' | 'miss' | 'refresh';
}

export interface CommonTokenServiceOptions extends TokenKindDeps {
  flights: SingleFlight;
  minTtlSeconds: number;
  ttlSeconds: number;
}

/**
 * The deprecated common token (token + mediaChannelKey): cached for a configured time since its lifetime is
 * undocumented, fetched single-flight, with compare-and-refresh like the channel token.
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
    const { redis, keys, clock } = this.o;
    const key = keys.commonToken(account.appId, channelId);
    const minTtlMs = this.o.minTtlSeconds * 1000;
    const usable = (t: CommonToken | null): t is CommonToken => t !== null && t.expireTime - clock.now() >= minTtlMs;
    const needed = (t: CommonToken | null) => !usable(t) || (rejectedToken !== undefined && t.token === rejectedToken);
    const read = async () => parse(this.o.sealed.open(await redis.get(key), key));

    const cached = await read();
    let token: CommonToken;
    let outcome: ServedCommonToken['outcome'];
    if (!needed(cached) && cached !== null) {
      token = cached;
      outcome = 'hit';
    } else {
      outcome = rejectedToken === undefined ? 'miss' : 'refresh';
      token = await this.o.flights.run(keys.lockFor(key), keys.failureFor(key), {
        read,
        needed,
        fetch: () =>
          this.o.gateway.call(account, channelId, 'common-token', account.budgets?.commonTokenPerHour ?? this.o.perHour, async () => {
            const data = await this.o.polyv.getCommonToken(account, channelId);
            const fetchedAt = clock.now();
            const fresh: CommonToken = { ...data, fetchedAt, expireTime: fetchedAt + this.o.ttlSeconds * 1000 };
            await redis.set(key, this.o.sealed.seal(fresh, key), 'PX', this.o.ttlSeconds * 1000);
            return fresh;
          }),
      });
    }
    recordServed(this.o.metrics, 'common', outcome, token.expireTime - clock.now(), minTtlMs);
    return { ...token, outcome };
  }
}

function parse(value: unknown): CommonToken | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Partial<CommonToken>;
  if (typeof v.token !== 'string' || typeof v.mediaChannelKey !== 'string') return null;
  if (typeof v.expireTime !== 'number' || typeof v.fetchedAt !== 'number') return null;
  return { token: v.token, mediaChannelKey: v.mediaChannelKey, fetchedAt: v.fetchedAt, expireTime: v.expireTime };
}
