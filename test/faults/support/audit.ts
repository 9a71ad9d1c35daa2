import type { SimCall } from '../../../src/sim/polyv-simulator.js';
import { NO_TOKEN_CODES, OPS, type LoadDriver, type Op } from './consumers.js';
import { issues } from './fleet.js';

/**
 * A response that got a token the broker had already replaced more than this long before the request
 * started (a newer token had reached some consumer) is a stale serve: a broker bug. The grace covers the
 * pub/sub invalidation of the replicas' in-process caches and scheduling delay on a loaded 2-core machine.
 */
export const STALE_GRACE_MS = 500;

/** The usual bound of that gap: PolyV's answer on its way back, the write, the pub/sub invalidation. */
export const NORMAL_SUPERSEDED_GRACE_MS = 1000;

export interface AuditOptions {
  from: number;
  to: number;
  minTtlMs: number;
  /**
   * Longest tolerated gap between PolyV issuing a token (which may invalidate the previous one) and the
   * broker still serving the previous one: the time a refresh's answer is on its way (PolyV's latency) and
   * being stored. Longer gaps are reported as failures unless the scenario expects them (a killed worker).
   */
  supersededGraceMs: number;
  /**
   * A time Redis was away (killed): a replica serving from memory cannot hear of a token another replica read
   * just before Redis went (LastServedTokens), so an older token it serves then is counted as superseded,
   * not stale. Absent: no such window.
   */
  redisAway?: { from: number; to: number } | undefined;
}

export interface Audit {
  readonly windowSeconds: number;
  readonly responses: number;
  readonly ratePerSec: number;
  readonly byStatus: Record<string, number>;
  readonly tokenResponses: number;
  /** Token reads (GET .../token of the channels consumers read) not answered 200. */
  readonly tokenReadsNot200: number;
  readonly distinctTokens: number;
  /** Served with less than the minimum TTL left (or already expired). Must be 0. */
  readonly belowMinTtl: number;
  /** Tokens the simulator did not issue for that channel. Must be 0. */
  readonly unknownAtSim: number;
  /** Tokens whose issuing call is not in the simulator's log. Must be 0. */
  readonly notIssued: number;
  /** Served after the broker had already handed out a newer token (beyond STALE_GRACE_MS). Must be 0. */
  readonly stale: number;
  readonly staleMaxLagMs: number;
  /** Served after PolyV had issued a newer token the broker had not stored yet. */
  readonly superseded: number;
  readonly supersededMaxLagMs: number;
  /** … of which beyond `supersededGraceMs`. */
  readonly supersededBeyondGrace: number;
  /** Channels where that gap exceeded NORMAL_SUPERSEDED_GRACE_MS. */
  readonly supersededChannels: readonly string[];
  /** 503s on a token read while the same replica had served a still-valid, still-current token. Must be 0. */
  readonly unavailableWithValidToken: number;
  /** Responses with a status their request must never get (any 5xx but an allowed 503, 0 = transport error, wrong 4xx). */
  readonly badResponses: number;
  readonly badSamples: readonly string[];
  /** Latency of successful token reads (ms). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

const ALLOWED_STATUS: Record<Op, readonly number[]> = {
  get: [200, 503],
  'report-stale': [200, 503],
  state: [200, 503],
  list: [200, 503],
  'bad-key': [401],
  'bad-id': [400],
  foreign: [404, 503],
};

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface IssueInfo {
  at: number;
  expireTime: number;
}

/**
 * Checks every response of a window against what the simulator issued. A token is bad only if it was
 * already unusable when it was served: below the minimum TTL, unknown to PolyV, or replaced by a token the
 * broker had already handed out. PolyV (the simulator) invalidates a channel's previous token when it issues
 * a new one, so for the short time a refresh answer is on its way the previous token is served although
 * PolyV has replaced it; that gap is measured separately (`superseded`).
 */
export function auditWindow(driver: LoadDriver, allCalls: readonly SimCall[], o: AuditOptions): Audit {
  const r = driver.responses;
  const tokens = driver.tokens;

  // Per channel: PolyV's issues in order, and tokens by expireTime (the simulator sets expireTime = at + expireSeconds).
  const issuesByChannel = new Map<string, IssueInfo[]>();
  for (const c of issues(allCalls)) {
    if (c.channelId === undefined) continue;
    const list = issuesByChannel.get(c.channelId) ?? [];
    list.push({ at: c.at, expireTime: c.at + Number(c.params['expireSeconds'] ?? 1800) * 1000 });
    issuesByChannel.set(c.channelId, list);
  }
  for (const list of issuesByChannel.values()) list.sort((a, b) => a.at - b.at);

  // For each seen token: when PolyV issued its successor, and when a newer token first reached a consumer.
  const nextIssueAt: Array<number | undefined> = [];
  const issued: boolean[] = [];
  const knownNewerAt: number[] = [];
  const byChannel = new Map<string, number[]>();
  tokens.forEach((t, i) => {
    const list = issuesByChannel.get(t.channel) ?? [];
    const idx = list.findIndex((x) => x.expireTime === t.expireTime);
    issued[i] = idx >= 0;
    nextIssueAt[i] = idx >= 0 ? list.find((x) => x.at > list[idx]!.at)?.at : undefined;
    const same = byChannel.get(t.channel) ?? [];
    same.push(i);
    byChannel.set(t.channel, same);
  });
  for (const idxs of byChannel.values()) {
    idxs.sort((a, b) => tokens[a]!.expireTime - tokens[b]!.expireTime);
    let minFirstEnd = Infinity;
    for (let k = idxs.length - 1; k >= 0; k--) {
      const i = idxs[k]!;
      knownNewerAt[i] = minFirstEnd;
      minFirstEnd = Math.min(minFirstEnd, tokens[i]!.firstEnd);
    }
  }

  const byStatus: Record<string, number> = {};
  const latencies: number[] = [];
  const badSamples: string[] = [];
  const seenInWindow = new Set<number>();
  const supersededChannels = new Set<string>();
  let responses = 0;
  let tokenResponses = 0;
  let tokenReadsNot200 = 0;
  let belowMinTtl = 0;
  let unknownAtSim = 0;
  let notIssued = 0;
  let stale = 0;
  let staleMaxLagMs = 0;
  let superseded = 0;
  let supersededMaxLagMs = 0;
  let supersededBeyondGrace = 0;
  let unavailableWithValidToken = 0;
  let badResponses = 0;
  const bad = (what: string) => {
    badResponses += 1;
    if (badSamples.length < 10) badSamples.push(what);
  };

  for (let i = 0; i < r.length; i++) {
    const start = r.start[i]!;
    if (start < o.from || start >= o.to) continue;
    responses += 1;
    const status = r.status[i]!;
    const op = OPS[r.op[i]!]!;
    const code = r.code[i]!;
    byStatus[status] = (byStatus[status] ?? 0) + 1;
    if (op === 'get' && status !== 200) tokenReadsNot200 += 1;
    if (!ALLOWED_STATUS[op].includes(status)) bad(`${op} ${r.channel[i]} → ${status} ${code}`);
    else if (status === 503 && !NO_TOKEN_CODES.has(code)) bad(`${op} ${r.channel[i]} → 503 ${code}`);

    const ti = r.token[i]!;
    if (ti >= 0) {
      tokenResponses += 1;
      const t = tokens[ti]!;
      seenInWindow.add(ti);
      if (op === 'get') latencies.push(r.end[i]! - start);
      // The broker checked `expireTime - now >= minTtl` at some instant after `start`.
      if (t.expireTime - Math.floor(start) < o.minTtlMs) belowMinTtl += 1;
      const staleLag = start - knownNewerAt[ti]!;
      const supersededAt = nextIssueAt[ti];
      const whileRedisAway = o.redisAway !== undefined && start >= o.redisAway.from && start < o.redisAway.to;
      if (staleLag > STALE_GRACE_MS && !whileRedisAway) {
        stale += 1;
        staleMaxLagMs = Math.max(staleMaxLagMs, staleLag);
      } else if (supersededAt !== undefined && start > supersededAt) {
        superseded += 1;
        if (start - supersededAt > NORMAL_SUPERSEDED_GRACE_MS) supersededChannels.add(t.channel);
        supersededMaxLagMs = Math.max(supersededMaxLagMs, start - supersededAt);
        if (start - supersededAt > o.supersededGraceMs) supersededBeyondGrace += 1;
      }
    }
    const ci = r.candidate[i]!;
    if (status === 503 && ci >= 0) {
      const c = tokens[ci]!;
      const end = r.end[i]!;
      const supersededAt = nextIssueAt[ci];
      const stillCurrent = supersededAt === undefined || supersededAt > end;
      if (stillCurrent && c.expireTime - end >= o.minTtlMs + 1000) {
        unavailableWithValidToken += 1;
        if (badSamples.length < 10) badSamples.push(`503 ${code} on ${r.channel[i]} while the replica knew a token with ${Math.round((c.expireTime - end) / 1000)} s left`);
      }
    }
  }
  for (const ti of seenInWindow) {
    const t = tokens[ti]!;
    if (!issued[ti]) notIssued += 1;
    const reason = t.check?.reason ?? '';
    if (t.check !== undefined && !t.check.valid && (reason === 'unknown token' || reason.startsWith('issued for channel') || reason.startsWith('check failed'))) {
      unknownAtSim += 1;
    }
  }
  latencies.sort((a, b) => a - b);
  const windowSeconds = (o.to - o.from) / 1000;
  return {
    windowSeconds,
    responses,
    ratePerSec: Math.round(responses / windowSeconds),
    byStatus,
    tokenResponses,
    tokenReadsNot200,
    distinctTokens: seenInWindow.size,
    belowMinTtl,
    unknownAtSim,
    notIssued,
    stale,
    staleMaxLagMs: Math.round(staleMaxLagMs),
    superseded,
    supersededMaxLagMs: Math.round(supersededMaxLagMs),
    supersededBeyondGrace,
    supersededChannels: [...supersededChannels],
    unavailableWithValidToken,
    badResponses,
    badSamples,
    p50Ms: +percentile(latencies, 50).toFixed(2),
    p99Ms: +percentile(latencies, 99).toFixed(2),
    maxMs: +(latencies[latencies.length - 1] ?? 0).toFixed(2),
  };
}

/** The invariants every window must keep, as one object for one `expect(...).toEqual(...)`. */
export function invariants(a: Audit, options: { allowSuperseded?: boolean } = {}): Record<string, number> {
  return {
    belowMinTtl: a.belowMinTtl,
    unknownAtSim: a.unknownAtSim,
    notIssued: a.notIssued,
    stale: a.stale,
    supersededBeyondGrace: options.allowSuperseded === true ? 0 : a.supersededBeyondGrace,
    unavailableWithValidToken: a.unavailableWithValidToken,
    badResponses: a.badResponses,
  };
}

export const ZERO_VIOLATIONS = {
  belowMinTtl: 0,
  unknownAtSim: 0,
  notIssued: 0,
  stale: 0,
  supersededBeyondGrace: 0,
  unavailableWithValidToken: 0,
  badResponses: 0,
};

/** One line of figures for the report. */
export function describe(name: string, a: Audit): string {
  const statuses = Object.entries(a.byStatus).map(([s, n]) => `${s}:${n}`).join(' ');
  return (
    `${name}: ${a.responses} responses in ${a.windowSeconds.toFixed(1)} s (${a.ratePerSec}/s) [${statuses}], ` +
    `${a.tokenResponses} tokens (${a.distinctTokens} distinct), read p50 ${a.p50Ms} ms p99 ${a.p99Ms} ms max ${a.maxMs} ms, ` +
    `superseded-in-flight ${a.superseded} (max ${a.supersededMaxLagMs} ms), stale ${a.stale}, below-min-TTL ${a.belowMinTtl}` +
    (a.badSamples.length > 0 ? `\n    samples: ${a.badSamples.join(' | ')}` : '')
  );
}
