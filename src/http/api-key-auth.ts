import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { BrokerError } from '../errors/broker-error.js';
import type { ApiKey, RateLimit } from '../config/config.js';
import type { Caller } from '../domain/caller.js';
import type { TokenKind } from '../domain/token-kinds.js';
import type { ConsumerRateLimiter } from './consumer-rate-limiter.js';

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** What a consumer may read, as sets; an absent dimension allows everything. */
export interface AccessScope {
  readonly accounts?: ReadonlySet<string>;
  readonly channels?: ReadonlySet<string>;
  readonly kinds?: ReadonlySet<TokenKind>;
}

/**
 * A consumer as identified by its key (in `res.locals['consumer']` after authentication); it is the Caller
 * of the PolyV calls its requests cause, with its quota of them.
 */
export interface Consumer extends Caller {
  readonly name: string;
  /** Absent: the consumer may read every kind of token of every channel in every account. */
  readonly scope?: AccessScope;
  /** Its own request rate limit (BROKER_CONFIG_FILE); absent: BROKER_RATE_LIMIT_PER_SECOND and _BURST. */
  readonly rateLimit?: RateLimit;
}

function consumerOf(k: ApiKey, defaultUpstreamPerHour: number): Consumer {
  const limited = { upstreamPerHour: k.upstreamPerHour ?? defaultUpstreamPerHour, ...(k.rateLimit === undefined ? {} : { rateLimit: k.rateLimit }) };
  if (k.scope === undefined) return { name: k.name, ...limited };
  const { accounts, channels, kinds } = k.scope;
  return {
    name: k.name,
    ...limited,
    scope: {
      ...(accounts === undefined ? {} : { accounts: new Set(accounts) }),
      ...(channels === undefined ? {} : { channels: new Set(channels) }),
      ...(kinds === undefined ? {} : { kinds: new Set(kinds) }),
    },
  };
}

export interface ApiKeyAuthOptions {
  /** Charged once per request after a key is recognized; a refusal is answered 429 `rate_limited`. */
  rateLimiter?: ConsumerRateLimiter;
  /** PolyV calls a consumer may cause per channel and endpoint and hour, unless its key says (BROKER_CONSUMER_UPSTREAM_PER_HOUR). */
  upstreamPerHour?: number;
}

/** The challenge every 401 carries. */
export const WWW_AUTHENTICATE = 'Bearer realm="polyv-token-broker"';

/** `Authorization: Bearer <key>`, the scheme in any case; the key is the first capture. */
const BEARER = /^Bearer[ ]+(\S+)\s*$/i;

/**
 * Checks `Authorization: Bearer <key>` against the configured keys. Keys are compared as SHA-256 digests
 * with timingSafeEqual (a key configured as `keySha256` is kept only as its digest), and every key is
 * compared, so timing reveals neither a key nor which one matched. Then, with a rate limiter, it charges the
 * consumer's bucket.
 *
 * Both checks are plain functions of a header value and a request object (`authenticate`, `admit`): the
 * express `/v1` router runs them through `middleware()`, the fast token route calls them directly, so the
 * two paths decide alike and the fast one runs nothing of express.
 */
export class ApiKeyAuth {
  private readonly digests: ReadonlyArray<{ consumer: Consumer; digest: Buffer }>;
  private readonly rateLimiter: ConsumerRateLimiter | undefined;
  private readonly byConnection = new WeakMap<object, { header: string; consumer: Consumer }>();

  constructor(keys: readonly ApiKey[], options: ApiKeyAuthOptions = {}) {
    this.rateLimiter = options.rateLimiter;
    this.digests = keys.map((k) => ({
      consumer: consumerOf(k, options.upstreamPerHour ?? 0),
      digest: k.keySha256 !== undefined ? Buffer.from(k.keySha256, 'hex') : sha256(k.key),
    }));
  }

  /**
   * `authenticate` remembered per keep-alive connection: a request that presents the same header as the
   * previous one on this connection is the same consumer, without hashing the key and comparing it with
   * every configured one again. Only successes are remembered; a connection holds one entry.
   */
  authenticateOn(connection: object, header: string | undefined): Consumer | BrokerError {
    const memo = this.byConnection.get(connection);
    if (memo !== undefined && header === memo.header) return memo.consumer;
    const result = this.authenticate(header);
    if (!(result instanceof BrokerError) && header !== undefined) this.byConnection.set(connection, { header, consumer: result });
    return result;
  }

  /** The consumer whose key this is, or undefined. */
  identify(presented: string): Consumer | undefined {
    const digest = sha256(presented);
    let match: Consumer | undefined;
    for (const k of this.digests) {
      if (timingSafeEqual(k.digest, digest) && match === undefined) match = k.consumer;
    }
    return match;
  }

  /**
   * The consumer presenting this `Authorization` header value, or the 401 `unauthorized` error to answer
   * (with the `WWW-Authenticate: <WWW_AUTHENTICATE>` header).
   */
  authenticate(header: string | undefined): Consumer | BrokerError {
    const m = header === undefined ? null : BEARER.exec(header);
    const consumer = m?.[1] === undefined ? undefined : this.identify(m[1]);
    if (consumer !== undefined) return consumer;
    return new BrokerError(
      'unauthorized',
      header === undefined ? 'missing Authorization header: send Authorization: Bearer <key>' : 'the API key is not valid',
    );
  }

  /**
   * Charges one request of an authenticated consumer against its rate limit: the 429 `rate_limited` error to
   * answer (it carries the Retry-After), or undefined when the request may go on. A request object is
   * charged once however often it is checked (the fast route checks it, then hands a cache miss to express,
   * which checks it again).
   */
  admit(request: object, consumer: Consumer): BrokerError | undefined {
    return this.rateLimiter?.charge(request, consumer);
  }

  /** `authenticate` then `admit`, as the first middleware of the `/v1` router; the consumer goes to `res.locals`. */
  middleware(): RequestHandler {
    return (req, res, next) => {
      const consumer = this.authenticate(req.headers.authorization);
      if (consumer instanceof BrokerError) {
        res.setHeader('WWW-Authenticate', WWW_AUTHENTICATE);
        next(consumer);
        return;
      }
      const refusal = this.admit(req, consumer);
      if (refusal !== undefined) {
        next(refusal);
        return;
      }
      res.locals['consumer'] = consumer;
      next();
    };
  }
}
