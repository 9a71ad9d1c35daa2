/** The consumer whose request may cause a PolyV call, with how many it may cause per channel and endpoint and hour. */
export interface Caller {
  /** The consumer's configured name (bounded: consumers are configured), the `consumer` label of metrics. */
  readonly name: string;
  /** PolyV calls it may cause per channel and endpoint in any rolling hour; 0: no quota. */
  readonly upstreamPerHour: number;
}

/** Why a PolyV call was made (the `reason` label of polyv_broker_upstream_calls_caused_total). */
export type CallReason = 'miss' | 'disposable' | 'report' | 'scheduled' | 'manual';
