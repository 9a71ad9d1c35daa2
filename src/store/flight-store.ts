import { randomUUID } from 'node:crypto';
import type { ChainableCommander } from 'ioredis';
import type { FailureRecord } from '../errors/broker-error.js';
import { guardRedis, repliesOf } from './redis-unavailable.js';

/** The first step of a refresh as one round trip reads it (see FlightStore.lockAndRead). */
export interface LockedRead<T> {
  /** PolyV's message if it called the channel illegal lately, else null. */
  readonly rejected: string | null;
  /** The lock's owner value when this caller took it; null when someone else holds it. */
  readonly owner: string | null;
  /** The value as it is once the lock is held (or as it was, when another holds it). */
  readonly current: T | null;
}

/**
 * The store-side half of the refresh core: one cached value (a channel token, a viewer token, a common
 * token), its single-flight lock and the record of its last failure, for every token kind alike. Each
 * method is one Redis round trip; every key of one value shares the channel's hash slot.
 */
export interface FlightStore<T> {
  /** Names the value, for the in-process dedupe of concurrent callers. */
  readonly lockKey: string;
  readonly channelId: string;
  read(): Promise<T | null>;
  /** The channel's rejected mark, the lock (taken if free, for `ttlMs`) and the value, in one round trip. */
  lockAndRead(ttlMs: number): Promise<LockedRead<T>>;
  isLocked(): Promise<boolean>;
  /** Compare-and-delete: a lock that expired and was taken by someone else is left alone. */
  releaseLock(owner: string): Promise<void>;
  recordFailure(failure: FailureRecord): Promise<void>;
  readFailure(): Promise<FailureRecord | null>;
}

/**
 * The round trip behind every FlightStore.lockAndRead: the channel's rejected mark (GET), the lock (SET NX PX
 * with a fresh owner value) and the value (the command `read` appends), pipelined; every key carries the
 * channel's hash tag, so on a Cluster too it is one request to one node.
 */
export async function lockAndReadRaw(
  pipeline: ChainableCommander,
  keys: { rejected: string; lock: string },
  ttlMs: number,
  read: (pipeline: ChainableCommander) => ChainableCommander,
): Promise<{ rejected: string | null; owner: string | null; value: unknown }> {
  const owner = randomUUID();
  const replies = await guardRedis(read(pipeline.get(keys.rejected).set(keys.lock, owner, 'PX', ttlMs, 'NX')).exec());
  const [rejected, locked, value] = repliesOf(replies);
  return { rejected: typeof rejected === 'string' ? rejected : null, owner: locked === 'OK' ? owner : null, value };
}
