import type { RedisDeployment } from './redis-deployment.js';
import { ENCRYPTION_KEY_BYTES, parseEncryptionKey } from './encryption-key.js';
import type { ParsedEnv } from './env-schema.js';
import { readSecret, type ReadFile } from './read-secret.js';

/** The security-related part of the configuration: secrets that may come from files, Redis TLS, admin port. */
export interface SecuritySettings {
  /** BROKER_API_KEYS or the content of BROKER_API_KEYS_FILE, lines joined by commas ('' if unusable). */
  readonly apiKeys: string;
  /** TLS settings for rediss:// (every connection, BullMQ's included); `ca` is PEM text. */
  readonly redisTls: { readonly ca: string | undefined };
  /** A Redis Cluster (REDIS_CLUSTER_NODES) or Sentinel (REDIS_SENTINELS) with their credentials and TLS; undefined: REDIS_URL. */
  readonly redisDeployment: RedisDeployment | undefined;
  /** Tokens at rest: `key` encrypts and decrypts, `oldKeys` only decrypt; no key: plain text. */
  readonly encryption: { readonly key: Buffer | undefined; readonly oldKeys: readonly Buffer[] };
  /** A separate listener for /metrics, /healthz and /readyz; undefined: they are served on the main port. */
  readonly admin: { readonly port: number; readonly host: string } | undefined;
}

/** A list given one item per line or comma-separated; blank lines and `#` comment lines are ignored. */
function listText(text: string): string {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .join(',');
}

const KEY_RULE = `must be ${ENCRYPTION_KEY_BYTES} bytes written as base64 or 64 hex digits (make one with: openssl rand -base64 32)`;

function parseKeys(name: string, text: string | undefined, problems: string[]): Buffer[] {
  if (text === undefined) return [];
  const keys: Buffer[] = [];
  listText(text)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .forEach((item, index, all) => {
      const key = parseEncryptionKey(item);
      // The value itself is never echoed: it is a secret even when malformed.
      if (key === undefined) problems.push(all.length > 1 ? `${name} entry ${index + 1} ${KEY_RULE}` : `${name} ${KEY_RULE}`);
      else keys.push(key);
    });
  return keys;
}

/** Reads and validates the security settings; every problem goes to `problems`, naming its variable. */
export function resolveSecuritySettings(e: ParsedEnv, readFile: ReadFile, problems: string[]): SecuritySettings {
  const apiKeysText = readSecret(
    { name: 'BROKER_API_KEYS', value: e.BROKER_API_KEYS, file: e.BROKER_API_KEYS_FILE },
    readFile,
    problems,
  );
  const apiKeys = apiKeysText === undefined ? '' : e.BROKER_API_KEYS_FILE === undefined ? apiKeysText : listText(apiKeysText);

  const deployed = e.REDIS_CLUSTER_NODES !== undefined || e.REDIS_SENTINELS !== undefined;
  let ca: string | undefined;
  if (e.REDIS_TLS_CA_FILE !== undefined) {
    if (deployed && !e.REDIS_TLS) {
      problems.push('REDIS_TLS_CA_FILE is set but REDIS_TLS is not true');
    } else if (!deployed && (e.REDIS_URL === undefined || !e.REDIS_URL.startsWith('rediss://'))) {
      problems.push('REDIS_TLS_CA_FILE is set but REDIS_URL does not start with rediss://');
    }
    ca = readSecret({ name: 'REDIS_TLS_CA', file: e.REDIS_TLS_CA_FILE, content: 'text' }, readFile, problems);
    if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) {
      problems.push(`REDIS_TLS_CA_FILE must hold PEM certificates (-----BEGIN CERTIFICATE-----): ${e.REDIS_TLS_CA_FILE}`);
    }
  }

  const keyText = readSecret(
    { name: 'BROKER_ENCRYPTION_KEY', value: e.BROKER_ENCRYPTION_KEY, file: e.BROKER_ENCRYPTION_KEY_FILE },
    readFile,
    problems,
  );
  const [key, ...extra] = parseKeys('BROKER_ENCRYPTION_KEY', keyText, problems);
  if (extra.length > 0) problems.push('BROKER_ENCRYPTION_KEY must be one key (earlier keys go in BROKER_ENCRYPTION_OLD_KEYS)');
  const oldKeysText = readSecret(
    { name: 'BROKER_ENCRYPTION_OLD_KEYS', value: e.BROKER_ENCRYPTION_OLD_KEYS, file: e.BROKER_ENCRYPTION_OLD_KEYS_FILE },
    readFile,
    problems,
  );
  const oldKeys = parseKeys('BROKER_ENCRYPTION_OLD_KEYS', oldKeysText, problems);

  let admin: SecuritySettings['admin'];
  if (e.BROKER_ADMIN_PORT !== undefined) {
    if (e.BROKER_ADMIN_PORT !== 0 && e.BROKER_ADMIN_PORT === e.PORT) {
      problems.push(`BROKER_ADMIN_PORT must differ from PORT (both are ${e.PORT})`);
    }
    admin = { port: e.BROKER_ADMIN_PORT, host: e.BROKER_ADMIN_HOST ?? e.HOST };
  } else if (e.BROKER_ADMIN_HOST !== undefined) {
    problems.push('BROKER_ADMIN_HOST is set but BROKER_ADMIN_PORT is not');
  }

  const redisDeployment = resolveRedisDeployment(e, ca, readFile, problems);
  return { apiKeys, redisTls: { ca }, redisDeployment, encryption: { key, oldKeys }, admin };
}

/**
 * REDIS_CLUSTER_NODES or REDIS_SENTINELS (at most one, and never with REDIS_URL), with the credentials and
 * TLS of the data nodes. Those variables mean nothing with REDIS_URL, which carries its own, so giving them
 * there is an error rather than silently ignored.
 */
function resolveRedisDeployment(e: ParsedEnv, ca: string | undefined, readFile: ReadFile, problems: string[]): RedisDeployment | undefined {
  const cluster = e.REDIS_CLUSTER_NODES;
  const sentinels = e.REDIS_SENTINELS;
  if (cluster !== undefined && sentinels !== undefined) {
    problems.push('REDIS_CLUSTER_NODES and REDIS_SENTINELS are both set: give one (a Redis Cluster, or a master found through Sentinel)');
  }
  for (const [name, value] of [['REDIS_CLUSTER_NODES', cluster], ['REDIS_SENTINELS', sentinels]] as const) {
    if (value !== undefined && e.REDIS_URL !== undefined) problems.push(`REDIS_URL and ${name} are both set: give one`);
  }
  const password = readSecret(
    { name: 'REDIS_PASSWORD', value: e.REDIS_PASSWORD, file: e.REDIS_PASSWORD_FILE },
    readFile,
    problems,
  );
  const sentinelPassword = readSecret(
    { name: 'REDIS_SENTINEL_PASSWORD', value: e.REDIS_SENTINEL_PASSWORD, file: e.REDIS_SENTINEL_PASSWORD_FILE },
    readFile,
    problems,
  );
  if (cluster === undefined && sentinels === undefined) {
    const stray = [
      ['REDIS_USERNAME', e.REDIS_USERNAME],
      ['REDIS_PASSWORD', e.REDIS_PASSWORD ?? e.REDIS_PASSWORD_FILE],
      ['REDIS_TLS', e.REDIS_TLS ? 'true' : undefined],
    ].filter(([, v]) => v !== undefined);
    for (const [name] of stray) {
      problems.push(`${name} applies to REDIS_CLUSTER_NODES or REDIS_SENTINELS; with REDIS_URL, put it in the URL (user, password, rediss://)`);
    }
  }
  if (sentinels === undefined) {
    if (e.REDIS_SENTINEL_NAME !== undefined) problems.push('REDIS_SENTINEL_NAME is set but REDIS_SENTINELS is not');
    if (sentinelPassword !== undefined) problems.push('REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS is not');
  } else if (e.REDIS_SENTINEL_NAME === undefined) {
    problems.push('REDIS_SENTINEL_NAME is required with REDIS_SENTINELS (the master group name of `sentinel monitor <name> ...`)');
  }
  if (e.REDIS_USERNAME !== undefined && password === undefined && e.REDIS_PASSWORD_FILE === undefined) {
    problems.push('REDIS_USERNAME needs REDIS_PASSWORD (or REDIS_PASSWORD_FILE)');
  }
  const security = { username: e.REDIS_USERNAME, password, tls: e.REDIS_TLS ? { ca } : undefined };
  if (cluster !== undefined) return { kind: 'cluster', nodes: cluster, ...security };
  if (sentinels !== undefined) {
    return { kind: 'sentinel', sentinels, masterName: e.REDIS_SENTINEL_NAME ?? '', sentinelPassword, ...security };
  }
  return undefined;
}
