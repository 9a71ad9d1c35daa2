import { gzipSync } from 'node:zlib';
import fc from 'fast-check';

/**
 * Random requests against every route of the broker, each with the answer the README promises for it.
 *
 * A request is assembled from parts (key, route, method, channel ID, account, query, body, extra headers) and
 * `expectedAnswer` derives the answer from those parts alone, in the order the README gives: 401 for a
 * missing or unknown key, then the body limits (413, 415, 400 `invalid_json`), then the route (404, 400 for a
 * malformed path), 400 `invalid_channel_id`, 404 for an unknown account, 403 outside the key's scope, 400 for
 * a bad query or body. Only a request with none of those faults is `served` (and may call PolyV).
 */

/** What the fuzzed broker is configured with (see hostile-input.test.ts). */
export interface FuzzSetup {
  /** Unscoped key of consumer svc-a. */
  readonly fullKey: string;
  /** Key of a consumer limited to `channel` tokens of `scopedChannel`. */
  readonly scopedKey: string;
  readonly scopedChannel: string;
  /** Channels the simulator knows in the default account. */
  readonly knownChannels: readonly string[];
  /** Name of the second configured account (the env account is `default`). */
  readonly namedAccount: string;
}

export type Expected =
  /** Exactly this status and code, and no PolyV call. */
  | { readonly kind: 'error'; readonly status: number; readonly code: string }
  /** A valid request: 2xx, 404 channel_not_in_account, or 503 with Retry-After; PolyV may be called. */
  | { readonly kind: 'served' }
  /** /healthz, /readyz, /metrics: 200. */
  | { readonly kind: 'ops' }
  /** Nothing exact is promised beyond the invariants every answer keeps. */
  | { readonly kind: 'loose' };

export interface FuzzRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer | undefined;
  readonly expected: Expected;
  /** The parts, for the failure report. */
  readonly label: string;
}

type KeyRole = 'none' | 'bad' | 'full' | 'scoped';
type Shape = 'list' | 'channel' | 'token' | 'token/refresh' | 'watch-tokens' | 'common-token' | 'common-token/refresh' | 'watch-urls';
type Kind = 'channel' | 'watch_api' | 'common' | 'watch_url';

const SHAPES: Record<Shape, { methods: readonly string[]; kind: Kind; body?: 'rejected' | 'rejected-strict' | 'viewer' }> = {
  list: { methods: ['GET'], kind: 'channel' },
  channel: { methods: ['GET', 'PUT', 'DELETE'], kind: 'channel' },
  token: { methods: ['GET'], kind: 'channel' },
  'token/refresh': { methods: ['POST'], kind: 'channel', body: 'rejected' },
  'watch-tokens': { methods: ['POST'], kind: 'watch_api', body: 'viewer' },
  'common-token': { methods: ['GET'], kind: 'common' },
  'common-token/refresh': { methods: ['POST'], kind: 'common', body: 'rejected-strict' },
  'watch-urls': { methods: ['POST'], kind: 'watch_url' },
};
const SHAPE_NAMES = Object.keys(SHAPES) as Shape[];

interface Segment {
  /** As sent in the path. */
  readonly raw: string;
  /** Not valid percent-encoding: express cannot decode it. */
  readonly malformed: boolean;
  /** Decoded value (when not malformed). */
  readonly value: string;
}

type BodyKind =
  | 'absent'
  | 'valid'
  | 'wrong-object'
  | 'non-object'
  | 'deep'
  | 'garbage'
  | 'other-type'
  | 'bad-charset'
  | 'bad-encoding'
  | 'oversized'
  | 'oversized-other-type'
  | 'gzip-bomb'
  | 'random-type';

interface BodyPart {
  readonly kind: BodyKind;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly payload?: Buffer;
}

type Target =
  | { readonly kind: 'v1'; readonly shape: Shape; readonly account: Segment | undefined; readonly channel: Segment | undefined }
  | { readonly kind: 'ops'; readonly path: '/healthz' | '/readyz' | '/metrics' }
  | { readonly kind: 'random'; readonly path: string };

interface Parts {
  readonly auth: { readonly header: string | undefined; readonly role: KeyRole };
  readonly target: Target;
  readonly method: string;
  readonly query: { readonly text: string; readonly disposable: 'absent' | 'ok' | 'bad' };
  readonly body: BodyPart;
  readonly extraHeaders: Record<string, string>;
}

const MAX_BODY_BYTES = 16 * 1024;
const CHANNEL_ID_RE = /^\d{1,20}$/;

/** Printable ASCII plus obs-text (what a header value may carry). */
const headerChar = fc.oneof(
  { weight: 9, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
  { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
).map((c) => String.fromCharCode(c));
const headerText = (maxLength: number) => fc.string({ unit: headerChar, maxLength });
const tokenChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&\'*+.^`|~'.split(''));
/** Header names that change how a request is framed or answered; fuzzed separately, never at random. */
const RESERVED_HEADERS = new Set([
  'authorization',
  'content-type',
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'host',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
]);

function authArb(setup: FuzzSetup): fc.Arbitrary<Parts['auth']> {
  const good = (key: string) => [`Bearer ${key}`, `bearer ${key}`, `BEARER   ${key}`, `Bearer ${key}  `];
  const k = setup.fullKey;
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant({ header: undefined, role: 'none' as const }) },
    { weight: 5, arbitrary: fc.constantFrom(...good(k)).map((header) => ({ header, role: 'full' as const })) },
    { weight: 2, arbitrary: fc.constantFrom(...good(setup.scopedKey)).map((header) => ({ header, role: 'scoped' as const })) },
    {
      weight: 3,
      arbitrary: fc
        .oneof(
          fc.constantFrom(
            '',
            'Bearer',
            'Bearer ',
            k,
            `Basic ${Buffer.from(`svc-a:${k}`).toString('base64')}`,
            `Token ${k}`,
            `Bearer\t${k}`,
            `Bearer ${k}x`,
            `Bearer ${k.slice(1)}`,
            `Bearer ${k.toUpperCase()}`,
            `Bearer ${k} ${setup.scopedKey}`,
            `Bearer ${Buffer.from(k).toString('base64')}`,
            `Bearer "${k}"`,
            `Bearer ${k.repeat(200)}`,
          ),
          headerText(80).map((s) => `Bearer ${s}`),
          headerText(80),
        )
        .map((header) => ({ header, role: 'bad' as const })),
    },
  );
}

/**
 * A path segment: one of `valid` values, a random one that `isValid` rejects (both percent-encoded when
 * needed), or malformed percent-encoding.
 */
function segmentArb(
  valid: fc.Arbitrary<string>,
  weights: { valid: number; invalid: number; malformed: number },
  isValid: (s: string) => boolean,
): fc.Arbitrary<Segment> {
  const encoded = (s: string): Segment => ({ raw: encodeURIComponent(s), malformed: false, value: s });
  return fc.oneof(
    { weight: weights.valid, arbitrary: valid.map(encoded) },
    {
      weight: weights.invalid,
      arbitrary: fc
        .oneof(
          fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }),
          fc.constantFrom('-1', '1.5', ' 1', '1 ', '１２３', '0x10', '1e3', '123456789012345678901', '%', '١٢٣', 'null', 'undefined', '__proto__'),
        )
        // '.' and '..' are dot segments: the client removes them from the path before sending.
        .filter((s) => !isValid(s) && !/^\.+$/.test(s))
        .map(encoded),
    },
    {
      weight: weights.malformed,
      arbitrary: fc.constantFrom('%', '%zz', '%E0%A4%A', '%C0%AF', '%ED%A0%80', '1%', '%%31').map((raw) => ({ raw, malformed: true, value: '' })),
    },
  );
}

function targetArb(setup: FuzzSetup): fc.Arbitrary<Target> {
  const channel = segmentArb(
    fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...setup.knownChannels) },
      { weight: 1, arbitrary: fc.stringMatching(/^\d{1,20}$/) },
    ),
    { valid: 6, invalid: 3, malformed: 1 },
    (s) => CHANNEL_ID_RE.test(s),
  );
  const account = fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    {
      weight: 2,
      arbitrary: segmentArb(
        fc.oneof(fc.constantFrom(setup.namedAccount, 'default'), fc.stringMatching(/^[a-z0-9_-]{1,32}$/)),
        { valid: 8, invalid: 2, malformed: 1 },
        (s) => s === setup.namedAccount || s === 'default',
      ),
    },
  );
  const v1 = fc.record({ shape: fc.constantFrom(...SHAPE_NAMES), account, channel }).map(
    ({ shape, account: a, channel: c }): Target => ({ kind: 'v1', shape, account: a, channel: shape === 'list' ? undefined : c }),
  );
  const ops = fc.constantFrom('/healthz' as const, '/readyz' as const, '/metrics' as const).map((path): Target => ({ kind: 'ops', path }));
  const random = fc
    .array(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 4 })
    .filter((segs) => !/^(v1|healthz|readyz|metrics)$/i.test(segs[0] ?? '') && segs.every((s) => !/^\.+$/.test(s)))
    .map((segs): Target => ({ kind: 'random', path: `/${segs.map(encodeURIComponent).join('/')}` }));
  return fc.oneof({ weight: 12, arbitrary: v1 }, { weight: 2, arbitrary: ops }, { weight: 1, arbitrary: random });
}

function pathOf(t: Target): string {
  if (t.kind !== 'v1') return t.path;
  const base = t.account === undefined ? '/v1/channels' : `/v1/accounts/${t.account.raw}/channels`;
  if (t.shape === 'list') return base;
  const ch = t.channel?.raw ?? '';
  return t.shape === 'channel' ? `${base}/${ch}` : `${base}/${ch}/${t.shape}`;
}

function methodArb(target: Target): fc.Arbitrary<string> {
  const own = target.kind === 'v1' ? SHAPES[target.shape].methods : ['GET'];
  return fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...own) },
    { weight: 3, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'FOO') },
  );
}

const queryArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ text: '', disposable: 'absent' as const }) },
  { weight: 1, arbitrary: fc.constantFrom('?disposable=true', '?disposable=false').map((text) => ({ text, disposable: 'ok' as const })) },
  {
    weight: 2,
    arbitrary: fc
      .oneof(
        fc.constantFrom('?disposable=', '?disposable=TRUE', '?disposable=1', '?disposable=true&disposable=true', '?disposable=true&disposable=false'),
        fc.string({ maxLength: 20 }).filter((s) => s !== 'true' && s !== 'false').map((s) => `?disposable=${encodeURIComponent(s)}`),
      )
      .map((text) => ({ text, disposable: 'bad' as const })),
  },
  {
    weight: 1,
    arbitrary: fc
      .dictionary(fc.stringMatching(/^[a-z_]{1,8}$/).filter((k) => k !== 'disposable'), fc.string({ maxLength: 20 }), { maxKeys: 4 })
      .map((d) => ({ text: `?${new URLSearchParams(d).toString()}`, disposable: 'absent' as const })),
  },
);

const json = (value: unknown, contentType = 'application/json'): Pick<BodyPart, 'contentType' | 'payload'> => ({
  contentType,
  payload: Buffer.from(JSON.stringify(value)),
});

/** JSON objects none of whose fields named `field` is a string: never a valid body. */
const wrongObject = (field: string) =>
  fc
    .record({
      extra: fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
      wrong: fc.option(fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }), fc.object({ maxDepth: 1 }))),
    })
    .map(({ extra, wrong }) => {
      const o: Record<string, unknown> = Object.fromEntries(Object.entries(extra).filter(([key]) => key !== field));
      if (wrong !== null) o[field] = wrong;
      return o;
    });

function deepJson(depth: number, object: boolean): string {
  return object ? `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}` : `${'['.repeat(depth)}${']'.repeat(depth)}`;
}

function bodyArb(target: Target): fc.Arbitrary<BodyPart> {
  const rule = target.kind === 'v1' ? SHAPES[target.shape].body : undefined;
  const valid: fc.Arbitrary<BodyPart> =
    rule === 'viewer'
      ? fc
          .record({ viewerId: fc.stringMatching(/^[a-z0-9]{1,32}$/), nickname: fc.option(fc.string({ minLength: 1, maxLength: 20 }), { nil: undefined }) })
          .map((v) => ({ kind: 'valid', ...json(v.nickname === undefined ? { viewerId: v.viewerId } : v) }))
      : rule === undefined
        ? fc.constant({ kind: 'absent' })
        : fc.string({ minLength: 1, maxLength: 64 }).map((t) => ({ kind: 'valid', ...json({ rejectedToken: `tok${t}` }) }));
  const field = rule === 'viewer' ? 'viewerId' : 'rejectedToken';
  const kinds: Array<fc.WeightedArbitrary<BodyPart>> = [
    { weight: 4, arbitrary: fc.constant({ kind: 'absent' }) },
    { weight: 4, arbitrary: valid },
    { weight: 2, arbitrary: wrongObject(field).map((o) => ({ kind: 'wrong-object', ...json(o, fcContentTypeJson(o)) })) },
    {
      weight: 2,
      arbitrary: fc
        .oneof(fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }), fc.integer(), fc.string(), fc.boolean(), fc.constant(null))
        .map((v) => ({ kind: 'non-object', ...json(v) })),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ depth: fc.integer({ min: 100, max: 3000 }), object: fc.boolean() })
        .map(({ depth, object }) => ({ kind: 'deep', contentType: 'application/json', payload: Buffer.from(deepJson(depth, object)) })),
    },
    {
      weight: 2,
      arbitrary: fc
        .string({ unit: 'binary', minLength: 1, maxLength: 200 })
        .map((s) => ({ kind: 'garbage', contentType: 'application/json', payload: Buffer.from(s) })),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({
          contentType: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', 'application/xml', 'application/octet-stream'),
          payload: fc.uint8Array({ minLength: 1, maxLength: 300 }),
        })
        .map(({ contentType, payload }) => ({ kind: 'other-type', contentType, payload: Buffer.from(payload) })),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom('application/json; charset=latin1', 'application/json; charset=koi8-r', 'application/json; charset=iso-8859-1')
        .map((contentType) => ({ kind: 'bad-charset', contentType, payload: Buffer.from('{"rejectedToken":"x"}') })),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom('compress', 'x-made-up', 'gzip, gzip', 'identity, br')
        .map((contentEncoding) => ({ kind: 'bad-encoding', contentType: 'application/json', contentEncoding, payload: Buffer.from('{"a":1}') })),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: MAX_BODY_BYTES + 1, max: 200_000 })
        .map((size) => ({ kind: 'oversized', contentType: 'application/json', payload: Buffer.from(JSON.stringify({ rejectedToken: 'x'.repeat(size) })) })),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: MAX_BODY_BYTES + 1, max: 200_000 })
        .map((size) => ({ kind: 'oversized-other-type', contentType: 'text/plain', payload: Buffer.alloc(size, 0x61) })),
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 64 * 1024, max: 4 * 1024 * 1024 }).map((size) => ({
        kind: 'gzip-bomb',
        contentType: 'application/json',
        contentEncoding: 'gzip',
        payload: gzipSync(Buffer.from(`{"rejectedToken":"${'a'.repeat(size)}"}`)),
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ contentType: headerText(60), payload: fc.uint8Array({ minLength: 1, maxLength: 100 }) })
        .map(({ contentType, payload }) => ({ kind: 'random-type', contentType, payload: Buffer.from(payload) })),
    },
  ];
  return fc.oneof(...kinds);
}

/** Content types the JSON parser accepts, in a few spellings. */
function fcContentTypeJson(o: unknown): string {
  const spellings = ['application/json', 'application/json; charset=utf-8', 'Application/JSON', 'application/json;charset=UTF-8'];
  return spellings[JSON.stringify(o).length % spellings.length] ?? 'application/json';
}

const extraHeadersArb = fc.dictionary(
  fc.string({ unit: tokenChar, minLength: 1, maxLength: 20 }).filter((n) => !RESERVED_HEADERS.has(n.toLowerCase())),
  headerText(200),
  { maxKeys: 8 },
);

/** Whether the JSON parser (strict: an object or array at the top) reads this text. */
function parsesAsStrictJson(text: string): boolean {
  const first = /^[ \t\n\r]*(.)/s.exec(text)?.[1];
  if (first !== '{' && first !== '[') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

const isJsonType = (contentType: string | undefined): boolean =>
  contentType !== undefined && /^application\/json\s*(;|$)/i.test(contentType.trim());

const error = (status: number, code: string): Expected => ({ kind: 'error', status, code });

/** The answer the README promises for these parts (see the module comment for the order of checks). */
function expectedAnswer(p: Parts, setup: FuzzSetup): Expected {
  const { method, target, body } = p;
  if (method === 'FOO') return error(400, 'invalid_request'); // Node's parser refuses unknown methods
  if (method === 'OPTIONS') return { kind: 'loose' };
  if (target.kind === 'ops') return method === 'GET' || method === 'HEAD' ? { kind: 'ops' } : error(404, 'not_found');
  if (target.kind === 'random') return error(404, 'not_found');

  if (p.auth.role === 'none' || p.auth.role === 'bad') return error(401, 'unauthorized');

  if (body.payload !== undefined) {
    if (body.payload.length > MAX_BODY_BYTES) return error(413, 'payload_too_large');
    if (body.kind === 'random-type' && /json/i.test(body.contentType ?? '')) return { kind: 'loose' };
    if (isJsonType(body.contentType)) {
      if (body.kind === 'bad-charset' || body.kind === 'bad-encoding') return error(415, 'unsupported_media_type');
      if (body.kind === 'gzip-bomb') return error(413, 'payload_too_large');
      if (!parsesAsStrictJson(body.payload.toString('utf8'))) return error(400, 'invalid_json');
    }
  }

  const shape = SHAPES[target.shape];
  if (target.account?.malformed === true || target.channel?.malformed === true) return error(400, 'invalid_request');
  const routed = shape.methods.includes(method) || (method === 'HEAD' && shape.methods.includes('GET'));
  if (!routed) return error(404, 'not_found');
  if (target.channel !== undefined && !CHANNEL_ID_RE.test(target.channel.value)) return error(400, 'invalid_channel_id');
  if (target.account !== undefined && target.account.value !== 'default' && target.account.value !== setup.namedAccount) {
    return error(404, 'not_found');
  }
  if (p.auth.role === 'scoped') {
    const inScope = shape.kind === 'channel' && (target.channel === undefined || target.channel.value === setup.scopedChannel);
    if (!inScope) return error(403, 'forbidden');
  }
  if (target.shape === 'token' && p.query.disposable === 'bad') return error(400, 'invalid_request');
  if (target.shape === 'channel' && method === 'PUT' && body.payload !== undefined && body.payload.length > 0) {
    // The optional warm window: JSON only (415 otherwise), and only warmFrom/warmUntil (never generated valid here).
    if (body.kind === 'garbage' || body.kind === 'random-type') return { kind: 'loose' };
    if (!isJsonType(body.contentType)) return error(415, 'unsupported_media_type');
    const parsed: unknown = JSON.parse(body.payload.toString('utf8'));
    const empty = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) && Object.keys(parsed).length === 0;
    return empty ? { kind: 'served' } : error(400, 'invalid_request');
  }
  if (shape.body !== undefined) {
    if (body.kind === 'garbage' || body.kind === 'random-type') return { kind: 'loose' }; // text that happened to parse
    if (body.kind !== 'valid') return error(400, 'invalid_request');
  }
  return { kind: 'served' };
}

/** Random requests against every route, each with its promised answer. */
export function hostileRequests(setup: FuzzSetup): fc.Arbitrary<FuzzRequest> {
  return targetArb(setup)
    .chain((target) =>
      fc.record({
        auth: authArb(setup),
        target: fc.constant(target),
        method: methodArb(target),
        query: queryArb,
        body: bodyArb(target),
        extraHeaders: extraHeadersArb,
      }),
    )
    .map((parts): FuzzRequest & fc.WithToStringMethod => {
      const headers: Record<string, string> = { ...parts.extraHeaders };
      if (parts.auth.header !== undefined) headers['authorization'] = parts.auth.header;
      if (parts.body.contentType !== undefined) headers['content-type'] = parts.body.contentType;
      if (parts.body.contentEncoding !== undefined) headers['content-encoding'] = parts.body.contentEncoding;
      const label = JSON.stringify({
        method: parts.method,
        path: pathOf(parts.target) + parts.query.text,
        key: parts.auth.role,
        auth: parts.auth.header?.slice(0, 40),
        body: parts.body.kind,
        contentType: parts.body.contentType,
        bytes: parts.body.payload?.length,
        extraHeaders: Object.keys(parts.extraHeaders),
      });
      const expected = expectedAnswer(parts, setup);
      return {
        method: parts.method,
        path: pathOf(parts.target) + parts.query.text,
        headers,
        body: parts.body.payload,
        expected,
        label,
        // fast-check prints a counterexample with this, not byte by byte
        [fc.toStringMethod]: () => `${label} expecting ${JSON.stringify(expected)}`,
      };
    });
}

/** Bytes that look more or less like an HTTP request: a valid one mutated, or noise. */
export function rawRequestBytes(port: number, key: string): fc.Arbitrary<Buffer> {
  const base = [
    `GET /v1/channels/1000001/token HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${key}\r\n\r\n`,
    `POST /v1/channels/1000001/token/refresh HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{"rejectedToken":"x"}`,
    `GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`,
  ];
  const edit = fc.record({
    at: fc.nat(),
    remove: fc.integer({ min: 0, max: 4 }),
    insert: fc.oneof(
      fc.string({ unit: 'binary-ascii', maxLength: 8 }),
      fc.constantFrom('\r\n', '\n', '\r', ' ', '\0', ':', '%', 'Transfer-Encoding: chunked\r\n', 'Content-Length: 5\r\n', 'Content-Length: -1\r\n', 'HTTP/2.0', '\r\n\r\n'),
    ),
  });
  const mutated = fc.record({ base: fc.constantFrom(...base), edits: fc.array(edit, { minLength: 1, maxLength: 4 }) }).map(({ base: b, edits }) => {
    let s = b;
    for (const e of edits) {
      const at = e.at % (s.length + 1);
      s = s.slice(0, at) + e.insert + s.slice(at + e.remove);
    }
    return Buffer.from(s, 'latin1');
  });
  const lines = fc
    .record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'CONNECT', 'PRI', 'TRACE', 'get', 'G ET'),
      target: fc.oneof(
        fc.constantFrom('*', '/', 'http://127.0.0.1/v1/channels/1000001/token', '/v1/../healthz', '//v1//channels', '/v1/channels/1000001/token#x', '/%00', '/\u00ff'),
        fc.string({ unit: 'binary-ascii', maxLength: 40 }),
      ),
      version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/0.9', 'HTTP/2.0', 'HTTP/1.1 extra', ''),
      headers: fc.array(fc.string({ unit: 'binary-ascii', maxLength: 40 }), { maxLength: 4 }),
    })
    .map(({ method, target, version, headers }) =>
      Buffer.from(`${method} ${target} ${version}\r\nHost: x\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`, 'latin1'),
    );
  const noise = fc.uint8Array({ minLength: 1, maxLength: 512 }).map((a) => Buffer.from(a));
  return fc.oneof({ weight: 5, arbitrary: mutated }, { weight: 3, arbitrary: lines }, { weight: 1, arbitrary: noise });
}
