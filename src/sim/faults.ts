import { z } from 'zod';
import { SIM_ENDPOINTS, type SimEndpoint } from './sim-types.js';

/** Which requests a fault applies to. Every fault kind may carry these. */
export interface SimFaultScope {
  /** Only these endpoints; default all. */
  endpoints?: readonly SimEndpoint[] | undefined;
  /** Apply to the next N matching requests, then clear; default unlimited. */
  times?: number | undefined;
  /** Only requests for these channel IDs. */
  channelIds?: readonly string[] | undefined;
}

export type SimFault = SimFaultScope &
  (
    | { kind: 'error-code'; code: number; message: string; httpStatus?: number | undefined }
    /** A bare HTTP status with a non-JSON body, e.g. 502 "Bad Gateway". */
    | { kind: 'http-status'; status: number }
    /** Respond normally, but `ms` later. */
    | { kind: 'latency'; ms: number }
    /** Never respond (until close). */
    | { kind: 'hang' }
    /** Destroy the socket without a response. */
    | { kind: 'reset' }
    /** HTTP 200 with a body that is not JSON. */
    | { kind: 'bad-json' }
  );

const scope = {
  endpoints: z.array(z.enum(SIM_ENDPOINTS as [SimEndpoint, ...SimEndpoint[]])).optional(),
  times: z.number().int().positive().optional(),
  channelIds: z.array(z.string().min(1)).optional(),
};
const httpStatus = z.number().int().min(100).max(599);

const simFaultSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('error-code'), code: z.number().int(), message: z.string(), httpStatus: httpStatus.optional(), ...scope }),
  z.strictObject({ kind: z.literal('http-status'), status: httpStatus, ...scope }),
  z.strictObject({ kind: z.literal('latency'), ms: z.number().int().min(0).max(600_000), ...scope }),
  z.strictObject({ kind: z.literal('hang'), ...scope }),
  z.strictObject({ kind: z.literal('reset'), ...scope }),
  z.strictObject({ kind: z.literal('bad-json'), ...scope }),
]);

/** Validates a fault from untrusted input (the admin API, or a test's typo); throws a readable TypeError. */
export function parseSimFault(input: unknown): SimFault {
  const result = simFaultSchema.safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(fault)'}: ${i.message}`);
    throw new TypeError(`invalid fault: ${problems.join('; ')}`);
  }
  const fault: SimFault = result.data;
  return fault;
}

/** Holds the active fault and decides, request by request, whether it applies. */
export class FaultSwitch {
  private active: SimFault | null = null;

  set(fault: SimFault | null): void {
    this.active = fault === null ? null : parseSimFault(fault);
  }

  /** The active fault; `times` shows how many applications remain. */
  current(): SimFault | null {
    return this.active === null ? null : { ...this.active };
  }

  /** Returns the fault to apply to this request (using up one of its `times`), or null. */
  take(endpoint: SimEndpoint, channelId: string | undefined): SimFault | null {
    const fault = this.active;
    if (fault === null) return null;
    if (fault.endpoints !== undefined && !fault.endpoints.includes(endpoint)) return null;
    if (fault.channelIds !== undefined && (channelId === undefined || !fault.channelIds.includes(channelId))) return null;
    if (fault.times !== undefined) {
      const remaining = fault.times - 1;
      this.active = remaining > 0 ? { ...fault, times: remaining } : null;
    }
    return fault;
  }
}
