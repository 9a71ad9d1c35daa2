/**
 * The wire format of the token streams (Server-Sent Events, text/event-stream), as pure functions.
 *
 *   event: token                      event: forgotten                event: unavailable
 *   id: 42                            id:                             id: 1000001:42
 *   data: {"channelId":"1000001",     data: {"channelId":"1000001"}   data: {"channelId":"1000002","error":{...}}
 *          "channelToken":"…","expireTime":…}
 *
 * The `id` is what a reconnecting client sends back as `Last-Event-ID`: on a channel's stream, the version
 * of the last token sent (empty after `forgotten`, or for a token served from memory while Redis was away);
 * on the multiplexed stream, `channelId:version` of every channel whose token the stream has sent, joined by
 * commas. A comment line (`: heartbeat`) keeps idle connections open through proxies.
 */

/** Most channels one multiplexed stream may follow (`GET /v1/token-stream?channels=...`). */
export const MAX_STREAM_CHANNELS = 100;

/** A version in an event ID: what Redis' HINCRBY counter can hold without losing precision in JSON. */
const VERSION_RE = /^\d{1,15}$/;
const ENTRY_RE = /^(\d{1,20}):(\d{1,15})$/;

export type StreamEventName = 'token' | 'forgotten' | 'unavailable';

/** One event, `data` being one line of JSON (JSON.stringify never writes a newline). */
export function formatStreamEvent(event: StreamEventName, id: string, data: unknown): string {
  return `event: ${event}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The comment sent every heartbeat interval; clients ignore it. */
export const HEARTBEAT_FRAME = ': heartbeat\n\n';

/** How long an EventSource should wait before reconnecting (its `retry` field), in ms. */
export const STREAM_RETRY_MS = 2000;

/** The first bytes of every stream: the reconnection delay hint. */
export const STREAM_PREAMBLE = `retry: ${STREAM_RETRY_MS}\n\n`;

/** The multiplexed stream's event ID: `channelId:version` of each channel with a known version, in request order. */
export function multiplexedEventId(channelIds: readonly string[], versionOf: (channelId: string) => number | undefined): string {
  const parts: string[] = [];
  for (const channelId of channelIds) {
    const version = versionOf(channelId);
    if (version !== undefined) parts.push(`${channelId}:${version}`);
  }
  return parts.join(',');
}

/**
 * The versions a reconnecting client already holds, from its `Last-Event-ID`: a bare version applies to the
 * only channel of a channel's stream; `channelId:version` entries to the channels named (others are ignored).
 * Anything unreadable counts as nothing held: the client is sent the current token again.
 */
export function parseLastEventId(header: string | string[] | undefined, channelIds: readonly string[]): Map<string, number> {
  const held = new Map<string, number>();
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (value === undefined || value === '') return held;
  const only = channelIds.length === 1 ? channelIds[0] : undefined;
  if (VERSION_RE.test(value)) {
    if (only !== undefined) held.set(only, Number(value));
    return held;
  }
  const wanted = new Set(channelIds);
  for (const entry of value.split(',', MAX_STREAM_CHANNELS * 2)) {
    const m = ENTRY_RE.exec(entry.trim());
    if (m === null || !wanted.has(m[1]!)) continue;
    held.set(m[1]!, Number(m[2]));
  }
  return held;
}
