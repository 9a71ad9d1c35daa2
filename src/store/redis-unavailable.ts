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
    throw typed(err);
  }
}

function typed(err: unknown): unknown {
  return isRedisUnavailableError(err) ? new RedisUnavailableError(err) : err;
}

/**
 * The replies of a pipeline or MULTI, in order; a command's own error is thrown as guardRedis would (a pipeline
 * whose commands time out resolves with their errors instead of rejecting).
 */
export function repliesOf(results: Array<[error: Error | null, reply: unknown]> | null): unknown[] {
  return (results ?? []).map(([err, reply]) => {
    if (err !== null) throw typed(err);
    return reply;
  });
}
