/** AES-256 keys are 32 bytes. */
export const ENCRYPTION_KEY_BYTES = 32;

/**
 * A 32-byte key written as 64 hex digits or as base64 (standard or URL-safe, padded or not), e.g. the output
 * of `openssl rand -base64 32`; undefined for anything else. Never echoes its input.
 */
export function parseEncryptionKey(text: string): Buffer | undefined {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (!/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(t)) return undefined;
  const bytes = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return bytes.length === ENCRYPTION_KEY_BYTES ? bytes : undefined;
}
