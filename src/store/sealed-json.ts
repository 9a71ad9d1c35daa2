import type { TokenCipher } from './token-cipher.js';

/**
 * JSON values that hold a secret (viewer tokens, the common token, watch URLs), sealed at rest with the
 * token cipher when encryption is on. The Redis key is the authenticated data, as for channel tokens.
 */
export class SealedJson {
  constructor(private readonly cipher: TokenCipher | undefined) {}

  seal(value: unknown, redisKey: string): string {
    const json = JSON.stringify(value);
    return this.cipher === undefined ? json : this.cipher.seal(json, redisKey);
  }

  /** The parsed value, or undefined when absent, unreadable (unknown key, tampered) or not JSON. */
  open(stored: string | null, redisKey: string): unknown {
    if (stored === null) return undefined;
    let json = stored;
    if (this.cipher !== undefined) {
      const opened = this.cipher.open(stored, redisKey);
      if (!opened.ok) return undefined;
      json = opened.plaintext;
    }
    try {
      return JSON.parse(json) as unknown;
    } catch {
      return undefined;
    }
  }
}
