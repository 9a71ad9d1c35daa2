import { Queue, type ConnectionOptions } from 'bullmq';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { closeOrDrop } from '../lib/settle-within.js';
import type { RefreshScheduler } from '../service/warm-channels.js';
import { guardRedis } from '../store/redis-unavailable.js';
import type { PoolRefillScheduler } from '../service/watch-url-service.js';

export const REFRESH_QUEUE = 'refresh';
export const REFRESH_JOB = 'refresh';
export const RECONCILE_JOB = 'reconcile';
export const POOL_REFILL_JOB = 'watch-url-pool';

export interface RefreshJobData {
  appId: string;
  channelId: string;
  /** Consecutive failed attempts, for the backoff. */
  failures?: number;
}

/** At most one pending watch-URL pool refill per channel. */
export function poolRefillJobId(appId: string, channelId: string): string {
  return `pool-${appId}-${channelId}`;
}

/** One job per warm channel, deduplicated by this id (BullMQ forbids ':' in custom ids). */
export function refreshJobId(appId: string, channelId: string): string {
  return `refresh-${appId}-${channelId}`;
}

/**
 * The BullMQ side of scheduling: exactly one delayed job per warm channel, moved to the new due time when a
 * fresh token arrives. Job data holds IDs only, never a secret or a token.
 */
export class RefreshQueue implements RefreshScheduler, PoolRefillScheduler {
  readonly queue: Queue<RefreshJobData>;
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(options: { connection: ConnectionOptions; prefix: string; clock: Clock; logger: Logger }) {
    this.queue = new Queue<RefreshJobData>(REFRESH_QUEUE, {
      connection: options.connection,
      prefix: options.prefix,
      defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
    });
    this.queue.on('error', (err) => options.logger.warn({ err: err.message }, 'refresh queue connection error'));
    this.clock = options.clock;
    this.logger = options.logger;
  }

  /** Milliseconds from now until `dueAt` on the injected clock (BullMQ itself runs on wall time). */
  delayUntil(dueAt: number): number {
    return Math.max(0, dueAt - this.clock.now());
  }

  /** Moves (or creates) the channel's job; a failure to reach Redis is the store's RedisUnavailableError. */
  schedule(appId: string, channelId: string, dueAt: number, options: { firstToken?: boolean } = {}): Promise<void> {
    return guardRedis(this.moveJob(appId, channelId, dueAt, options));
  }

  private async moveJob(appId: string, channelId: string, dueAt: number, options: { firstToken?: boolean }): Promise<void> {
    const jobId = refreshJobId(appId, channelId);
    const delay = this.delayUntil(dueAt);
    if (options.firstToken === true) {
      // One round trip on a cold miss: BullMQ leaves an existing job with this id as it is (see the interface).
      await this.queue.add(REFRESH_JOB, { appId, channelId }, { jobId, delay });
      return;
    }
    const job = await this.queue.getJob(jobId);
    if (job === undefined) {
      await this.queue.add(REFRESH_JOB, { appId, channelId }, { jobId, delay });
      return;
    }
    const state = await job.getState();
    if (state === 'delayed') {
      try {
        await job.changeDelay(delay);
      } catch (err) {
        // It left the delayed state meanwhile (a worker took it): that run reschedules itself.
        this.logger.debug({ channelId, err: (err as Error).message }, 'refresh job changed state while rescheduling');
      }
    } else if (state === 'completed' || state === 'failed' || state === 'unknown') {
      await job.remove().catch(() => undefined);
      await this.queue.add(REFRESH_JOB, { appId, channelId }, { jobId, delay });
    }
    // waiting / active / prioritized: it runs soon and computes its own next time.
  }

  async cancel(appId: string, channelId: string): Promise<void> {
    const job = await guardRedis(this.queue.getJob(refreshJobId(appId, channelId)));
    // An active job cannot be removed; it completes by itself once it sees the channel is no longer warm.
    if (job !== undefined) await job.remove().catch(() => undefined);
  }

  /** Whether a refresh job exists for the channel (in any state). */
  async has(appId: string, channelId: string): Promise<boolean> {
    return (await this.queue.getJob(refreshJobId(appId, channelId))) !== undefined;
  }

  /** Queues a watch-URL pool top-up; a refill already waiting makes this a no-op (job id dedupe). */
  async requestPoolRefill(appId: string, channelId: string): Promise<void> {
    await this.queue.add(POOL_REFILL_JOB, { appId, channelId }, { jobId: poolRefillJobId(appId, channelId) });
  }

  /** Keeps the repeatable reconcile job in place; idempotent, so every worker may call it often. */
  async ensureReconcileJob(everyMs: number): Promise<void> {
    await this.queue.upsertJobScheduler(
      RECONCILE_JOB,
      { every: everyMs },
      { name: RECONCILE_JOB, data: { appId: '', channelId: '' }, opts: { removeOnComplete: true, removeOnFail: 20 } },
    );
  }

  /** Closes the queue's connection, or drops it after `graceMs` (Redis unreachable: close() would never end). */
  async close(graceMs: number): Promise<void> {
    await closeOrDrop('the refresh queue', () => this.queue.close(), () => this.queue.disconnect(), graceMs, this.logger);
  }
}
