import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { BrokerError } from '../errors/broker-error.js';
import type { ApiKey } from '../config/config.js';

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** A consumer as identified by its key. */
export interface Consumer {
  readonly name: string;
}

/**
 * Checks `Authorization: Bearer <key>` against the configured keys. Keys are compared as SHA-256 digests
 * with timingSafeEqual, and every key is compared, so timing reveals neither a key nor which one matched.
 */
export class ApiKeyAuth {
  private readonly digests: ReadonlyArray<{ name: string; digest: Buffer }>;

  constructor(keys: readonly ApiKey[]) {
    this.digests = keys.map((k) => ({ name: k.name, digest: sha256(k.key) }));
  }

  /** The consumer whose key this is, or undefined. */
  identify(presented: string): Consumer | undefined {
    const digest = sha256(presented);
    let match: Consumer | undefined;
    for (const k of this.digests) {
      if (timingSafeEqual(k.digest, digest) && match === undefined) match = { name: k.name };
    }
    return match;
  }

  middleware(): RequestHandler {
    return (req, res, next) => {
      const header = req.headers.authorization;
      const m = header === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(header);
      const consumer = m?.[1] === undefined ? undefined : this.identify(m[1]);
      if (consumer === undefined) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="polyv-token-broker"');
        next(
          new BrokerError(
            'unauthorized',
            header === undefined
              ? 'missing Authorization header: send Authorization: Bearer <key>'
              : 'the API key is not valid',
          ),
        );
        return;
      }
      res.locals['consumer'] = consumer;
      next();
    };
  }
}
