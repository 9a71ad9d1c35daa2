import { Queue, type ConnectionOptions } from 'bullmq';
import type { Logger } from '../lib/logger.js';
import { closeOrDrop } from '../lib/settle-within.js';
import { guardRedis } from '../store/redis-unavailable.js';
import type { PoolRefillScheduler } from '../service/watch-url-service.js';

/**
 * The queue of due refreshes (key schema v2). Key schema v1 kept one long-lived delayed job per warm channel in
 * the queue `refresh`; a v1 worker would take any job of its queue for one of its own, so v2 uses another.
 */
export const REFRESH_QUEUE = 'warm-refresh';
/** Key schema v1's queue: read only to remove the jobs of migrated channels. */
export const V1_REFRESH_QUEUE = 'refresh';
export const REFRESH_JOB = 'refresh';
export const RECONCILE_JOB = 'reconcile';
export const POOL_REFILL_JOB = 'watch-url-pool';

export interface RefreshJobData {
  appId: string;
  channelId: string;
}

/** At most one pending watch-URL pool refill per channel. */
export function poolRefillJobId(appId: string, channelId: string): string {
  return `pool-${appId}-${channelId}`;
}

/** The id of a channel's refresh job: at most one queued or running per channel. */
export function refreshJobId(appId: string, channelId: string): string {
  return `r-${appId}-${channelId}`;
}

/** The id key schema v1 gave a warm channel's long-lived delayed job (in V1_REFRESH_QUEUE). */
export function v1RefreshJobId(appId: string, channelId: string): string {
  return `refresh-${appId}-${channelId}`;
}

/**
 * The BullMQ side of refreshing: a job per refresh that is due, queued by the worker's sweep of the warm
 * set (a sorted set by due time) and removed when it ends, so a warm channel costs BullMQ nothing between its
 * refreshes. Job data holds IDs only, never a secret or a token.
 */
export class RefreshQueue implements PoolRefillScheduler {
  readonly queue: Queue<RefreshJobData>;
  private readonly logger: Logger;
  private readonly options: { connection: ConnectionOptions; prefix: string };
  /** Key schema v1's queue, opened only when there is something to migrate. */
  private v1Queue: Queue | undefined;

  constructor(options: { connection: ConnectionOptions; prefix: string; logger: Logger }) {
    this.options = options;
    this.queue = new Queue<RefreshJobData>(REFRESH_QUEUE, {
      connection: options.connection,
      prefix: options.prefix,
      defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
    });
    this.queue.on('error', (err) => options.logger.warn({ err: err.message }, 'refresh queue connection error'));
    this.logger = options.logger;
  }

  /** Queues a refresh job for each claimed channel; a job still queued for a channel makes its add a no-op. */
  async dispatch(appId: string, channelIds: readonly string[]): Promise<void> {
    if (channelIds.length === 0) return;
    await guardRedis(
      this.queue.addBulk(channelIds.map((channelId) => ({ name: REFRESH_JOB, data: { appId, channelId }, opts: { jobId: refreshJobId(appId, channelId) } }))),
    );
  }

  /**
   * Removes the long-lived jobs key schema v1 kept for these channels (a job a v1 worker is running stays: it
   * ends by itself, the channel no longer being in v1's warm set).
   */
  async removeV1Jobs(appId: string, channelIds: readonly string[]): Promise<void> {
    if (channelIds.length === 0) return;
    this.v1Queue ??= new Queue(V1_REFRESH_QUEUE, { connection: this.options.connection, prefix: this.options.prefix });
    const queue = this.v1Queue;
    await guardRedis(Promise.all(channelIds.map((ch) => queue.remove(v1RefreshJobId(appId, ch)))));
  }

  /** The state of the channel's refresh job, if one is queued or running ('missing' when none). */
  async jobState(appId: string, channelId: string): Promise<string> {
    const job = await guardRedis(this.queue.getJob(refreshJobId(appId, channelId)));
    return job === undefined ? 'missing' : await job.getState();
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
    const v1Queue = this.v1Queue;
    if (v1Queue !== undefined) await closeOrDrop("key schema v1's refresh queue", () => v1Queue.close(), () => v1Queue.disconnect(), graceMs, this.logger);
    await closeOrDrop('the refresh queue', () => this.queue.close(), () => this.queue.disconnect(), graceMs, this.logger);
  }
}
