import { DelayedError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { closeOrDrop } from '../lib/settle-within.js';
import type { AccountRegistry } from '../service/account-registry.js';
import type { ChannelTokenService } from '../service/channel-token-service.js';
import type { WatchUrlService } from '../service/watch-url-service.js';
import type { TokenStore } from '../store/token-store.js';
import { reconcile } from './reconcile.js';
import { processRefresh } from './refresh-processor.js';
import { POOL_REFILL_JOB, RECONCILE_JOB, REFRESH_QUEUE, type RefreshJobData, type RefreshQueue } from './refresh-queue.js';

/**
 * How fast a job of a dead worker (SIGKILL, OOM, lost host) is handed to another: its lock lapses after
 * JOB_LOCK_MS (a live worker renews it every half of that), and every worker looks for lapsed locks every
 * STALLED_CHECK_MS, so the job runs again within their sum (15 s; BullMQ's defaults make it up to 60 s).
 * Running a refresh job twice is harmless (refresh lock, compare, versioned write), so a job is never failed
 * for having stalled: a channel's job lives as long as the channel is warm, so its stall count only grows,
 * and BullMQ's default (fail on the second stall) would drop the job and leave the channel without refreshes
 * until the next reconcile re-created it.
 */
export const JOB_LOCK_MS = 10_000;
export const STALLED_CHECK_MS = 5_000;
const MAX_STALLED_COUNT = Number.MAX_SAFE_INTEGER;

export interface RefreshWorkerOptions {
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  reconcileEveryMs: number;
  accounts: AccountRegistry;
  service: ChannelTokenService;
  store: TokenStore;
  queue: RefreshQueue;
  clock: Clock;
  logger: Logger;
  /** Present when watch-URL pools are on (BROKER_WATCH_URL_POOL > 0). */
  watchUrls?: WatchUrlService | undefined;
}

/**
 * The BullMQ worker: runs refresh jobs (each moves itself to its next due time, so a warm channel keeps
 * exactly one job) and the repeatable reconcile job. Stalled jobs of a killed worker are picked up again
 * by BullMQ's stalled-job check.
 */
export class RefreshWorker {
  private worker: Worker<RefreshJobData> | undefined;
  private keeper: NodeJS.Timeout | undefined;
  private readonly o: RefreshWorkerOptions;

  constructor(options: RefreshWorkerOptions) {
    this.o = options;
  }

  get running(): boolean {
    return this.worker?.isRunning() ?? false;
  }

  async start(): Promise<void> {
    const { logger } = this.o;
    this.worker = new Worker<RefreshJobData>(REFRESH_QUEUE, (job, token) => this.process(job, token), {
      connection: this.o.connection,
      prefix: this.o.prefix,
      concurrency: this.o.concurrency,
      lockDuration: JOB_LOCK_MS,
      stalledInterval: STALLED_CHECK_MS,
      maxStalledCount: MAX_STALLED_COUNT,
      removeOnComplete: { count: 0 },
      removeOnFail: { count: 100 },
    });
    this.worker.on('error', (err) => logger.warn({ err: err.message }, 'refresh worker connection error'));
    this.worker.on('failed', (job, err) => logger.error({ jobId: job?.id, err: err.message }, 'refresh job failed'));
    await this.worker.waitUntilReady();
    await this.keepReconcileScheduled();
    await this.runReconcile();
    // If Redis loses its data the job scheduler goes with it: put it back regularly.
    this.keeper = setInterval(() => void this.keepReconcileScheduled(), this.o.reconcileEveryMs);
    this.keeper.unref();
  }

  /** Stops taking jobs and waits for the ones in progress to finish. */
  /**
   * Lets running jobs finish, for at most `graceMs`: while Redis is unreachable BullMQ's close() never ends,
   * so after that the worker's connections are dropped (a job cut short runs again elsewhere: stalled-job
   * recovery).
   */
  async stop(graceMs: number): Promise<void> {
    if (this.keeper !== undefined) clearInterval(this.keeper);
    const worker = this.worker;
    if (worker === undefined) return;
    await closeOrDrop('the refresh worker', () => worker.close(), () => worker.disconnect(), graceMs, this.o.logger);
  }

  async runReconcile(): Promise<void> {
    const result = await reconcile(this.o);
    if (result.recreated > 0) this.o.logger.info(result, 'reconcile re-created refresh jobs');
  }

  private async keepReconcileScheduled(): Promise<void> {
    try {
      await this.o.queue.ensureReconcileJob(this.o.reconcileEveryMs);
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, 'could not ensure the reconcile job');
    }
  }

  /** Tops up a warm channel's watch-URL pool; channels that are not warm get no pool. */
  private async refillPool(data: RefreshJobData): Promise<void> {
    const account = this.o.accounts.byAppId(data.appId);
    if (this.o.watchUrls === undefined || account === undefined) return;
    if (!(await this.o.store.isWarm(account.appId, data.channelId))) return;
    const minted = await this.o.watchUrls.refill(account, data.channelId);
    if (minted > 0) this.o.logger.info({ channelId: data.channelId, minted }, 'watch URL pool refilled');
  }

  private async process(job: Job<RefreshJobData>, token: string | undefined): Promise<void> {
    if (job.name === RECONCILE_JOB) {
      await this.runReconcile();
      return;
    }
    if (job.name === POOL_REFILL_JOB) {
      await this.refillPool(job.data);
      return;
    }
    const { store, clock, logger } = this.o;
    const log = logger.child({ jobId: job.id, channelId: job.data.channelId });
    const decision = await processRefresh({ ...this.o, logger: log }, job.data);
    if (decision.kind === 'done') {
      log.info({ reason: decision.reason }, 'refresh job finished');
      return;
    }
    if (decision.failures !== (job.data.failures ?? 0)) await job.updateData({ ...job.data, failures: decision.failures });
    await store.setNextRefresh(job.data.appId, job.data.channelId, decision.at);
    await job.moveToDelayed(Date.now() + Math.max(0, decision.at - clock.now()), token);
    throw new DelayedError();
  }
}
