/** The four PolyV token endpoints the simulator serves. */
export type SimEndpoint = 'get-channel-token' | 'get-watch-api-token' | 'common-get-token' | 'get-token-watch-url';

/** PolyV's paths, exactly as documented under shared/polyv-api/. */
export const SIM_PATHS: Readonly<Record<SimEndpoint, string>> = {
  'get-channel-token': '/live/v3/common/token/get-channel-token',
  'get-watch-api-token': '/live/v3/channel/watch/get-watch-api-token',
  'common-get-token': '/live/v3/channel/common/get-token',
  'get-token-watch-url': '/live/v3/channel/watch/get-token-watch-url',
};

export const SIM_ENDPOINTS = Object.keys(SIM_PATHS) as readonly SimEndpoint[];

export function endpointForPath(path: string): SimEndpoint | undefined {
  return SIM_ENDPOINTS.find((endpoint) => SIM_PATHS[endpoint] === path);
}

export interface SimAccount {
  appId: string;
  appSecret: string;
  /** Channel IDs that belong to this account; undefined = any 1-20 digit ID. */
  channels?: readonly string[] | undefined;
}

/** Source of "now" in epoch milliseconds (structurally the same as the broker's Clock). */
export interface SimClock {
  now(): number;
}

/** One request the simulator received on a PolyV endpoint. */
export interface SimCall {
  endpoint: SimEndpoint;
  /** Sim clock time at arrival, epoch ms. */
  at: number;
  channelId: string | undefined;
  /** Every parameter received except `sign`; a value equal to an appSecret is replaced by `[REDACTED]`. */
  params: Record<string, string>;
  /** HTTP status sent; 0 when no response was sent (hang, reset). */
  httpStatus: number;
  /** The envelope's code; 0 when the response had no envelope (bare HTTP status, bad JSON, hang, reset). */
  code: number;
  message: string;
  faulted: boolean;
}

export type SimTokenKind = 'channel' | 'watch-api' | 'common' | 'watch-url';

export interface SimTokenCheck {
  valid: boolean;
  reason?: string;
}

/** PolyV's response envelope. */
export interface SimEnvelope {
  code: number;
  status: string;
  message: string;
  data: unknown;
}
