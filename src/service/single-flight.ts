import { BrokerError, ERROR_STATUS, type ErrorCode } from '../errors/broker-error.js';
import type { RedisClient } from '../store/redis-scripts.js';
import type { RedisLock } from '../store/redis-lock.js';

export interface SharedFetch<T> {
  /** The current value, or null. */
  read(): Promise<T | null>;
  /** Whether `current` must be replaced. */
  needed(current: T | null): boolean;
  /** Fetches and stores a new value; runs under the lock, at most once at a time across replicas. */
  fetch(current: T | null): Promise<T>;
}

export interface SingleFlightOptions {
  redis: RedisClient;
  lock: RedisLock;
  /** How long a fetch may hold the lock. */
  lockTtlMs: number;
  /** How often a waiting replica looks again. */
  pollMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const FAILURE_TTL_MS = 5000;

interface RecordedFailure {
  code: string;
  message: string;
  retryAfterMs?: number;
  at: number;
}

/**
 * Runs a fetch at most once at a time across all replicas and shares its outcome: in-process callers share
 * one promise; replicas share a Redis lock, and those that lose it wait for the winner's value, or its
 * recorded error, instead of calling PolyV too.
 */
export class SingleFlight {
  private readonly o: SingleFlightOptions;
  private readonly inFlight = new Map<string, Promise<unknown>>();

  constructor(options: SingleFlightOptions) {
    this.o = options;
  }

  /** `lockKey` names the resource; `failureKey` holds the winner's error for the waiters. */
  run<T>(lockKey: string, failureKey: string, op: SharedFetch<T>): Promise<T> {
    const existing = this.inFlight.get(lockKey) as Promise<T> | undefined;
    if (existing !== undefined) return existing;
    const flight = this.acrossReplicas(lockKey, failureKey, op).finally(() => this.inFlight.delete(lockKey));
    this.inFlight.set(lockKey, flight);
    return flight;
  }

  private async acrossReplicas<T>(lockKey: string, failureKey: string, op: SharedFetch<T>): Promise<T> {
    const started = Date.now();
    const deadline = started + this.o.lockTtlMs + 1000;
    for (;;) {
      const current = await op.read();
      if (current !== null && !op.needed(current)) return current;

      const owner = await this.o.lock.tryAcquire(lockKey, this.o.lockTtlMs);
      if (owner !== null) {
        try {
          const again = await op.read();
          if (again !== null && !op.needed(again)) return again;
          try {
            return await op.fetch(again);
          } catch (err) {
            await this.recordFailure(failureKey, err);
            throw err;
          }
        } finally {
          await this.o.lock.release(lockKey, owner);
        }
      }

      while ((await this.o.lock.isHeld(lockKey)) && Date.now() < deadline) await sleep(this.o.pollMs ?? 20);
      const after = await op.read();
      if (after !== null && !op.needed(after)) return after;
      const failure = await this.readFailure(failureKey);
      if (failure !== null && failure.at >= started) throw toError(failure);
      if (Date.now() >= deadline) {
        throw new BrokerError('upstream_unavailable', 'timed out waiting for a fetch in progress', {
          retryable: true,
          retryAfterMs: 1000,
        });
      }
    }
  }

  private async recordFailure(failureKey: string, err: unknown): Promise<void> {
    const failure: RecordedFailure = {
      code: err instanceof BrokerError ? err.code : 'internal_error',
      message: err instanceof BrokerError ? err.message : 'internal error',
      at: Date.now(),
      ...(err instanceof BrokerError && err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}),
    };
    await this.o.redis.set(failureKey, JSON.stringify(failure), 'PX', FAILURE_TTL_MS).catch(() => undefined);
  }

  private async readFailure(failureKey: string): Promise<RecordedFailure | null> {
    const raw = await this.o.redis.get(failureKey);
    if (raw === null) return null;
    try {
      return JSON.parse(raw) as RecordedFailure;
    } catch {
      return null;
    }
  }
}

function toError(f: RecordedFailure): BrokerError {
  const code: ErrorCode = Object.hasOwn(ERROR_STATUS, f.code) ? (f.code as ErrorCode) : 'upstream_unavailable';
  return new BrokerError(code, f.message, { retryable: code !== 'channel_not_in_account', retryAfterMs: f.retryAfterMs ?? 1000 });
}
