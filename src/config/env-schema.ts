import { z } from 'zod';

/** A whole number from `min` to `max`, written in decimal. */
function wholeNumberIn(min: number, max: number) {
  return z
    .string()
    .regex(/^-?\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(min, `must be at least ${min}`)
        .max(max, `must be at most ${max}`),
    );
}

/** Integer env var with a default; blank means "use the default", anything else must be a whole number in range. */
function intVar(min: number, max: number, defaultValue: number) {
  return optionalString().pipe(wholeNumberIn(min, max).default(defaultValue));
}

/** A fraction from 0 to 1 (`0.01` = 1 %), with a default. */
function fractionVar(defaultValue: number) {
  return optionalString().pipe(
    z
      .string()
      .regex(/^(0|1|0?\.\d+|1\.0*)$/, 'must be a number from 0 to 1, such as 0.01')
      .transform(Number)
      .pipe(z.number().min(0, 'must be at least 0').max(1, 'must be at most 1'))
      .default(defaultValue),
  );
}

/** Integer env var without a default: blank means unset. */
function optionalIntVar(min: number, max: number) {
  return optionalString().pipe(wholeNumberIn(min, max).optional());
}

/**
 * Any env var starts here: trimmed, and blank means unset. Defaults are zod `.default()`s after it, so that
 * describeEnvSchema can read them back for the README's table.
 */
function optionalString() {
  return z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
}

/**
 * Comma-separated `host:port` list (an IPv6 address in brackets); blank means unset. A bad entry is named by
 * its position, never echoed (someone may have pasted a URL with a password into it).
 */
function hostPortList() {
  return optionalString().transform((v, ctx) => {
    if (v === undefined) return undefined;
    const nodes: Array<{ host: string; port: number }> = [];
    const items = v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (items.length === 0) ctx.addIssue({ code: 'custom', message: 'must list at least one host:port' });
    items.forEach((item, index) => {
      const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(item);
      const port = m === null ? 0 : Number(m[2]);
      if (m === null || port < 1 || port > 65535) {
        const which = items.length > 1 ? ` entry ${index + 1}` : '';
        ctx.addIssue({ code: 'custom', message: `${which} must be host:port with a port of 1-65535 (e.g. 10.0.0.5:6379)`.trimStart() });
        return;
      }
      nodes.push({ host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port });
    });
    return nodes;
  });
}

const CHANNEL_ID_RE = /^\d{1,20}$/;
const KEY_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
export const MIN_API_KEY_LENGTH = 16;

/**
 * Every environment variable the broker reads, with its rule, its default and its meaning. This schema is the
 * single source of truth: `Config` is inferred from it, and test/config-docs.test.ts checks the README's
 * configuration table against describeEnvSchema(), which reads it back.
 */
export const envSchema = z.object({
  REDIS_URL: optionalString()
    .pipe(
      z
        .string()
        .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
        .optional(),
    )
    .describe('`redis://` or `rediss://` URL; unset: an embedded redis-server with data under BROKER_DATA_DIR'),
  PORT: intVar(0, 65535, 8080).describe('HTTP port'),
  HOST: optionalString().pipe(z.string().default('0.0.0.0')).describe('HTTP listen address'),
  POLYV_BASE_URL: optionalString()
    .pipe(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).default('https://api.polyv.net'))
    .describe('PolyV API base URL'),
  POLYV_APP_ID: optionalString()
    .pipe(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, _ or -').optional())
    .describe('PolyV account appId of the `default` account (required unless BROKER_CONFIG_FILE declares accounts)'),
  POLYV_APP_SECRET: optionalString().describe('PolyV appSecret; or give POLYV_APP_SECRET_FILE (exactly one of them)'),
  POLYV_APP_SECRET_FILE: optionalString().describe('path of a file holding the appSecret (container secrets)'),
  POLYV_TIMEOUT_MS: intVar(100, 60_000, 5000).describe('total time allowed for one PolyV call, in ms'),
  POLYV_CONNECT_TIMEOUT_MS: intVar(50, 30_000, 2000).describe('TCP/TLS connect timeout for PolyV, in ms'),
  BROKER_API_KEYS: optionalString().describe(
    'comma-separated `name:key` pairs; consumers send `Authorization: Bearer <key>` (required, or BROKER_API_KEYS_FILE)',
  ),
  BROKER_API_KEYS_FILE: optionalString().describe(
    'path of a file holding the API keys, `name:key` pairs one per line or comma-separated; exactly one of the two',
  ),
  BROKER_CONFIG_FILE: optionalString().describe(
    'YAML (.yaml, .yml) or JSON (.json) file declaring more PolyV accounts and scoped consumers (see "Config file")',
  ),
  BROKER_CHANNELS: optionalString().describe('comma-separated channel IDs kept warm from start-up'),
  BROKER_TOKEN_EXPIRE_SECONDS: intVar(1, 3600, 3600).describe('`expireSeconds` asked of PolyV'),
  BROKER_REFRESH_BEFORE_SECONDS: intVar(1, 3599, 300).describe('refresh this long before `expireTime`'),
  BROKER_MIN_TTL_SECONDS: intVar(0, 3599, 60).describe('never serve a token with less life left'),
  BROKER_CHANNEL_BUDGET_PER_HOUR: intVar(1, 500, 450).describe(
    'most get-channel-token calls per channel in any rolling hour, all replicas together',
  ),
  BROKER_REFRESH_RESERVE_PER_HOUR: optionalIntVar(0, 499).describe(
    'part of each channel\'s get-channel-token budget only the proactive refresh (and on-call `refresh`) may spend; less than the channel budget (unset: 30, or a fifteenth of a smaller budget)',
  ),
  BROKER_CONSUMER_UPSTREAM_PER_HOUR: intVar(0, 100_000, 60).describe(
    'most PolyV calls one consumer may cause per channel and endpoint in any rolling hour, all replicas together; over it: 429 (0 = no quota)',
  ),
  BROKER_REPORT_MIN_AGE_SECONDS: intVar(0, 3600, 10).describe(
    'a report of the current token younger than this is answered with that token, without a PolyV call',
  ),
  BROKER_UPSTREAM_PAUSE_SECONDS: intVar(1, 3600, 300).describe(
    'after PolyV says `qps exceeds`, no replica calls PolyV for this long; then one probe',
  ),
  BROKER_ACCESS_LOG_HIT_SAMPLE: fractionVar(0).describe(
    'fraction of plain cached hits written to the access log (every other request always is)',
  ),
  BROKER_GLOBAL_LIMIT_PER_10S: intVar(1, 1500, 1200).describe(
    'most PolyV calls of the whole fleet in any rolling 10 s (PolyV blocks an IP above 1500)',
  ),
  BROKER_WATCH_TOKEN_BUDGET_PER_HOUR: intVar(1, 100_000, 2000).describe(
    'most get-watch-api-token calls per channel in any rolling hour (viewer tokens)',
  ),
  BROKER_COMMON_TOKEN_BUDGET_PER_HOUR: intVar(1, 100_000, 60).describe('most common/get-token calls per channel in any rolling hour'),
  BROKER_COMMON_TOKEN_TTL_SECONDS: intVar(60, 86_400, 3600).describe(
    'how long a common token is cached (PolyV does not document its lifetime)',
  ),
  BROKER_WATCH_URL_BUDGET_PER_HOUR: intVar(1, 100_000, 2000).describe(
    'most get-token-watch-url calls per channel in any rolling hour',
  ),
  BROKER_WATCH_URL_POOL: intVar(0, 1000, 0).describe(
    'single-use watch URLs kept pre-minted per warm channel (0 = mint on demand)',
  ),
  BROKER_WATCH_URL_POOL_MAX_AGE_SECONDS: intVar(60, 3000, 1800).describe(
    'a pooled watch URL older than this is dropped, never handed out (URLs live 3600 s)',
  ),
  BROKER_ROLE: optionalString()
    .pipe(z.enum(['all', 'api', 'worker'], { error: 'must be one of all, api, worker' }).default('all'))
    .describe('`all`, `api` (HTTP only) or `worker` (refresh only)'),
  BROKER_REJECTED_CHANNEL_TTL_SECONDS: intVar(1, 86_400, 300).describe(
    'how long a channel PolyV called illegal is answered from memory without asking again',
  ),
  BROKER_RECONCILE_INTERVAL_SECONDS: intVar(1, 3600, 60).describe(
    'how often the reconcile job pins BROKER_CHANNELS again, puts lost pinned channels back in the schedule and migrates key schema v1 warm channels',
  ),
  BROKER_IDLE_CHANNEL_SECONDS: intVar(0, 2_592_000, 21_600).describe(
    'a channel made warm by a read (on demand) leaves the warm set after this long with no read on any replica; 0 = never',
  ),
  BROKER_WORKER_CONCURRENCY: intVar(1, 1000, 16).describe('refresh jobs one worker runs at once'),
  BROKER_LOCAL_CACHE_MAX_AGE_MS: intVar(0, 60_000, 5000).describe(
    'longest a replica serves a channel token from process memory before reading Redis again; 0 turns the in-process cache off',
  ),
  BROKER_LOCAL_CACHE_MAX_ENTRIES: intVar(0, 1_000_000, 50_000).describe(
    'most channel tokens one replica holds in process memory (oldest evicted first); 0 turns the in-process cache off',
  ),
  BROKER_STREAM_MAX_CLIENTS: intVar(0, 1_000_000, 10_000).describe(
    'most token streams (Server-Sent Events) one replica keeps open; one more is answered 503 with Retry-After; 0 turns the streams off',
  ),
  BROKER_METRICS_CHANNEL_LABELS: intVar(0, 5000, 100).describe(
    'per-channel metric series for at most this many warm channels; 0 turns them off',
  ),
  BROKER_REDIS_PREFIX: optionalString()
    .pipe(z.string().regex(/^[a-z0-9_-]{1,32}$/, 'must be 1-32 of a-z, 0-9, _ or -').default('ptb'))
    .describe('prefix of every Redis key the broker writes'),
  BROKER_DATA_DIR: optionalString()
    .pipe(z.string().default('.data'))
    .describe('data directory of the embedded redis-server (only when REDIS_URL is unset)'),
  BROKER_SHUTDOWN_TIMEOUT_MS: intVar(100, 120_000, 10_000).describe('longest graceful shutdown before exit'),
  BROKER_DRAIN_SECONDS: intVar(0, 300, 5).describe(
    'on SIGTERM, first report not ready (/readyz 503) while still serving for this long, then shut down; 0: shut down at once',
  ),
  REDIS_TLS_CA_FILE: optionalString().describe(
    'PEM file of the CA that signed the Redis server certificate (rediss://, or REDIS_TLS=true, with a private CA); unset: the system CAs',
  ),
  REDIS_CLUSTER_NODES: hostPortList().describe(
    'comma-separated host:port seed nodes of a Redis Cluster, used instead of REDIS_URL (see "Redis Cluster and Sentinel")',
  ),
  REDIS_SENTINELS: hostPortList().describe(
    'comma-separated host:port of Redis Sentinels; the broker uses the master they name REDIS_SENTINEL_NAME, instead of REDIS_URL',
  ),
  REDIS_SENTINEL_NAME: optionalString()
    .pipe(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, _ . or -').optional())
    .describe('master group name the Sentinels monitor (`sentinel monitor <name> ...`); required with REDIS_SENTINELS'),
  REDIS_SENTINEL_PASSWORD: optionalString().describe('password of the Sentinels themselves (their requirepass), if they have one'),
  REDIS_SENTINEL_PASSWORD_FILE: optionalString().describe('path of a file holding REDIS_SENTINEL_PASSWORD; exactly one of the two'),
  REDIS_USERNAME: optionalString()
    .pipe(z.string().regex(/^[!-~]{1,128}$/, 'must be 1-128 printable characters without spaces').optional())
    .describe('ACL user on the Cluster nodes or the Sentinel-managed master (with REDIS_URL, the user goes in the URL)'),
  REDIS_PASSWORD: optionalString().describe(
    'password on the Cluster nodes or the Sentinel-managed master (with REDIS_URL, it goes in the URL); or REDIS_PASSWORD_FILE',
  ),
  REDIS_PASSWORD_FILE: optionalString().describe('path of a file holding REDIS_PASSWORD; exactly one of the two'),
  REDIS_TLS: optionalString()
    .pipe(z.enum(['true', 'false'], { error: 'must be true or false' }).default('false'))
    .transform((v) => v === 'true')
    .describe('TLS to the Cluster nodes, or to the Sentinels and the master (with REDIS_URL, use rediss://)'),
  BROKER_ENCRYPTION_KEY: optionalString().describe(
    'AES-256-GCM key (32 bytes, base64 or 64 hex digits) that encrypts tokens at rest in Redis; unset: plain text',
  ),
  BROKER_ENCRYPTION_KEY_FILE: optionalString().describe('path of a file holding BROKER_ENCRYPTION_KEY; exactly one of the two'),
  BROKER_ENCRYPTION_OLD_KEYS: optionalString().describe(
    'comma-separated earlier keys, used only to decrypt tokens written before a key rotation',
  ),
  BROKER_ENCRYPTION_OLD_KEYS_FILE: optionalString().describe(
    'path of a file holding BROKER_ENCRYPTION_OLD_KEYS (one per line or comma-separated); exactly one of the two',
  ),
  BROKER_ADMIN_PORT: optionalIntVar(0, 65535)
    .describe('port of a separate admin listener for /metrics, /healthz and /readyz; unset: /metrics on PORT'),
  BROKER_ADMIN_HOST: optionalString().describe('listen address of the admin port; unset: HOST'),
  BROKER_HEADERS_TIMEOUT_MS: intVar(100, 120_000, 10_000).describe(
    'longest a client may take to send the request line and headers; slower connections are answered 408 and closed',
  ),
  BROKER_REQUEST_TIMEOUT_MS: intVar(100, 600_000, 30_000).describe(
    'longest a client may take to send a whole request, body included (at least BROKER_HEADERS_TIMEOUT_MS)',
  ),
  BROKER_RATE_LIMIT_PER_SECOND: intVar(0, 1_000_000, 0).describe(
    'requests per second each consumer (API key) may make on /v1, per replica; 0 turns the limit off',
  ),
  BROKER_RATE_LIMIT_BURST: optionalIntVar(1, 1_000_000)
    .describe('requests a consumer may make at once after being idle; unset: BROKER_RATE_LIMIT_PER_SECOND'),
  LOG_LEVEL: optionalString()
    .pipe(
      z
        .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
          error: 'must be one of fatal, error, warn, info, debug, trace, silent',
        })
        .default('info'),
    )
    .describe('log level'),
}).superRefine(
  (env, ctx) => {
    // With BROKER_CONFIG_FILE the file may supply the accounts and consumers; config-file.ts checks that.
    if (env.POLYV_APP_ID === undefined && env.BROKER_CONFIG_FILE === undefined) {
      ctx.addIssue({ code: 'custom', path: ['POLYV_APP_ID'], message: 'is required' });
    } else if (env.POLYV_APP_ID === undefined && (env.POLYV_APP_SECRET !== undefined || env.POLYV_APP_SECRET_FILE !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['POLYV_APP_ID'], message: 'is required when POLYV_APP_SECRET or POLYV_APP_SECRET_FILE is set' });
    }
    if (env.BROKER_API_KEYS === undefined && env.BROKER_API_KEYS_FILE === undefined && env.BROKER_CONFIG_FILE === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['BROKER_API_KEYS'],
        message: 'is required (comma-separated name:key pairs), or give BROKER_API_KEYS_FILE',
      });
    }
  },
  // Report a missing key together with every other problem, not only once the rest parses.
  { when: () => true },
);

export type EnvInput = z.input<typeof envSchema>;
export type ParsedEnv = z.output<typeof envSchema>;

export { CHANNEL_ID_RE, KEY_NAME_RE };
