import { Worker, type ConnectionOptions, type Job } from 'bullmq';
import { closeOrDrop } from '../lib/settle-within.js';
import type { WatchUrlService } from '../service/watch-url-service.js';
import type { MigrateV1Deps } from './migrate-v1.js';
import { reconcile } from './reconcile.js';
import { processRefresh } from './refresh-processor.js';
import { POOL_REFILL_JOB, RECONCILE_JOB, REFRESH_QUEUE, type RefreshJobData } from './refresh-queue.js';

/**
 * How fast a job of a dead worker (SIGKILL, OOM, lost host) is handed to another: its lock lapses after
 * JOB_LOCK_MS (a live worker renews it every half of that), and every worker looks for lapsed locks every
 * STALLED_CHECK_MS, so the job runs again within their sum (15 s; BullMQ's defaults make it up to 60 s).
 * Running a refresh job twice is harmless (refresh lock, compare, versioned write), so a job is never failed
 * for having stalled (and a failed one is removed: its channel is claimed again when its lease ends).
 */
export const JOB_LOCK_MS = 10_000;
export const STALLED_CHECK_MS = 5_000;
const MAX_STALLED_COUNT = Number.MAX_SAFE_INTEGER;
/** How often each worker looks for warm channels whose refresh is due (the largest lateness of a refresh). */
export const SWEEP_INTERVAL_MS = 250;
/** A claimed channel comes due again after this if its job never ran (its worker died between claim and queue). */
export const SWEEP_LEASE_MS = 15_000;
/** Most channels claimed in one step; a sweep repeats the step while it gets this many. */
export const SWEEP_BATCH = 500;

/** What the worker needs beyond what the migration (and reconcile, which runs it) needs. */
export interface RefreshWorkerOptions extends MigrateV1Deps {
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  reconcileEveryMs: number;
  /** Present when watch-URL pools are on (BROKER_WATCH_URL_POOL > 0). */
  watchUrls?: WatchUrlService | undefined;
}

/**
 * The BullMQ worker: sweeps the warm set for due refreshes (claiming them, so each is queued once by one
 * worker), runs the refresh jobs (each ends by putting its channel's next refresh time in the warm set) and
 * the repeatable reconcile job. Stalled jobs of a killed worker are picked up again by BullMQ's stalled-job
 * check; a claimed channel whose job was never queued comes due again when its lease ends.
 */
export class RefreshWorker {
  private worker: Worker<RefreshJobData> | undefined;
  private keeper: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private sweepFailedAt = 0;
  private readonly o: RefreshWorkerOptions;

  constructor(options: RefreshWorkerOptions) {
    this.o = options;
  }

  get running(): boolean {
    return this.worker?.isRunning() ?? false;
  }

  async start(): Promise<void> {
    const { logger } = this.o;
    this.worker = new Worker<RefreshJobData>(REFRESH_QUEUE, (job) => this.process(job), {
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
    this.scheduleSweep(0);
  }

  private scheduleSweep(delayMs: number): void {
    this.sweeper = setTimeout(() => {
      this.sweeping = this.sweep().finally(() => {
        this.sweeping = undefined;
        if (this.sweeper !== undefined) this.scheduleSweep(SWEEP_INTERVAL_MS);
      });
    }, delayMs);
    this.sweeper.unref();
  }

  /** Claims every due refresh of every account and queues a job for each. */
  async sweep(): Promise<void> {
    const { accounts, warmSet, queue, clock, logger } = this.o;
    try {
      for (const account of accounts.all) {
        for (;;) {
          const claimed = await warmSet.claimDue(account.appId, clock.now(), SWEEP_LEASE_MS, SWEEP_BATCH);
          await queue.dispatch(account.appId, claimed);
          if (claimed.length < SWEEP_BATCH) break;
        }
      }
    } catch (err) {
      // Redis away: logged once a minute, tried again at the next sweep.
      if (Date.now() - this.sweepFailedAt >= 60_000) logger.warn({ err: (err as Error).message }, 'could not sweep the warm set for due refreshes');
      this.sweepFailedAt = Date.now();
    }
  }

  /** Stops taking jobs and waits for the ones in progress to finish. */
  /**
   * Lets running jobs finish, for at most `graceMs`: while Redis is unreachable BullMQ's close() never ends,
   * so after that the worker's connections are dropped (a job cut short runs again elsewhere: stalled-job
   * recovery).
   */
  async stop(graceMs: number): Promise<void> {
    if (this.keeper !== undefined) clearInterval(this.keeper);
    if (this.sweeper !== undefined) clearTimeout(this.sweeper);
    this.sweeper = undefined;
    await this.sweeping;
    const worker = this.worker;
    if (worker === undefined) return;
    await closeOrDrop('the refresh worker', () => worker.close(), () => worker.disconnect(), graceMs, this.o.logger);
  }

  async runReconcile(): Promise<void> {
    const result = await reconcile(this.o);
    if (result.recreated > 0 || result.pinned > 0) this.o.logger.info(result, 'reconcile pinned configured channels or put lost ones back in the schedule');
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
    if ((await this.o.warmSet.entry(account.appId, data.channelId)) === null) return;
    const minted = await this.o.watchUrls.refill(account, data.channelId);
    if (minted > 0) this.o.logger.info({ channelId: data.channelId, minted }, 'watch URL pool refilled');
  }

  private async process(job: Job<RefreshJobData>): Promise<void> {
    if (job.name === RECONCILE_JOB) {
      await this.runReconcile();
      return;
    }
    if (job.name === POOL_REFILL_JOB) {
      await this.refillPool(job.data);
      return;
    }
    const { appId, channelId } = job.data;
    const log = this.o.logger.child({ jobId: job.id, channelId });
    const decision = await processRefresh({ ...this.o, logger: log }, job.data);
    if (decision.kind === 'done') {
      log.info({ reason: decision.reason }, 'channel refresh ended');
      return;
    }
    await this.o.service.reschedule(appId, channelId, decision.at);
  }
}
