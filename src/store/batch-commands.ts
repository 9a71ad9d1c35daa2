import type { RedisClient } from './redis-scripts.js';

/** One single-key command (a read, or an idempotent write): its name, its only key, and its other arguments. */
export type SingleKeyCommand = readonly [command: string, key: string, ...args: Array<string | number>];

/**
 * Runs many single-key commands (reads, or idempotent writes such as recorded reads) in one round trip and returns each reply, or null where Redis refused that one
 * command. A connection failure rejects the whole batch.
 *
 * On one Redis this is a pipeline. On a Cluster, ioredis refuses a pipeline whose keys span hash slots (and
 * different channels' keys do), so the commands are sent all at once, each to the node serving its key's
 * slot: still one round trip per node, never one per key in a row.
 */
export async function batchCommands(redis: RedisClient, commands: readonly SingleKeyCommand[]): Promise<unknown[]> {
  if (commands.length === 0) return [];
  if (redis.isCluster) {
    return Promise.all(
      commands.map(([command, ...args]) =>
        redis.call(command, args).catch((err: unknown) => {
          if (err instanceof Error && err.name === 'ReplyError') return null;
          throw err;
        }),
      ),
    );
  }
  const results = (await redis.pipeline(commands.map((c) => [...c])).exec()) ?? [];
  return results.map(([err, value]) => (err === null ? value : null));
}
