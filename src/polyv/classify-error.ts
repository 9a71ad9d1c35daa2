import { UpstreamError } from '../errors/broker-error.js';

/**
 * Turns a PolyV error envelope into a typed error, as ../shared/polyv-api/ERRORS-AND-LIMITS.md says: by the
 * body's code and message, never by the HTTP status alone.
 */
export function classifyEnvelopeError(code: number, rawMessage: string | null | undefined): UpstreamError {
  const message = (rawMessage ?? '').trim();
  const detail = message === '' ? `code ${code}` : `${message} (code ${code})`;
  const opts = { upstreamCode: code };

  if (message.startsWith('qps exceeds')) {
    return new UpstreamError('upstream_rate_limited', `PolyV rate limit: ${detail}`, { ...opts, retryAfterMs: 10_000 });
  }
  if (message === 'invalid timestamp.') {
    return new UpstreamError('upstream_clock_skew', `PolyV rejected the timestamp (clock skew?): ${detail}`, opts);
  }
  if (message === 'invalid signature.' || message === 'application not found.' || message === 'appId is required.') {
    return new UpstreamError(
      'upstream_auth_failed',
      `PolyV rejected the broker's credentials: ${detail}; check POLYV_APP_ID and the appSecret`,
      opts,
    );
  }
  if (message.startsWith('illegal channel id')) {
    return new UpstreamError('channel_not_in_account', `PolyV says the channel does not belong to this account: ${detail}`, opts);
  }
  if (code >= 500 || code === 0) {
    return new UpstreamError('upstream_unavailable', `PolyV failed: ${detail}`, opts);
  }
  if (code >= 400 && code < 500) {
    return new UpstreamError('upstream_bad_request', `PolyV refused the request: ${detail}`, opts);
  }
  return new UpstreamError('upstream_bad_response', `PolyV answered with an unexpected code: ${detail}`, opts);
}
