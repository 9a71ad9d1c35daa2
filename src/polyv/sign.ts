import { createHash } from 'node:crypto';

/** A parameter value as the caller holds it; null, undefined and blank strings are never sent. */
export type ParamValue = string | number | boolean | null | undefined;
export type SignAlgorithm = 'md5' | 'sha256';

/**
 * Keeps only the parameters PolyV should see: drops null, undefined, empty and whitespace-only values
 * and turns the rest into the exact text that will be transmitted.
 */
export function sendableParams(params: Readonly<Record<string, ParamValue>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined) continue;
    const text = String(value);
    if (text.trim() === '') continue;
    out[key] = text;
  }
  return out;
}

/** The string PolyV hashes: secret + k1v1k2v2... (keys in ASCII order) + secret. `sign` itself is excluded. */
export function signaturePlaintext(params: Readonly<Record<string, string>>, appSecret: string): string {
  const keys = Object.keys(params)
    .filter((k) => k !== 'sign')
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let body = '';
  for (const key of keys) body += key + params[key];
  return appSecret + body + appSecret;
}

/** Upper-case hex digest of the signature plaintext (MD5 by default, SHA-256 when asked). */
export function computeSign(
  params: Readonly<Record<string, string>>,
  appSecret: string,
  algorithm: SignAlgorithm = 'md5',
): string {
  return createHash(algorithm).update(signaturePlaintext(params, appSecret), 'utf8').digest('hex').toUpperCase();
}

/**
 * Returns the full parameter set to transmit: the sendable params plus `sign`.
 * With `signatureMethod=SHA256` among the params the digest is SHA-256 (the method itself is signed).
 */
export function signParams(params: Readonly<Record<string, ParamValue>>, appSecret: string): Record<string, string> {
  const sendable = sendableParams(params);
  delete sendable['sign'];
  const algorithm: SignAlgorithm = sendable['signatureMethod'] === 'SHA256' ? 'sha256' : 'md5';
  return { ...sendable, sign: computeSign(sendable, appSecret, algorithm) };
}
