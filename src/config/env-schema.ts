import { z } from 'zod';

/** Integer env var with a default; blank means "use the default", anything else must be a whole number in range. */
function intVar(min: number, max: number, defaultValue: number) {
  return z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? String(defaultValue) : v.trim()))
    .pipe(
      z
        .string()
        .regex(/^-?\d+$/, 'must be a whole number')
        .transform(Number)
        .pipe(
          z
            .number()
            .int()
            .min(min, `must be at least ${min}`)
            .max(max, `must be at most ${max}`),
        ),
    );
}

function optionalString() {
  return z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
}

const CHANNEL_ID_RE = /^\d{1,20}$/;
const KEY_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
export const MIN_API_KEY_LENGTH = 16;

/**
 * Every environment variable the broker reads, with its rule and its meaning. This schema is the single
 * source of truth: the README's configuration table is written from these descriptions.
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
  HOST: optionalString().transform((v) => v ?? '0.0.0.0').describe('HTTP listen address (default 0.0.0.0)'),
  POLYV_BASE_URL: optionalString()
    .transform((v) => v ?? 'https://api.polyv.net')
    .pipe(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }))
    .describe('PolyV API base URL (default https://api.polyv.net)'),
  POLYV_APP_ID: optionalString()
    .pipe(z.string({ error: 'is required' }).regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, _ or -'))
    .describe('PolyV account appId (required)'),
  POLYV_APP_SECRET: optionalString().describe('PolyV appSecret; or give POLYV_APP_SECRET_FILE (exactly one of them)'),
  POLYV_APP_SECRET_FILE: optionalString().describe('path of a file holding the appSecret (container secrets)'),
  POLYV_TIMEOUT_MS: intVar(100, 60_000, 5000).describe('total time allowed for one PolyV call, in ms'),
  POLYV_CONNECT_TIMEOUT_MS: intVar(50, 30_000, 2000).describe('TCP/TLS connect timeout for PolyV, in ms'),
  BROKER_API_KEYS: optionalString()
    .pipe(z.string({ error: 'is required (comma-separated name:key pairs)' }))
    .describe('comma-separated `name:key` pairs; consumers send `Authorization: Bearer <key>` (required)'),
  BROKER_CHANNELS: optionalString().describe('comma-separated channel IDs kept warm from start-up (default none)'),
  BROKER_TOKEN_EXPIRE_SECONDS: intVar(1, 3600, 3600).describe('`expireSeconds` asked of PolyV (1..3600)'),
  BROKER_REFRESH_BEFORE_SECONDS: intVar(1, 3599, 300).describe('refresh this long before `expireTime`'),
  BROKER_MIN_TTL_SECONDS: intVar(0, 3599, 60).describe('never serve a token with less life left'),
  BROKER_CHANNEL_BUDGET_PER_HOUR: intVar(1, 500, 450).describe(
    'most get-channel-token calls per channel in any rolling hour, all replicas together',
  ),
  BROKER_GLOBAL_LIMIT_PER_10S: intVar(1, 1500, 1200).describe(
    'most PolyV calls of the whole fleet in any rolling 10 s (PolyV blocks an IP above 1500)',
  ),
  BROKER_ROLE: optionalString()
    .transform((v) => v ?? 'all')
    .pipe(z.enum(['all', 'api', 'worker'], { error: 'must be one of all, api, worker' }))
    .describe('`all`, `api` (HTTP only) or `worker` (refresh only)'),
  BROKER_REJECTED_CHANNEL_TTL_SECONDS: intVar(1, 86_400, 300).describe(
    'how long a channel PolyV called illegal is answered from memory without asking again',
  ),
  BROKER_RECONCILE_INTERVAL_SECONDS: intVar(1, 3600, 60).describe(
    'how often the reconcile job re-creates missing refresh jobs and re-seeds BROKER_CHANNELS',
  ),
  BROKER_WORKER_CONCURRENCY: intVar(1, 1000, 16).describe('refresh jobs one worker runs at once'),
  BROKER_METRICS_CHANNEL_LABELS: intVar(0, 5000, 100).describe(
    'per-channel metric series for at most this many warm channels; 0 turns them off',
  ),
  BROKER_REDIS_PREFIX: optionalString()
    .transform((v) => v ?? 'ptb')
    .pipe(z.string().regex(/^[a-z0-9_-]{1,32}$/, 'must be 1-32 of a-z, 0-9, _ or -'))
    .describe('prefix of every Redis key the broker writes'),
  BROKER_DATA_DIR: optionalString()
    .transform((v) => v ?? '.data')
    .describe('data directory of the embedded redis-server (only when REDIS_URL is unset)'),
  BROKER_SHUTDOWN_TIMEOUT_MS: intVar(100, 120_000, 10_000).describe('longest graceful shutdown before exit'),
  LOG_LEVEL: optionalString()
    .transform((v) => v ?? 'info')
    .pipe(
      z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
        error: 'must be one of fatal, error, warn, info, debug, trace, silent',
      }),
    )
    .describe('log level'),
});

export type EnvInput = z.input<typeof envSchema>;
export type ParsedEnv = z.output<typeof envSchema>;

export { CHANNEL_ID_RE, KEY_NAME_RE };
