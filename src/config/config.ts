import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../errors/broker-error.js';
import { CHANNEL_ID_RE, KEY_NAME_RE, MIN_API_KEY_LENGTH, envSchema, type ParsedEnv } from './env-schema.js';
import { readSecret, type ReadFile } from './read-secret.js';
import { resolveSecuritySettings, type SecuritySettings } from './security-settings.js';
import { resolveAccountsAndConsumers, type AccountsAndConsumers, type ApiKey } from './config-file.js';

export type { ApiKey, ConsumerScope, PolyvAccount, RateLimit } from './config-file.js';
export type { RedisDeployment } from './redis-deployment.js';

/**
 * Step two of parsing, after envSchema: the variables in the shape the broker reads them. A zod transform, so
 * the env part of `Config` is its inferred output and each variable's type is declared once, in envSchema.
 */
const envSettingsSchema = z.transform(
  (e: ParsedEnv) =>
    ({
      redisUrl: e.REDIS_URL,
      /** The main listener; the timeouts apply to the admin listener too (slow clients, see create-http-server.ts). */
      http: {
        port: e.PORT,
        host: e.HOST,
        headersTimeoutMs: e.BROKER_HEADERS_TIMEOUT_MS,
        requestTimeoutMs: e.BROKER_REQUEST_TIMEOUT_MS,
      },
      /** Default per-consumer request limit on /v1, per replica; `perSecond` 0: off. */
      rateLimit: {
        perSecond: e.BROKER_RATE_LIMIT_PER_SECOND,
        burst: e.BROKER_RATE_LIMIT_BURST ?? Math.max(1, e.BROKER_RATE_LIMIT_PER_SECOND),
      },
      polyv: {
        baseUrl: e.POLYV_BASE_URL.replace(/\/+$/, ''),
        timeoutMs: e.POLYV_TIMEOUT_MS,
        connectTimeoutMs: e.POLYV_CONNECT_TIMEOUT_MS,
      },
      tokens: {
        expireSeconds: e.BROKER_TOKEN_EXPIRE_SECONDS,
        refreshBeforeSeconds: e.BROKER_REFRESH_BEFORE_SECONDS,
        minTtlSeconds: e.BROKER_MIN_TTL_SECONDS,
        rejectedChannelTtlSeconds: e.BROKER_REJECTED_CHANNEL_TTL_SECONDS,
        reportMinAgeSeconds: e.BROKER_REPORT_MIN_AGE_SECONDS,
        /** An on-demand warm channel unread this long leaves the warm set; 0: never. */
        idleChannelSeconds: e.BROKER_IDLE_CHANNEL_SECONDS,
      },
      budget: {
        channelPerHour: e.BROKER_CHANNEL_BUDGET_PER_HOUR,
        globalPer10s: e.BROKER_GLOBAL_LIMIT_PER_10S,
        /** Of channelPerHour, what only the proactive refresh and on-call may spend; unset: see defaultRefreshReserve. */
        refreshReservePerHour: e.BROKER_REFRESH_RESERVE_PER_HOUR,
        /** PolyV calls one consumer may cause per channel and endpoint and rolling hour; 0: no quota. */
        consumerUpstreamPerHour: e.BROKER_CONSUMER_UPSTREAM_PER_HOUR,
        /** How long the fleet stops calling PolyV after `qps exceeds`. */
        upstreamPauseSeconds: e.BROKER_UPSTREAM_PAUSE_SECONDS,
      },
      kinds: {
        watchTokenPerHour: e.BROKER_WATCH_TOKEN_BUDGET_PER_HOUR,
        commonTokenPerHour: e.BROKER_COMMON_TOKEN_BUDGET_PER_HOUR,
        commonTokenTtlSeconds: e.BROKER_COMMON_TOKEN_TTL_SECONDS,
        watchUrlPerHour: e.BROKER_WATCH_URL_BUDGET_PER_HOUR,
        watchUrlPool: e.BROKER_WATCH_URL_POOL,
        watchUrlPoolMaxAgeSeconds: e.BROKER_WATCH_URL_POOL_MAX_AGE_SECONDS,
      },
      role: e.BROKER_ROLE,
      worker: { concurrency: e.BROKER_WORKER_CONCURRENCY, reconcileIntervalSeconds: e.BROKER_RECONCILE_INTERVAL_SECONDS },
      metrics: { maxLabeledChannels: e.BROKER_METRICS_CHANNEL_LABELS },
      /** The in-process token cache in front of Redis (see LocalTokenCache); 0 in either turns it off. */
      localCache: { maxAgeMs: e.BROKER_LOCAL_CACHE_MAX_AGE_MS, maxEntries: e.BROKER_LOCAL_CACHE_MAX_ENTRIES },
      /** Token streams (Server-Sent Events) of a serving replica; `maxClients` 0: off. */
      stream: { maxClients: e.BROKER_STREAM_MAX_CLIENTS },
      redisPrefix: e.BROKER_REDIS_PREFIX,
      dataDir: e.BROKER_DATA_DIR,
      shutdownTimeoutMs: e.BROKER_SHUTDOWN_TIMEOUT_MS,
      /** How long SIGTERM keeps serving while /readyz answers 503, before the shutdown starts; 0: none. */
      drainSeconds: e.BROKER_DRAIN_SECONDS,
      logLevel: e.LOG_LEVEL,
      /** Share of plain cached hits written to the access log (every other request is). */
      accessLogHitSample: e.BROKER_ACCESS_LOG_HIT_SAMPLE,
    }) as const,
);

/**
 * The broker's whole configuration, validated once at start-up: the env settings, then what secrets and files
 * resolve (Redis TLS and deployment, encryption keys, admin listener, accounts and consumers).
 */
export type Config = z.output<typeof envSettingsSchema> & Omit<SecuritySettings, 'apiKeys'> & AccountsAndConsumers;

export type BrokerRole = Config['role'];
export type LogLevel = Config['logLevel'];

export interface LoadConfigOptions {
  /** Reads secret files; injectable for tests. */
  readFile?: ReadFile;
}

function splitList(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * Parses and validates the environment. Every problem is collected and reported at once, each naming its
 * variable; nothing is read from `process.env` anywhere else.
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>, options: LoadConfigOptions = {}): Config {
  const readFile: ReadFile = options.readFile ?? ((p) => readFileSync(p, 'utf8'));
  const parsed = envSchema.safeParse(env);
  const problems: string[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment');
      problems.push(`${name} ${issue.message}`);
    }
    throw new ConfigError(problems);
  }
  const e = parsed.data;

  // With BROKER_CONFIG_FILE, POLYV_APP_ID and BROKER_API_KEYS may be left out (the file's accounts/consumers).
  const appSecretSource = { name: 'POLYV_APP_SECRET', value: e.POLYV_APP_SECRET, file: e.POLYV_APP_SECRET_FILE, required: true };
  const appSecret = e.POLYV_APP_ID === undefined ? undefined : readSecret(appSecretSource, readFile, problems);
  const { apiKeys: envApiKeysText, ...security } = resolveSecuritySettings(e, readFile, problems);
  const envKeysGiven = e.BROKER_API_KEYS !== undefined || e.BROKER_API_KEYS_FILE !== undefined || e.BROKER_CONFIG_FILE === undefined;
  const envApiKeys = envKeysGiven ? parseApiKeys(envApiKeysText, problems) : [];
  const channels = splitList(e.BROKER_CHANNELS);
  for (const ch of channels) {
    if (!CHANNEL_ID_RE.test(ch)) problems.push(`BROKER_CHANNELS entry "${ch}" must be a channel ID of 1-20 digits`);
  }
  const { accounts, apiKeys } = resolveAccountsAndConsumers({
    configFile: e.BROKER_CONFIG_FILE,
    env,
    readFile,
    problems,
    envAccount:
      e.POLYV_APP_ID === undefined ? undefined : { name: 'default', appId: e.POLYV_APP_ID, appSecret: appSecret ?? '', channels: [] },
    envChannels: [...new Set(channels)],
    envApiKeys,
  });
  const maxRefreshBefore = e.BROKER_TOKEN_EXPIRE_SECONDS - e.BROKER_MIN_TTL_SECONDS;
  if (e.BROKER_REFRESH_BEFORE_SECONDS >= maxRefreshBefore) {
    problems.push(
      `BROKER_REFRESH_BEFORE_SECONDS must be less than BROKER_TOKEN_EXPIRE_SECONDS - BROKER_MIN_TTL_SECONDS ` +
        `(${e.BROKER_TOKEN_EXPIRE_SECONDS} - ${e.BROKER_MIN_TTL_SECONDS} = ${maxRefreshBefore}), got ${e.BROKER_REFRESH_BEFORE_SECONDS}`,
    );
  }
  if (e.BROKER_COMMON_TOKEN_TTL_SECONDS <= e.BROKER_MIN_TTL_SECONDS) {
    problems.push(
      `BROKER_COMMON_TOKEN_TTL_SECONDS must be greater than BROKER_MIN_TTL_SECONDS (${e.BROKER_MIN_TTL_SECONDS}), got ${e.BROKER_COMMON_TOKEN_TTL_SECONDS}`,
    );
  }
  if (e.BROKER_HEADERS_TIMEOUT_MS > e.BROKER_REQUEST_TIMEOUT_MS) {
    problems.push(
      `BROKER_HEADERS_TIMEOUT_MS must be at most BROKER_REQUEST_TIMEOUT_MS (${e.BROKER_REQUEST_TIMEOUT_MS}), got ${e.BROKER_HEADERS_TIMEOUT_MS}`,
    );
  }
  if (e.BROKER_RATE_LIMIT_BURST !== undefined && e.BROKER_RATE_LIMIT_PER_SECOND === 0) {
    problems.push('BROKER_RATE_LIMIT_BURST needs BROKER_RATE_LIMIT_PER_SECOND (at least 1): without it there is no limit');
  }
  if (e.BROKER_REFRESH_RESERVE_PER_HOUR !== undefined && e.BROKER_REFRESH_RESERVE_PER_HOUR >= e.BROKER_CHANNEL_BUDGET_PER_HOUR) {
    problems.push(
      `BROKER_REFRESH_RESERVE_PER_HOUR must be less than BROKER_CHANNEL_BUDGET_PER_HOUR (${e.BROKER_CHANNEL_BUDGET_PER_HOUR}), got ${e.BROKER_REFRESH_RESERVE_PER_HOUR}`,
    );
  }
  for (const account of accounts) {
    const budget = account.budgets?.channelTokenPerHour ?? e.BROKER_CHANNEL_BUDGET_PER_HOUR;
    const reserve = account.budgets?.refreshReservePerHour ?? e.BROKER_REFRESH_RESERVE_PER_HOUR;
    if (account.budgets !== undefined && reserve !== undefined && reserve >= budget) {
      problems.push(
        `${e.BROKER_CONFIG_FILE ?? 'BROKER_CONFIG_FILE'}: account "${account.name}": budgets.refreshReservePerHour (${reserve}) must be less than budgets.channelTokenPerHour (${budget})`,
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return { ...envSettingsSchema.parse(e), ...security, accounts, apiKeys };
}

function parseApiKeys(value: string, problems: string[]): ApiKey[] {
  const keys: ApiKey[] = [];
  const names = new Set<string>();
  splitList(value).forEach((pair, index) => {
    const at = pair.indexOf(':');
    const name = at < 0 ? '' : pair.slice(0, at).trim();
    const key = at < 0 ? '' : pair.slice(at + 1).trim();
    if (!KEY_NAME_RE.test(name)) {
      problems.push(`BROKER_API_KEYS entry ${index + 1} must be name:key with a name of 1-64 letters, digits, _ . or -`);
      return;
    }
    if (key.length < MIN_API_KEY_LENGTH) {
      problems.push(`BROKER_API_KEYS key "${name}" must be at least ${MIN_API_KEY_LENGTH} characters long`);
      return;
    }
    if (names.has(name)) problems.push(`BROKER_API_KEYS names must be unique: "${name}" appears twice`);
    names.add(name);
    keys.push({ name, key });
  });
  if (keys.length === 0 && problems.every((p) => !p.startsWith('BROKER_API_KEYS'))) {
    problems.push('BROKER_API_KEYS must contain at least one name:key pair');
  }
  return keys;
}
