import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseEncryptionKey } from '../config/encryption-key.js';
import { TokenCipher, encryptionKeyId, isSealed } from './token-cipher.js';

const K1 = randomBytes(32);
const K2 = randomBytes(32);
const KEY = 'ptb:{app:1000001}:token';
const TOKEN = '0123456789abcdef0123456789abcdef';

describe('TokenCipher (AES-256-GCM, bound to the Redis key)', () => {
  it('when a key is set, then the stored value is versioned ciphertext naming the key, and opens to the token', () => {
    const c = new TokenCipher({ currentKey: K1 });
    const sealed = c.seal(TOKEN, KEY);
    expect(sealed).toMatch(new RegExp(`^v1:${encryptionKeyId(K1)}:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$`));
    expect(sealed).not.toContain(TOKEN);
    expect(isSealed(sealed)).toBe(true);
    expect(c.open(sealed, KEY)).toEqual({ ok: true, plaintext: TOKEN, keyId: encryptionKeyId(K1) });
    // A fresh IV every time: equal tokens do not give equal ciphertexts.
    expect(c.seal(TOKEN, KEY)).not.toBe(sealed);
  });

  it('when the ciphertext is moved to another Redis key or altered, then it does not open', () => {
    const c = new TokenCipher({ currentKey: K1 });
    const sealed = c.seal(TOKEN, KEY);
    expect(c.open(sealed, 'ptb:{app:1000002}:token')).toMatchObject({ ok: false, reason: 'auth_failed' });
    const parts = sealed.split(':');
    const ct = Buffer.from(parts[4]!, 'base64');
    ct[0] = ct[0]! ^ 1;
    parts[4] = ct.toString('base64');
    expect(c.open(parts.join(':'), KEY)).toMatchObject({ ok: false, reason: 'auth_failed' });
  });

  it('when keys rotate, then old keys still decrypt, new writes use the current key, and a dropped key is unknown', () => {
    const before = new TokenCipher({ currentKey: K1 });
    const during = new TokenCipher({ currentKey: K2, oldKeys: [K1] });
    const after = new TokenCipher({ currentKey: K2 });
    const old = before.seal(TOKEN, KEY);
    expect(during.open(old, KEY)).toMatchObject({ ok: true, plaintext: TOKEN });
    expect(during.seal(TOKEN, KEY).split(':')[1]).toBe(encryptionKeyId(K2));
    expect(after.open(old, KEY)).toEqual({ ok: false, reason: 'unknown_key', keyId: encryptionKeyId(K1) });
    // Decrypt-only (old keys, no current key): reads ciphertext, writes plain text.
    const decryptOnly = new TokenCipher({ oldKeys: [K1] });
    expect(decryptOnly.open(old, KEY)).toMatchObject({ ok: true, plaintext: TOKEN });
    expect(decryptOnly.seal(TOKEN, KEY)).toBe(TOKEN);
  });

  it('when no key is configured, then tokens are stored as they are, and sealed values count as unreadable', () => {
    const plain = new TokenCipher();
    expect(plain.seal(TOKEN, KEY)).toBe(TOKEN);
    expect(plain.open(TOKEN, KEY)).toEqual({ ok: true, plaintext: TOKEN, keyId: undefined });
    const sealed = new TokenCipher({ currentKey: K1 }).seal(TOKEN, KEY);
    expect(plain.open(sealed, KEY)).toMatchObject({ ok: false, reason: 'unknown_key' });
  });

  it('parses 32-byte keys as hex or base64 (standard or URL-safe) and nothing else', () => {
    expect(parseEncryptionKey(K1.toString('hex'))?.equals(K1)).toBe(true);
    expect(parseEncryptionKey(K1.toString('base64'))?.equals(K1)).toBe(true);
    expect(parseEncryptionKey(K1.toString('base64url'))?.equals(K1)).toBe(true);
    expect(parseEncryptionKey(` ${K1.toString('base64')}\n`)?.equals(K1)).toBe(true);
    expect(parseEncryptionKey(randomBytes(16).toString('base64'))).toBeUndefined();
    expect(parseEncryptionKey(randomBytes(31).toString('hex'))).toBeUndefined();
    expect(parseEncryptionKey('correct horse battery staple')).toBeUndefined();
  });
});
