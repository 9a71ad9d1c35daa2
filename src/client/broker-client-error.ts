/** Codes the client raises itself; every other `code` is the broker's own (README, "Errors"). */
export const CLIENT_ERROR_CODES = {
  /** The channel ID is not 1-20 digits; no request was made. */
  invalidChannelId: 'invalid_channel_id',
  /** An argument is missing or malformed; no request was made. */
  invalidRequest: 'invalid_request',
  /** The broker could not be reached, or the connection broke. */
  networkError: 'network_error',
  /** The broker did not answer within `timeoutMs`. */
  timeout: 'timeout',
  /** The broker answered something that is not its documented JSON. */
  badResponse: 'bad_response',
  /** `close()` was called. */
  clientClosed: 'client_closed',
} as const;

export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[keyof typeof CLIENT_ERROR_CODES];

/** The broker's codes as of API v1; new ones may appear, so `code` stays open to any string. */
export type BrokerErrorCode =
  | 'invalid_channel_id'
  | 'invalid_json'
  | 'invalid_request'
  | 'unauthorized'
  | 'not_found'
  | 'channel_not_in_account'
  | 'payload_too_large'
  | 'request_timeout'
  | 'rate_limited'
  | 'headers_too_large'
  | 'budget_exhausted'
  | 'upstream_unavailable'
  | 'upstream_rate_limited'
  | 'upstream_clock_skew'
  | 'upstream_auth_failed'
  | 'upstream_bad_request'
  | 'upstream_bad_response'
  | 'too_many_streams'
  | 'not_ready'
  | 'internal_error';

export interface BrokerClientErrorOptions {
  /** HTTP status of the broker's answer; undefined when there was none. */
  status?: number | undefined;
  code: ClientErrorCode | BrokerErrorCode | (string & {});
  /** From the broker's Retry-After header, in ms from when the answer arrived. */
  retryAfterMs?: number | undefined;
  channelId?: string | undefined;
  cause?: unknown;
}

/**
 * Every failure of a BrokerClient call. `message` never holds the API key or a token, so it is safe to log.
 */
export class BrokerClientError extends Error {
  /** HTTP status of the broker's answer; undefined for errors raised before or instead of one. */
  readonly status: number | undefined;
  /** The broker's error code (`unauthorized`, `budget_exhausted`, ...) or one of CLIENT_ERROR_CODES. */
  readonly code: ClientErrorCode | BrokerErrorCode | (string & {});
  /** When the broker said to try again (Retry-After), in milliseconds; undefined if it did not say. */
  readonly retryAfterMs: number | undefined;
  readonly channelId: string | undefined;

  constructor(message: string, options: BrokerClientErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BrokerClientError';
    this.status = options.status;
    this.code = options.code;
    this.retryAfterMs = options.retryAfterMs;
    this.channelId = options.channelId;
  }

  /** Whether the same call may succeed later: network errors, timeouts, 429 and 5xx answers. */
  get retryable(): boolean {
    if (this.code === CLIENT_ERROR_CODES.networkError || this.code === CLIENT_ERROR_CODES.timeout) return true;
    return this.status !== undefined && (this.status === 429 || this.status >= 500);
  }
}
