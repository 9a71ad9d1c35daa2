/**
 * The closed set of error codes the broker speaks. Each maps to exactly one HTTP status; the same code is
 * used in logs, metrics (`error_class`) and JSON bodies, so an on-call engineer can grep one word.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  invalid_channel_id: 400,
  invalid_json: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  channel_not_in_account: 404,
  request_timeout: 408,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  headers_too_large: 431,
  internal_error: 500,
  budget_exhausted: 503,
  upstream_unavailable: 503,
  upstream_rate_limited: 503,
  upstream_clock_skew: 503,
  upstream_auth_failed: 503,
  upstream_bad_request: 503,
  upstream_bad_response: 503,
  not_ready: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface BrokerErrorOptions {
  /** Whether trying the same thing again later may succeed (decides retry vs. give up). */
  retryable?: boolean;
  /** For 429/503: when a retry makes sense, in milliseconds from now. */
  retryAfterMs?: number;
  cause?: unknown;
}

/** Base of every error the broker raises on purpose. `message` is safe to show a consumer: never a secret. */
export class BrokerError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: BrokerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

/** Bad input from a consumer: 4xx, never retried, never reaches PolyV. */
export class RequestError extends BrokerError {}

/** A problem with PolyV (network, HTTP, or an error envelope); `retryable` follows ERRORS-AND-LIMITS.md. */
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
    super('budget_exhausted', message, { retryable: true, retryAfterMs });
    this.scope = scope;
  }
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
