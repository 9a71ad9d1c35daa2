import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { ENCRYPTION_KEY_BYTES } from '../config/encryption-key.js';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const B64 = '[A-Za-z0-9+/]*={0,2}';
/** `v1:<keyId>:<iv b64>:<tag b64>:<ciphertext b64>` */
const SEALED_RE = new RegExp(`^v1:([0-9a-f]{8}):(${B64}):(${B64}):(${B64})$`);

/**
 * A key's public name: the first 8 hex digits of HMAC-SHA256(key, "polyv-token-broker key id"). Stored with
 * every ciphertext so a reader knows which key to use, and logged at start-up so operators can tell keys
 * apart during a rotation; it reveals nothing usable about the key.
 */
export function encryptionKeyId(key: Buffer): string {
  return createHmac('sha256', key).update('polyv-token-broker key id').digest('hex').slice(0, 8);
}

/** Whether a stored value has the shape of a sealed token (whatever key sealed it). */
export function isSealed(value: string): boolean {
  return SEALED_RE.test(value);
}

export type OpenResult =
  | { readonly ok: true; readonly plaintext: string; readonly keyId: string | undefined }
  | { readonly ok: false; readonly reason: 'unknown_key' | 'auth_failed'; readonly keyId: string };

export interface TokenCipherOptions {
  /** Encrypts (and decrypts); unset: tokens are written in plain text. */
  currentKey?: Buffer | undefined;
  /** Decrypt only: keys being rotated out. */
  oldKeys?: readonly Buffer[];
}

/**
 * AES-256-GCM for tokens at rest. The additional authenticated data is the Redis key the value is stored
 * under, so a ciphertext copied to another channel's key does not decrypt. A fresh random 96-bit IV per
 * write; tokens are rewritten at least hourly, far below GCM's per-key limits.
 *
 * Plain-text values (written before encryption was switched on) are read as they are and replaced by the
 * next refresh; a sealed value this cipher cannot open (unknown key, tampered, moved) is reported, and the
 * store treats it as absent.
 */
export class TokenCipher {
  private readonly currentKey: Buffer | undefined;
  private readonly currentKeyId: string | undefined;
  private readonly keys = new Map<string, Buffer[]>();

  constructor(options: TokenCipherOptions = {}) {
    for (const key of [...(options.currentKey === undefined ? [] : [options.currentKey]), ...(options.oldKeys ?? [])]) {
      if (key.length !== ENCRYPTION_KEY_BYTES) throw new Error(`an encryption key must be ${ENCRYPTION_KEY_BYTES} bytes`);
      const id = encryptionKeyId(key);
      const same = this.keys.get(id) ?? [];
      if (!same.some((k) => k.equals(key))) same.push(key);
      this.keys.set(id, same);
    }
    this.currentKey = options.currentKey;
    this.currentKeyId = options.currentKey === undefined ? undefined : encryptionKeyId(options.currentKey);
  }

  /** Whether written tokens are encrypted. */
  get encrypts(): boolean {
    return this.currentKey !== undefined;
  }

  /** Ids of the key that encrypts (if any) and of every key that can decrypt. */
  describe(): { currentKeyId: string | undefined; decryptKeyIds: string[] } {
    return { currentKeyId: this.currentKeyId, decryptKeyIds: [...this.keys.keys()] };
  }

  /** The value to store for `plaintext` under Redis key `aad`: sealed with the current key, or as is. */
  seal(plaintext: string, aad: string): string {
    if (this.currentKey === undefined || this.currentKeyId === undefined) return plaintext;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.currentKey, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return `v1:${this.currentKeyId}:${iv.toString('base64')}:${tag.toString('base64')}:${ct.toString('base64')}`;
  }

  /** The token stored under Redis key `aad`: decrypted if sealed, as is if plain text. */
  open(stored: string, aad: string): OpenResult {
    const m = SEALED_RE.exec(stored);
    if (m === null) return { ok: true, plaintext: stored, keyId: undefined };
    const [, keyId = '', ivB64 = '', tagB64 = '', ctB64 = ''] = m;
    const candidates = this.keys.get(keyId);
    if (candidates === undefined) return { ok: false, reason: 'unknown_key', keyId };
    const iv = Buffer.from(ivB64, 'base64');
    const tag = Buffer.from(tagB64, 'base64');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) return { ok: false, reason: 'auth_failed', keyId };
    for (const key of candidates) {
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
        decipher.setAAD(Buffer.from(aad, 'utf8'));
        decipher.setAuthTag(tag);
        const plain = Buffer.concat([decipher.update(Buffer.from(ctB64, 'base64')), decipher.final()]);
        return { ok: true, plaintext: plain.toString('utf8'), keyId };
      } catch {
        // wrong key with a colliding id, tampered value, or sealed under another Redis key: try the next key
      }
    }
    return { ok: false, reason: 'auth_failed', keyId };
  }
}
