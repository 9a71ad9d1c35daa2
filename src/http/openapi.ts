import { z } from 'zod';
import {
  accountParam,
  channelIdParam,
  channelListResponse,
  channelStateResponse,
  channelTokenResponse,
  commonTokenResponse,
  disposableQuery,
  disposableTokenResponse,
  errorResponse,
  rejectedTokenBody,
  warmWindowBody,
  streamForgottenEvent,
  streamUnavailableEvent,
  viewerProfileBody,
  viewerTokenResponse,
  watchUrlResponse,
} from './api-schemas.js';

/** The version of the `/v1` API this document describes. */
export const API_VERSION = '1.1.0';

/** A JSON Schema (2020-12, as OpenAPI 3.1 uses it) of a zod schema, as a request (`input`) or a response. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schemaName: string, description: string) => ({ description, content: { 'application/json': { schema: ref(schemaName) } } });
const error = (description: string) => json('Error', description);

/** Errors every authenticated `/v1` route may answer. */
const COMMON_ERRORS = {
  '401': error('no or unknown API key (`unauthorized`; with `WWW-Authenticate`)'),
  '403': error("the key's scope does not cover this account, channel or kind (`forbidden`)"),
  '404': error('unknown account or route (`not_found`), or a channel PolyV calls illegal (`channel_not_in_account`)'),
  '429': error('over the rate limit (`rate_limited`) or the consumer\'s quota of PolyV calls (`upstream_quota_exceeded`); with `Retry-After`'),
  '500': error('a bug (`internal_error`)'),
  '503': error('no valid token and none can be had now (budget, PolyV, Redis); with `Retry-After`'),
};
const BAD_INPUT = {
  '400': error('bad channel ID, query or body (`invalid_channel_id`, `invalid_request`, `invalid_json`)'),
  '408': error('the request took longer than BROKER_HEADERS_TIMEOUT_MS / BROKER_REQUEST_TIMEOUT_MS (`request_timeout`)'),
  '413': error('a body over 16 KiB (`payload_too_large`)'),
  '415': error('a body in another charset than UTF-8, an unknown Content-Encoding, or a warm window not sent as JSON (`unsupported_media_type`)'),
  '431': error('request line and headers over 16 KiB (`headers_too_large`)'),
};

interface Operation {
  summary: string;
  body?: string;
  /** The body may be left out. */
  bodyOptional?: boolean;
  query?: boolean;
  ok: [status: string, schema: string | undefined, description: string];
  errors?: Record<string, unknown>;
}

/** The routes under `/channels/{channelId}` (and the list), relative to a channels base. */
const CHANNEL_OPERATIONS: Record<string, Record<string, Operation>> = {
  '': {
    get: { summary: 'The warm channels the consumer may read, with their state', ok: ['200', 'ChannelList', 'the warm channels'] },
  },
  '/{channelId}/token': {
    get: {
      summary: 'The current channel token (cached; fetched on a miss), or a disposable one',
      query: true,
      ok: ['200', 'ChannelTokenOrDisposable', 'a token with at least BROKER_MIN_TTL_SECONDS left'],
    },
  },
  '/{channelId}/token/refresh': {
    post: {
      summary: 'Compare-and-refresh: report a token PolyV rejected; answers the current (or a new) token',
      body: 'RejectedToken',
      ok: ['200', 'ChannelToken', 'the current token, new if the reported one was current (and old enough)'],
    },
  },
  '/{channelId}': {
    get: { summary: "A channel's state (token masked out)", ok: ['200', 'ChannelState', 'the state'] },
    put: {
      summary: 'Keep the channel warm (refreshed before expiry): pinned until DELETE, or in a warm window',
      body: 'WarmWindow',
      bodyOptional: true,
      ok: ['200', 'ChannelState', 'the state'],
    },
    delete: { summary: 'Stop keeping the channel warm and forget its token', ok: ['204', undefined, 'forgotten'] },
  },
  '/{channelId}/watch-tokens': {
    post: { summary: "A viewer's watch-API token (cached per viewer profile)", body: 'ViewerProfile', ok: ['200', 'ViewerToken', 'the token'] },
  },
  '/{channelId}/common-token': {
    get: { summary: 'The deprecated common token (token + mediaChannelKey)', ok: ['200', 'CommonToken', 'the token (Deprecation: true)'] },
  },
  '/{channelId}/common-token/refresh': {
    post: { summary: 'Compare-and-refresh of the common token', body: 'RejectedToken', ok: ['200', 'CommonToken', 'the current or a new token'] },
  },
  '/{channelId}/watch-urls': {
    post: { summary: 'A single-use watch-page URL (each goes to exactly one caller)', ok: ['200', 'WatchUrl', 'the URL'] },
  },
};

/** What a token stream's 200 answer carries (Server-Sent Events; see the README, "Token streams"). */
const STREAM_EVENTS =
  'Server-Sent Events: `event: token` (data: ChannelToken; first the current token, then each new one as it is written), ' +
  '`event: forgotten` (data: StreamForgotten; after DELETE), and on the multiplexed stream `event: unavailable` ' +
  '(data: StreamUnavailable); a `: heartbeat` comment every 15 s. The `id` is the token version (multiplexed: ' +
  '`channelId:version,...`); send the last one back as `Last-Event-ID` to skip what you hold. Never a token with less ' +
  'than BROKER_MIN_TTL_SECONDS left.';

/** A token stream: the same refusals as the read (JSON), then `text/event-stream`. */
function streamOperation(summary: string, params: unknown[], tag: string, multiplexed: boolean): Record<string, unknown> {
  const channels = {
    name: 'channels',
    in: 'query',
    required: true,
    description: '1-100 channel IDs, comma-separated, given once',
    schema: { type: 'string', pattern: '^\\d{1,20}(,\\d{1,20})*$' },
  };
  const lastEventId = {
    name: 'Last-Event-ID',
    in: 'header',
    required: false,
    description: 'the `id` of the last event received: what the client holds is not sent again',
    schema: { type: 'string' },
  };
  return {
    summary,
    tags: [tag],
    parameters: [...params, ...(multiplexed ? [channels] : []), lastEventId],
    responses: {
      '200': { description: STREAM_EVENTS, content: { 'text/event-stream': { schema: { type: 'string' } } } },
      ...BAD_INPUT,
      ...COMMON_ERRORS,
    },
  };
}

function operation(op: Operation, params: unknown[], tag: string): Record<string, unknown> {
  const [status, schema, description] = op.ok;
  return {
    summary: op.summary,
    tags: [tag],
    parameters: [
      ...params,
      ...(op.query === true ? [{ name: 'disposable', in: 'query', required: false, schema: jsonSchema(disposableQuery, 'input') }] : []),
    ],
    ...(op.body === undefined ? {} : { requestBody: { required: op.bodyOptional !== true, content: { 'application/json': { schema: ref(op.body) } } } }),
    responses: {
      [status]: schema === undefined ? { description } : json(schema, description),
      ...BAD_INPUT,
      ...COMMON_ERRORS,
    },
  };
}

/**
 * The OpenAPI 3.1 description of every `/v1` route, its request bodies, responses and errors (the `code`
 * enum is the broker's closed set), generated from the zod schemas the routes validate with. Served at
 * `GET /openapi.json` and written to `openapi.json` by `npm run build`.
 */
export function buildOpenApiDocument(): Record<string, unknown> {
  const channelParam = { name: 'channelId', in: 'path', required: true, schema: jsonSchema(channelIdParam, 'input') };
  const accountPathParam = { name: 'account', in: 'path', required: true, schema: jsonSchema(accountParam, 'input') };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [base, extraParams, tag] of [
    ['/v1/channels', [], 'default account'],
    ['/v1/accounts/{account}/channels', [accountPathParam], 'named account'],
  ] as const) {
    for (const [suffix, ops] of Object.entries(CHANNEL_OPERATIONS)) {
      const params = suffix.includes('{channelId}') ? [...extraParams, channelParam] : [...extraParams];
      paths[`${base}${suffix}`] = Object.fromEntries(Object.entries(ops).map(([method, op]) => [method, operation(op, params, tag)]));
    }
    paths[`${base}/{channelId}/token/stream`] = {
      get: streamOperation("The channel's current token, then every new one as any replica writes it", [...extraParams, channelParam], tag, false),
    };
    const streamBase = base.replace(/\/channels$/, '');
    paths[`${streamBase}/token-stream`] = {
      get: streamOperation('The token streams of several channels (1-100) on one connection', [...extraParams], tag, true),
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'polyv-token-broker',
      version: API_VERSION,
      description: 'Serves PolyV access tokens (channel, viewer, common, watch URL) from one cache to internal consumers.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a consumer key of BROKER_API_KEYS or BROKER_CONFIG_FILE' } },
      schemas: {
        ChannelToken: jsonSchema(channelTokenResponse, 'output'),
        DisposableToken: jsonSchema(disposableTokenResponse, 'output'),
        ChannelTokenOrDisposable: { oneOf: [ref('ChannelToken'), ref('DisposableToken')] },
        ChannelState: jsonSchema(channelStateResponse, 'output'),
        ChannelList: jsonSchema(channelListResponse, 'output'),
        ViewerToken: jsonSchema(viewerTokenResponse, 'output'),
        CommonToken: jsonSchema(commonTokenResponse, 'output'),
        WatchUrl: jsonSchema(watchUrlResponse, 'output'),
        RejectedToken: jsonSchema(rejectedTokenBody, 'input'),
        ViewerProfile: jsonSchema(viewerProfileBody, 'input'),
        WarmWindow: jsonSchema(warmWindowBody, 'input'),
        Error: jsonSchema(errorResponse, 'output'),
        StreamForgotten: jsonSchema(streamForgottenEvent, 'output'),
        StreamUnavailable: jsonSchema(streamUnavailableEvent, 'output'),
      },
    },
  };
}
