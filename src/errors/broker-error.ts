/**
 * The closed set of error codes the broker speaks, and what each one means in one table: its HTTP status,
 * whether trying again later may succeed, how loudly it is logged, and (`shared: false`) whether a replica's
 * failure record of it answers the replicas that waited for that fetch. The same code is used in logs,
 * metrics (`error_class`), JSON bodies and the failure records replicas leave in Redis for each other, so a
 * failure rebuilt from its record is the same failure (see errorFromRecord).
 */
export const ERROR_TABLE = {
  invalid_request: { status: 400, retryable: false, logLevel: 'info' },
  invalid_channel_id: { status: 400, retryable: false, logLevel: 'info' },
  invalid_json: { status: 400, retryable: false, logLevel: 'info' },
  unauthorized: { status: 401, retryable: false, logLevel: 'info' },
  forbidden: { status: 403, retryable: false, logLevel: 'info' },
  not_found: { status: 404, retryable: false, logLevel: 'info' },
  channel_not_in_account: { status: 404, retryable: false, logLevel: 'warn' },
  request_timeout: { status: 408, retryable: true, logLevel: 'info' },
  payload_too_large: { status: 413, retryable: false, logLevel: 'info' },
  unsupported_media_type: { status: 415, retryable: false, logLevel: 'info' },
  rate_limited: { status: 429, retryable: true, logLevel: 'info' },
  /** The consumer has caused its quota of PolyV calls for the channel and endpoint in the rolling hour. */
  upstream_quota_exceeded: { status: 429, retryable: true, logLevel: 'info', shared: false },
  headers_too_large: { status: 431, retryable: false, logLevel: 'info' },
  internal_error: { status: 500, retryable: true, logLevel: 'error' },
  /** Whose budget share is spent depends on who asks (the refresh may spend the reserve): not shared. */
  budget_exhausted: { status: 503, retryable: true, logLevel: 'warn', shared: false },
  upstream_unavailable: { status: 503, retryable: true, logLevel: 'warn' },
  upstream_rate_limited: { status: 503, retryable: true, logLevel: 'warn' },
  upstream_clock_skew: { status: 503, retryable: true, logLevel: 'warn' },
  /** A fact about the account (bad signature, unknown appId): retried only every few minutes. */
  upstream_auth_failed: { status: 503, retryable: false, logLevel: 'error' },
  upstream_bad_request: { status: 503, retryable: false, logLevel: 'error' },
  upstream_bad_response: { status: 503, retryable: true, logLevel: 'warn' },
  not_ready: { status: 503, retryable: true, logLevel: 'warn' },
  /** The replica holds BROKER_STREAM_MAX_CLIENTS open token streams: try again later, or another replica. */
  too_many_streams: { status: 503, retryable: true, logLevel: 'info' },
} as const satisfies Record<string, { status: number; retryable: boolean; logLevel: 'info' | 'warn' | 'error'; shared?: false }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

/** HTTP status per code (a view of ERROR_TABLE). */
export const ERROR_STATUS: { readonly [C in ErrorCode]: (typeof ERROR_TABLE)[C]['status'] } = Object.fromEntries(
  Object.entries(ERROR_TABLE).map(([code, row]) => [code, row.status]),
) as { readonly [C in ErrorCode]: (typeof ERROR_TABLE)[C]['status'] };

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_TABLE, code);
}

/**
 * Whether a recorded failure answers the callers that waited on the fetch too. Not so for a refusal that
 * depends on who asked (a consumer's quota, a budget share): a waiter then tries for itself.
 */
export function isSharedFailure(code: string): boolean {
  if (!isErrorCode(code)) return true;
  const row = ERROR_TABLE[code];
  return !('shared' in row) || row.shared !== false;
}

export interface BrokerErrorOptions {
  /** For 429/503: when a retry makes sense, in milliseconds from now. */
  retryAfterMs?: number | undefined;
  cause?: unknown;
}

/**
 * Base of every error the broker raises on purpose. `message` is safe to show a consumer: never a secret.
 * Whether it is worth retrying is a property of its code (ERROR_TABLE), never of the instance, so it survives
 * the trip through Redis to another replica.
 */
export class BrokerError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: BrokerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryAfterMs = options.retryAfterMs;
  }

  get status(): number {
    return ERROR_TABLE[this.code].status;
  }

  /** Whether trying the same thing again later may succeed (decides retry vs. give up). */
  get retryable(): boolean {
    return ERROR_TABLE[this.code].retryable;
  }

  get logLevel(): 'info' | 'warn' | 'error' {
    return ERROR_TABLE[this.code].logLevel;
  }
}

/** Bad input from a consumer: 4xx, never retried, never reaches PolyV. */
export class RequestError extends BrokerError {}

/** A problem with PolyV (network, HTTP, or an error envelope), classified as ERRORS-AND-LIMITS.md says. */
export class UpstreamError extends BrokerError {
  /** PolyV's own `code` from the envelope, or the HTTP status when no envelope could be read. */
  readonly upstreamCode: number | undefined;
  constructor(code: ErrorCode, message: string, options: BrokerErrorOptions & { upstreamCode?: number } = {}) {
    super(code, message, options);
    this.upstreamCode = options.upstreamCode;
  }
}

/** The per-channel or global call budget has no slot left; `retryAfterMs` says when one frees. */
export class BudgetExhaustedError extends BrokerError {
  /** `channel`: the channel's hourly budget; `global`: the fleet-wide 10-s limiter. */
  readonly scope: 'channel' | 'global';
  constructor(scope: 'channel' | 'global', message: string, retryAfterMs: number) {
    super('budget_exhausted', message, { retryAfterMs });
    this.scope = scope;
  }
}

/** Redis cannot be reached (connection down, command timed out, cluster not ready); raised by the store layer. */
export class RedisUnavailableError extends BrokerError {
  constructor(cause: unknown) {
    super('not_ready', 'Redis is unreachable; try again shortly', { retryAfterMs: 1000, cause });
  }
}

/** A failure as one replica records it in Redis for the others (and for on-call). */
export interface FailureRecord {
  readonly code: string;
  readonly message: string;
  /** Epoch ms of the failure. */
  readonly at: number;
  readonly retryAfterMs?: number | undefined;
}

/** The record of a failure; an error the broker did not raise on purpose is recorded without its message. */
export function failureRecord(err: unknown, at: number): FailureRecord {
  if (err instanceof BrokerError) return { code: err.code, message: err.message, at, retryAfterMs: err.retryAfterMs };
  return { code: 'internal_error', message: 'internal error', at };
}

/** Rebuilds a recorded failure: the same code, hence the same status and retryability as where it happened. */
export function errorFromRecord(record: FailureRecord): BrokerError {
  const code: ErrorCode = isErrorCode(record.code) ? record.code : 'upstream_unavailable';
  return new BrokerError(code, record.message, { retryAfterMs: record.retryAfterMs ?? 1000 });
}

/** A setting that breaks its rule; raised only at start-up. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
