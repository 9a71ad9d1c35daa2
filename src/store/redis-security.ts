import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { RedisTlsSettings } from '../config/redis-deployment.js';

export type { RedisTlsSettings } from '../config/redis-deployment.js';

/**
 * Node TLS options for a `rediss://` host. The certificate is always verified (there is no switch to turn
 * that off): against `ca` when given, else the system CAs. SNI is sent for host names only (RFC 6066 forbids
 * IP addresses there); an IP address is then matched against the certificate's IP SANs.
 */
export function redisTlsOptions(hostname: string, settings: RedisTlsSettings = {}): ConnectionOptions {
  const host = hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    ...(isIP(host) === 0 ? { servername: host } : {}),
    ...(settings.ca === undefined ? {} : { ca: settings.ca }),
  };
}

/** The URL with its password replaced by `***`, for messages (the user name stays: it is not a secret). */
export function maskRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparsable URL)';
  }
}
