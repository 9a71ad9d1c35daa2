import { metricSum, type ChildProc, type Fleet } from './fleet.js';

export interface Sample {
  readonly at: number;
  /** Resident memory per process name (bytes). */
  readonly rss: Record<string, number>;
  /** Event-loop lag p99 since the previous scrape, per API replica (seconds; prom-client's default metric). */
  readonly lagP99: Record<string, number>;
}

/** Samples every broker's RSS (from /proc) and the API replicas' event-loop lag (from /metrics) at an interval. */
export class Sampler {
  readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly fleet: Fleet,
    private readonly everyMs = 2000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.take(), this.everyMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  private async take(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const rss: Record<string, number> = {};
      for (const p of this.fleet.brokers) {
        const bytes = p.rssBytes();
        if (bytes !== undefined) rss[p.name] = bytes;
      }
      const lagP99: Record<string, number> = {};
      await Promise.all(
        this.fleet.apis.map(async (p: ChildProc) => {
          try {
            lagP99[p.name] = metricSum(await this.fleet.metrics(p, 1500), 'polyv_broker_nodejs_eventloop_lag_p99_seconds');
          } catch {
            // a slow scrape is itself visible in the consumers' latency
          }
        }),
      );
      this.samples.push({ at: Date.now(), rss, lagP99 });
    } finally {
      this.busy = false;
    }
  }

  /** Mean RSS of the first and the last third of the samples taken after `from`, per process (MB). */
  rssDrift(from: number): Array<{ name: string; firstMb: number; lastMb: number; driftPct: number }> {
    const taken = this.samples.filter((s) => s.at >= from);
    const third = Math.max(1, Math.floor(taken.length / 3));
    const mean = (xs: readonly Sample[], name: string) => xs.reduce((a, s) => a + (s.rss[name] ?? 0), 0) / xs.length / 1e6;
    return this.fleet.brokers.map((p) => {
      const firstMb = mean(taken.slice(0, third), p.name);
      const lastMb = mean(taken.slice(-third), p.name);
      return { name: p.name, firstMb: +firstMb.toFixed(1), lastMb: +lastMb.toFixed(1), driftPct: +(((lastMb - firstMb) / firstMb) * 100).toFixed(1) };
    });
  }

  /** Largest and median event-loop lag p99 over the samples after `from`, per API replica (ms). */
  lag(from: number): Array<{ name: string; maxP99Ms: number; medianP99Ms: number }> {
    const taken = this.samples.filter((s) => s.at >= from);
    return this.fleet.apis.map((p) => {
      const values = taken.map((s) => s.lagP99[p.name]).filter((v): v is number => v !== undefined).map((v) => v * 1000).sort((a, b) => a - b);
      return {
        name: p.name,
        maxP99Ms: +(values.at(-1) ?? 0).toFixed(1),
        medianP99Ms: +(values[Math.floor(values.length / 2)] ?? 0).toFixed(1),
      };
    });
  }
}
