import { z } from 'zod';
import { CHANNEL_ID_RE } from '../config/env-schema.js';
import { ERROR_TABLE, type ErrorCode } from '../errors/broker-error.js';

/**
 * The `/v1` API's request and response shapes as zod schemas: the routes validate requests with them, and
 * the OpenAPI description (openapi.ts) is generated from the same schemas, so the two cannot drift.
 */

const MAX_TOKEN_LENGTH = 4096;

export const channelIdParam = z.string().regex(CHANNEL_ID_RE).describe('PolyV channel ID: 1-20 digits');
export const accountParam = z.string().regex(/^[a-z0-9_-]{1,32}$/).describe('an account name of BROKER_CONFIG_FILE (`default`: POLYV_APP_ID)');
export const disposableQuery = z.enum(['true', 'false']).describe('`true`: a one-time token, never cached (a PolyV call each time)');

/** Body of the compare-and-refresh routes: the token PolyV rejected. */
export const rejectedTokenBody = z.strictObject({
  rejectedToken: z
    .string({ error: 'rejectedToken is required' })
    .min(1, 'rejectedToken must not be empty')
    .max(MAX_TOKEN_LENGTH, 'rejectedToken is too long')
    .describe('the token PolyV rejected (a report of a token that is no longer current costs nothing)'),
});

/** Epoch ms as a request field: a value under 10^12 (before 2001) is refused, it is almost surely seconds. */
const epochMsInput = (name: string) =>
  z
    .number({ error: `${name} must be a number (epoch milliseconds)` })
    .int(`${name} must be a whole number of epoch milliseconds`)
    .min(1e12, `${name} must be epoch milliseconds (this looks like seconds)`)
    .max(8.64e15, `${name} is out of range`);

/**
 * Optional body of `PUT /v1/channels/{channelId}`: a warm window. Without one (or an empty body) the channel
 * is pinned: warm until DELETE.
 */
export const warmWindowBody = z
  .strictObject({
    warmFrom: epochMsInput('warmFrom')
      .optional()
      .describe('epoch ms: the first token is fetched shortly before (BROKER_REFRESH_BEFORE_SECONDS), so the first read is a hit'),
    warmUntil: epochMsInput('warmUntil').optional().describe('epoch ms: refreshed until then, then the channel leaves the warm set'),
  })
  .refine((w) => w.warmFrom === undefined || w.warmUntil === undefined || w.warmUntil > w.warmFrom, {
    message: 'warmUntil must be after warmFrom',
  });

const optionalText = (max: number) =>
  z
    .string({ error: `must be a string of at most ${max} characters` })
    .max(max, `must be at most ${max} characters`)
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

/** Body of POST .../watch-tokens: what PolyV's get-watch-api-token accepts, with sane limits. */
export const viewerProfileBody = z.strictObject(
  {
    viewerId: z
      .string({ error: 'viewerId is required (1-64 characters)' })
      .min(1, 'viewerId must be 1-64 characters')
      .max(64, 'viewerId must be 1-64 characters')
      .refine((v) => v.trim() !== '', 'viewerId must not be blank'),
    nickname: optionalText(64),
    avatar: optionalText(1024).refine((v) => v === undefined || /^https?:\/\/\S+$/.test(v), 'avatar must be an http(s) URL'),
    openid: optionalText(128),
    actor: optionalText(64),
  },
  { error: 'unknown field: the body takes viewerId, nickname, avatar, openid and actor' },
);

const epochMs = z.number().int().describe('epoch milliseconds');

export const channelTokenResponse = z.strictObject({
  channelId: z.string(),
  channelToken: z.string().describe('the token; it has at least BROKER_MIN_TTL_SECONDS left'),
  expireTime: epochMs.describe('when PolyV rejects it, epoch ms'),
});

export const disposableTokenResponse = channelTokenResponse.extend({ disposable: z.literal(true) });

const failureRecord = z.object({
  code: z.string(),
  message: z.string(),
  at: epochMs,
  retryAfterMs: z.number().optional(),
});

export const channelStateResponse = z.strictObject({
  channelId: z.string(),
  warm: z
    .union([z.literal('pinned'), z.literal('on-demand'), z.literal(false)])
    .describe('`pinned`: kept until DELETE (or inside its warm window); `on-demand`: kept while read (BROKER_IDLE_CHANNEL_SECONDS); false: not warm'),
  warmFrom: epochMs.nullable().describe('start of the warm window, if the channel has one'),
  warmUntil: epochMs.nullable().describe('end of the warm window, if the channel has one'),
  lastReadAt: epochMs.nullable().describe('last read on any replica, as recorded (replicas write reads every few seconds)'),
  expireTime: epochMs.nullable(),
  remainingSeconds: z.number().int().nullable(),
  lastRefreshAt: epochMs.nullable(),
  nextRefreshAt: epochMs.nullable(),
  callsLastHour: z.number().int(),
  budgetPerHour: z.number().int(),
  lastError: failureRecord.nullable(),
});

export const channelListResponse = z.strictObject({ account: z.string(), channels: z.array(channelStateResponse) });

export const viewerTokenResponse = z.strictObject({ token: z.string(), expireTime: epochMs });

export const commonTokenResponse = z.strictObject({
  token: z.string(),
  mediaChannelKey: z.string(),
  expireTime: epochMs.describe("the broker's own expiry: PolyV documents none (fetch time + BROKER_COMMON_TOKEN_TTL_SECONDS)"),
});

export const watchUrlResponse = z.strictObject({
  url: z.string().describe('a single-use watch-page URL: dead once opened'),
  expireTime: epochMs,
});

export const errorResponse = z.strictObject({
  error: z.strictObject({
    code: z.enum(Object.keys(ERROR_TABLE) as [ErrorCode, ...ErrorCode[]]),
    message: z.string().describe('a sentence for a person; never a secret'),
  }),
});

/** `data` of a token stream's `forgotten` event: the channel's token was forgotten (`DELETE`). */
export const streamForgottenEvent = z.strictObject({ channelId: z.string() });

/** `data` of a multiplexed token stream's `unavailable` event: this channel has no token to give now. */
export const streamUnavailableEvent = z.strictObject({ channelId: z.string(), error: errorResponse.shape.error });
