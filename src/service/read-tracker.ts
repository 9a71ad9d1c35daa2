import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { TokenStore } from '../store/token-store.js';

/** Longest a replica keeps reads in memory before writing them to Redis. */
export const READ_FLUSH_MAX_MS = 5000;
/** Longest a replica waits before writing again that a channel it keeps reading was read. */
export const READ_REWRITE_MAX_MS = 300_000;

/** How reads are noted and written, derived from the idle time so time-compressed tests follow it. */
export interface ReadTrackingPolicy {
  /** Reads are written to Redis at most this long after they happen (a flush every `flushMs`). */
  readonly flushMs: number;
  /** A channel read again and again is written at most once per `rewriteMs` (per replica). */
  readonly rewriteMs: number;
  /**
   * Added to the idle time before a channel leaves: covers a replica that died with reads not yet written
   * (at most one flush interval of them) and one more flush in flight.
   */
  readonly graceMs: number;
}

const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, value));

/** Flush every 5 s (or a twentieth of the idle time); rewrite a busy channel every 5 min (or a sixtieth). */
export function readTrackingPolicy(idleMs: number): ReadTrackingPolicy {
  const flushMs = idleMs === 0 ? READ_FLUSH_MAX_MS : clamp(Math.floor(idleMs / 20), 50, READ_FLUSH_MAX_MS);
  const rewriteMs = idleMs === 0 ? READ_REWRITE_MAX_MS : clamp(Math.floor(idleMs / 60), flushMs, READ_REWRITE_MAX_MS);
  return { flushMs, rewriteMs, graceMs: 2 * flushMs };
}

interface Noted {
  /** Read since the last write. */
  dirty: boolean;
  /** Clock time of this replica's last write for the channel (0: never). */
  writtenAt: number;
}

export interface ReadTrackerOptions {
  store: TokenStore;
  clock: Clock;
  logger: Logger;
  policy: ReadTrackingPolicy;
}

type ChannelSource = () => Iterable<{ readonly appId: string; readonly channelId: string }>;

/**
 * Notes which channels this replica served, in memory (the hot path sets a flag, no Redis round trip), and
 * writes them as each channel's `lastReadAt` in one batched write per flush. The time written is the flush's,
 * so a read is never dated earlier than it happened: a lost flush (a replica killed) makes a channel look idle
 * at most one flush interval early, which the policy's grace absorbs; everything else errs towards warm.
 */
export class ReadTracker {
  private readonly o: ReadTrackerOptions;
  private readonly byAccount = new Map<string, Map<string, Noted>>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly sources: ChannelSource[] = [];

  constructor(options: ReadTrackerOptions) {
    this.o = options;
  }

  /** Channels `source` lists at a flush count as read (the channels open token streams follow). */
  countAsRead(source: ChannelSource): void {
    this.sources.push(source);
  }

  /** A consumer read the channel's token (hit or miss). */
  note(appId: string, channelId: string): void {
    let channels = this.byAccount.get(appId);
    if (channels === undefined) {
      channels = new Map();
      this.byAccount.set(appId, channels);
    }
    const noted = channels.get(channelId);
    if (noted === undefined) channels.set(channelId, { dirty: true, writtenAt: 0 });
    else noted.dirty = true;
  }

  start(): void {
    const loop = () => {
      this.timer = setTimeout(() => {
        void this.flush().finally(() => {
          if (this.timer !== undefined) loop();
        });
      }, this.o.policy.flushMs);
      this.timer.unref();
    };
    loop();
  }

  /** Stops the loop after one last flush (reads of the last interval are not lost on a clean stop). */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flushing;
    await this.flush();
  }

  /** Writes the reads noted since the last flush; a failed write keeps them for the next. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async write(): Promise<void> {
    for (const source of this.sources) for (const { appId, channelId } of source()) this.note(appId, channelId);
    const now = this.o.clock.now();
    const { rewriteMs } = this.o.policy;
    const due: Array<{ appId: string; channelId: string; noted: Noted }> = [];
    for (const [appId, channels] of this.byAccount) {
      for (const [channelId, noted] of channels) {
        if (noted.dirty && now - noted.writtenAt >= rewriteMs) due.push({ appId, channelId, noted });
        else if (!noted.dirty && now - noted.writtenAt >= rewriteMs) channels.delete(channelId);
      }
      if (channels.size === 0) this.byAccount.delete(appId);
    }
    if (due.length === 0) return;
    try {
      await this.o.store.recordReads(due, now);
      for (const d of due) {
        d.noted.dirty = false;
        d.noted.writtenAt = now;
      }
    } catch (err) {
      this.o.logger.warn({ channels: due.length, err: (err as Error).message }, 'could not record channel reads; kept for the next flush');
    }
  }
}
