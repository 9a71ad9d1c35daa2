import { timingSafeEqual } from 'node:crypto';
import { computeSign } from '../polyv/sign.js';
import type { IpRateLimiter, RollingWindowCounter } from './rate-limits.js';
import type { SimAccount, SimEndpoint, SimEnvelope } from './sim-types.js';
import { randomHex, type TokenRegistry } from './token-registry.js';

export const DEFAULT_EXPIRE_SECONDS = 1800;
const MAX_EXPIRE_SECONDS = 3600;
const MAX_VIEWER_ID_CHARS = 64;
const CHANNEL_ID_PATTERN = /^\d{1,20}$/;

/** What the PolyV endpoints share: accounts, issued tokens, limits. */
export interface PolyvEndpointState {
  accounts: ReadonlyMap<string, SimAccount>;
  tokens: TokenRegistry;
  ipLimiter: IpRateLimiter;
  ipLimitPer10s: number;
  channelTokenCounter: RollingWindowCounter;
  channelTokenLimitPerHour: number;
  timestampWindowMs: number;
}

export interface PolyvRequest {
  endpoint: SimEndpoint;
  /** Query string and form body merged; includes `sign`. */
  params: Readonly<Record<string, string>>;
  ip: string;
  now: number;
  /** `http://host:port` for the watch URLs handed out. */
  watchBaseUrl: string;
}

export function errorEnvelope(code: number, message: string): SimEnvelope {
  return { code, status: code >= 500 ? 'fail' : 'error', message, data: '' };
}

function success(data: unknown): SimEnvelope {
  return { code: 200, status: 'success', message: '', data };
}

/** PolyV answers with HTTP status = code for its usual codes and HTTP 200 for the others (e.g. 15). */
export function httpStatusForCode(code: number): number {
  return [200, 400, 403, 404, 500].includes(code) ? code : 200;
}

/**
 * Answers one request to a PolyV token endpoint, with the checks in PolyV's order: IP limit, appId,
 * timestamp, empty parameters and signature, endpoint parameters, channel ownership, per-channel limit.
 */
export function answerPolyvRequest(state: PolyvEndpointState, req: PolyvRequest): SimEnvelope {
  const { params, now } = req;
  if (!state.ipLimiter.admit(req.ip, now)) return qpsExceeded(state.ipLimitPer10s);

  const appId = params['appId'];
  if (appId === undefined || appId.trim() === '') return errorEnvelope(400, 'appId is required.');
  const account = state.accounts.get(appId);
  if (account === undefined) return errorEnvelope(400, 'application not found.');

  const timestamp = params['timestamp'];
  if (timestamp === undefined || !/^\d{1,16}$/.test(timestamp) || Math.abs(now - Number(timestamp)) > state.timestampWindowMs) {
    return errorEnvelope(400, 'invalid timestamp.');
  }

  for (const [name, value] of Object.entries(params)) {
    if (name !== 'sign' && value.trim() === '') return errorEnvelope(400, `param should not be empty: ${name}`);
  }
  if (!signatureMatches(params, account.appSecret)) return errorEnvelope(403, 'invalid signature.');

  const invalid = invalidEndpointParam(req.endpoint, params);
  if (invalid !== undefined) return invalid;
  const channelId = params['channelId'] ?? '';

  const owned = account.channels === undefined ? CHANNEL_ID_PATTERN.test(channelId) : account.channels.includes(channelId);
  if (!owned) return errorEnvelope(403, `illegal channel id: ${channelId}`);

  switch (req.endpoint) {
    case 'get-channel-token': {
      if (state.channelTokenCounter.record(channelId, now) > state.channelTokenLimitPerHour) {
        return qpsExceeded(state.channelTokenLimitPerHour);
      }
      const expireSeconds = params['expireSeconds'] === undefined ? DEFAULT_EXPIRE_SECONDS : Number(params['expireSeconds']);
      const disposable = params['disposable']?.toLowerCase() === 'true';
      return success(state.tokens.issueChannelToken(account.appId, channelId, expireSeconds, disposable, now));
    }
    case 'get-watch-api-token':
      return success({ token: state.tokens.issue('watch-api', channelId, now) });
    case 'common-get-token':
      return success({ token: state.tokens.issue('common', channelId, now), mediaChannelKey: randomHex(320) });
    case 'get-token-watch-url': {
      const token = state.tokens.issue('watch-url', channelId, now);
      return success(`${req.watchBaseUrl}/watch/${channelId}?token=${token}`);
    }
  }
}

function qpsExceeded(limit: number): SimEnvelope {
  return errorEnvelope(400, `qps exceeds number of calls, limit: ${limit}`);
}

/** MD5 by default, SHA-256 with `signatureMethod=SHA256`, over every received parameter except `sign`. */
function signatureMatches(params: Readonly<Record<string, string>>, appSecret: string): boolean {
  const received = Buffer.from(params['sign'] ?? '', 'utf8');
  const expected = Buffer.from(computeSign(params, appSecret, params['signatureMethod'] === 'SHA256' ? 'sha256' : 'md5'), 'utf8');
  return received.length === expected.length && timingSafeEqual(received, expected);
}

function invalidEndpointParam(endpoint: SimEndpoint, params: Readonly<Record<string, string>>): SimEnvelope | undefined {
  const channelId = params['channelId'];
  if (channelId === undefined) return errorEnvelope(400, 'param should not be empty: channelId');
  if (!/^\d+$/.test(channelId)) return errorEnvelope(400, 'param is not digit: channelId');

  if (endpoint === 'get-watch-api-token') {
    const viewerId = params['viewerId'];
    if (viewerId === undefined) return errorEnvelope(400, 'param should not be empty: viewerId');
    if ([...viewerId].length > MAX_VIEWER_ID_CHARS) return errorEnvelope(400, 'param length is incorrect: viewerId');
  }
  if (endpoint === 'get-channel-token') {
    const expireSeconds = params['expireSeconds'];
    if (expireSeconds !== undefined) {
      const value = /^\d{1,9}$/.test(expireSeconds) ? Number(expireSeconds) : NaN;
      if (!(value > 0 && value <= MAX_EXPIRE_SECONDS)) return errorEnvelope(400, 'expireSeconds limited.');
    }
    const disposable = params['disposable']?.toLowerCase();
    if (disposable !== undefined && disposable !== 'true' && disposable !== 'false') {
      return errorEnvelope(400, 'param validate error');
    }
  }
  return undefined;
}
