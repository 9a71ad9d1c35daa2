import { BrokerError, errorFromRecord, failureRecord, isSharedFailure } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { FlightStore } from '../store/flight-store.js';

/** One refresh of one cached value, as a token kind describes it to the core. */
export interface Flight<T> {
  store: FlightStore<T>;
  /**
   * Tells apart callers of one value that want different things (a read, a report of one token, a forced
   * refresh): only callers with the same purpose share an in-process promise.
   */
  purpose: string;
  /** Whether `current` must be replaced. */
  needed(current: T | null): boolean;
  /** Calls PolyV and stores the new value; runs under the lock, at most once at a time across replicas. */
  fetch(current: T | null): Promise<T>;
  /** What the caller read an instant ago; it stands in for the first read (a cold miss saves a round trip). */
  justRead?: T | null | undefined;
  /** Answer channel_not_in_account from the channel's rejected mark (default true). */
  obeyRejected?: boolean | undefined;
}

export interface SingleFlightOptions {
  clock: Clock;
  logger: Logger;
  /** How long a fetch may hold the lock (longer than one PolyV call plus one re-signed retry). */
  lockTtlMs: number;
  /** How often a replica waiting for another's fetch looks again. */
  pollMs?: number | undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The one single-flight of every token kind: a fetch runs at most once at a time per value across all
 * replicas, and its outcome is shared. In-process callers with the same purpose share one promise; replicas
 * share a Redis lock (taken in the same round trip that reads the value and the channel's rejected mark),
 * and those that lose it wait for the winner's value, or its recorded failure, instead of calling PolyV
 * too. A recorded failure is rebuilt with the same code, so it is exactly as retryable as where it happened.
 */
export class SingleFlight {
  private readonly o: SingleFlightOptions;
  private readonly inFlight = new Map<string, Promise<unknown>>();

  constructor(options: SingleFlightOptions) {
    this.o = options;
  }

  /**
   * The value as stored if it is still good; otherwise the flight's (the read stands in for the flight's
   * first one). `fetched` says which.
   */
  async readOrRun<T>(flight: Omit<Flight<T>, 'justRead'>): Promise<{ value: T; fetched: boolean }> {
    const cached = await flight.store.read();
    if (cached !== null && !flight.needed(cached)) return { value: cached, fetched: false };
    return { value: await this.run({ ...flight, justRead: cached }), fetched: true };
  }

  run<T>(flight: Flight<T>): Promise<T> {
    const key = `${flight.store.lockKey}\n${flight.purpose}`;
    const existing = this.inFlight.get(key) as Promise<T> | undefined;
    if (existing !== undefined) return existing;
    const promise = this.acrossReplicas(flight).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return promise;
  }

  private async acrossReplicas<T>(flight: Flight<T>): Promise<T> {
    const { store } = flight;
    const needed = (value: T | null) => flight.needed(value);
    const startedAt = this.o.clock.now();
    const deadline = Date.now() + this.o.lockTtlMs + 1000;
    let known = flight.justRead;

    for (;;) {
      const current = known !== undefined ? known : await store.read();
      known = undefined;
      if (current !== null && !needed(current)) return current;

      const { rejected, owner, current: again } = await store.lockAndRead(this.o.lockTtlMs);
      if (rejected !== null && flight.obeyRejected !== false) {
        if (owner !== null) this.release(store, owner);
        throw new BrokerError('channel_not_in_account', `channel ${store.channelId} does not belong to this PolyV account (${rejected})`);
      }
      if (owner !== null) {
        try {
          if (again !== null && !needed(again)) return again;
          return await this.fetch(flight, again);
        } finally {
          this.release(store, owner);
        }
      }

      // Another replica is fetching: wait for its result instead of calling PolyV too.
      while ((await store.isLocked()) && Date.now() < deadline) await sleep(this.o.pollMs ?? 20);
      const after = await store.read();
      if (after !== null && !needed(after)) return after;
      const failure = await store.readFailure();
      // A refusal that depended on who asked (quota, budget share) is not ours: the next round tries for us.
      if (failure !== null && failure.at >= startedAt && isSharedFailure(failure.code)) throw errorFromRecord(failure);
      if (Date.now() >= deadline) {
        throw new BrokerError('upstream_unavailable', `timed out waiting for a refresh in progress (channel ${store.channelId})`, {
          retryAfterMs: 1000,
        });
      }
    }
  }

  /** Runs the fetch; a failure is recorded for the replicas waiting on the lock before it is thrown. */
  private async fetch<T>(flight: Flight<T>, current: T | null): Promise<T> {
    try {
      return await flight.fetch(current);
    } catch (err) {
      await flight.store.recordFailure(failureRecord(err, this.o.clock.now())).catch((recordErr: unknown) => {
        this.o.logger.warn({ channelId: flight.store.channelId, err: (recordErr as Error).message }, 'could not record a refresh failure');
      });
      throw err;
    }
  }

  /**
   * Released without waiting: the answer need not wait for it, and the next command for this value on this
   * connection is sent after it. Other replicas see the new value as soon as it is written.
   */
  private release<T>(store: FlightStore<T>, owner: string): void {
    store.releaseLock(owner).catch((err: unknown) => {
      this.o.logger.warn({ channelId: store.channelId, err: (err as Error).message }, 'releasing the refresh lock failed; it expires by itself');
    });
  }
}
