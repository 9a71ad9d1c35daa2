import { randomUUID } from 'node:crypto';
import { defineScripts, type RedisClient } from './redis-scripts.js';

/** A token-valued lock: SET NX PX to take it, compare-and-delete to release it (never someone else's). */
export class RedisLock {
  private readonly redis: RedisClient;

  constructor(redis: RedisClient) {
    this.redis = defineScripts(redis);
  }

  /** Returns the owner value to release with, or null when someone holds it. */
  async tryAcquire(key: string, ttlMs: number): Promise<string | null> {
    const owner = randomUUID();
    return (await this.redis.set(key, owner, 'PX', ttlMs, 'NX')) === 'OK' ? owner : null;
  }

  async isHeld(key: string): Promise<boolean> {
    return (await this.redis.exists(key)) === 1;
  }

  async release(key: string, owner: string): Promise<void> {
    await this.redis.ptbReleaseLock(key, owner);
  }
}
