import { RedisUnavailableError } from '../errors/broker-error.js';
import { isRedisUnavailableError } from './redis-connection.js';

/**
 * Passes a Redis operation's result through, and turns a failure to reach Redis into the one typed
 * RedisUnavailableError (503 `not_ready`), so no layer above the store matches ioredis' error messages.
 */
export async function guardRedis<T>(operation: Promise<T>): Promise<T> {
  try {
    return await operation;
  } catch (err) {
    throw isRedisUnavailableError(err) ? new RedisUnavailableError(err) : err;
  }
}
