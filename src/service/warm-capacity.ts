import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { WarmSetStore } from '../store/warm-set-store.js';
import { refreshJitterMs, type TimingPolicy } from './refresh-timing.js';

/** Share of the fleet-wide limit the warm set's scheduled refreshes may reach before on-call hears of it. */
export const CAPACITY_WARN_RATIO = 0.8;
/** How long a replica trusts its count of the warm set before counting again. */
export const CAPACITY_RECOUNT_MS = 5000;

export interface CapacityFigures {
  /** Scheduled PolyV calls per warm channel and hour at the configured token lifetime. */
  readonly callsPerChannelHour: number;
  /** The fleet-wide PolyV limit, per hour. */
  readonly limitPerHour: number;
  /** Warm channels whose scheduled refreshes alone reach the limit. */
  readonly capacityChannels: number;
}

/**
 * The scheduled call rate of one warm channel: one call per refresh cycle, which lasts the token lifetime
 * minus the refresh lead and, on average, half the jitter.
 */
export function capacityFigures(options: { expireSeconds: number; globalPer10s: number; timing: TimingPolicy }): CapacityFigures {
  const cycleMs = Math.max(1000, options.expireSeconds * 1000 - options.timing.refreshBeforeMs - refreshJitterMs(options.timing) / 2);
  const limitPerHour = options.globalPer10s * 360;
  return { callsPerChannelHour: 3_600_000 / cycleMs, limitPerHour, capacityChannels: Math.floor((limitPerHour * cycleMs) / 3_600_000) };
}

export interface WarmCapacityOptions {
  warmSet: WarmSetStore;
  appIds: readonly string[];
  figures: CapacityFigures;
  clock: Clock;
  logger: Logger;
}

/**
 * Whether the warm set has room for one more on-demand channel, from a count of the whole fleet's warm set
 * that each replica takes again every few seconds (between counts it adds the channels it admitted itself).
 * Replicas admitting at once may overshoot by what they admit in one interval; the fleet-wide limiter still
 * holds PolyV's limit then, and the alert fires at 80 %.
 */
export class WarmCapacity {
  readonly figures: CapacityFigures;
  private readonly o: WarmCapacityOptions;
  private warm = 0;
  private countedAt = Number.NEGATIVE_INFINITY;
  private counting: Promise<void> | undefined;
  private above = false;

  constructor(options: WarmCapacityOptions) {
    this.o = options;
    this.figures = options.figures;
  }

  /** Scheduled calls of the warm set as a share of the fleet-wide limit (0..1 and above). */
  utilization(warmChannels: number): number {
    return (warmChannels * this.figures.callsPerChannelHour) / this.figures.limitPerHour;
  }

  /** Whether one more channel fits; counts again when the last count is older than CAPACITY_RECOUNT_MS. */
  async hasRoom(): Promise<boolean> {
    if (this.o.clock.now() - this.countedAt >= CAPACITY_RECOUNT_MS) {
      this.counting ??= this.recount().then(
        () => undefined,
        () => undefined,
      ).finally(() => (this.counting = undefined));
      await this.counting;
    }
    return this.warm + 1 <= this.figures.capacityChannels;
  }

  /** This replica made a channel warm (counted until the next recount). */
  admitted(): void {
    this.warm += 1;
  }

  /** Counts the warm set now, and says so in the log when the scheduled rate crosses 80 % either way. */
  async recount(): Promise<number> {
    const counts = await Promise.all(this.o.appIds.map((appId) => this.o.warmSet.count(appId)));
    this.warm = counts.reduce((sum, c) => sum + c.total, 0);
    this.countedAt = this.o.clock.now();
    const ratio = this.utilization(this.warm);
    if (ratio > CAPACITY_WARN_RATIO !== this.above) {
      this.above = !this.above;
      const facts = { warmChannels: this.warm, capacityChannels: this.figures.capacityChannels, utilization: Number(ratio.toFixed(3)) };
      if (this.above) this.o.logger.warn(facts, 'scheduled refreshes of the warm set exceed 80 % of the fleet-wide PolyV limit');
      else this.o.logger.info(facts, 'scheduled refreshes of the warm set back under 80 % of the fleet-wide PolyV limit');
    }
    return this.warm;
  }
}
