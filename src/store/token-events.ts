/**
 * The messages announcing a token change on the `RedisKeys.events()` pub/sub channel. TokenStore publishes
 * one after every versioned write that took effect and after every forget; each replica's LocalTokenCache
 * drops its copy on receipt. A message carries IDs only, never a token.
 */
export interface TokenEvent {
  readonly kind: 'channel';
  readonly appId: string;
  readonly channelId: string;
}

export function formatTokenEvent(appId: string, channelId: string): string {
  return JSON.stringify({ kind: 'channel', appId, channelId } satisfies TokenEvent);
}

/** The event in `message`, or undefined when it is not one this version understands. */
export function parseTokenEvent(message: string): TokenEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { kind, appId, channelId } = value as Record<string, unknown>;
  if (kind !== 'channel' || typeof appId !== 'string' || typeof channelId !== 'string') return undefined;
  return { kind, appId, channelId };
}
