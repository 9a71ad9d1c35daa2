import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startRedisServer } from '../../src/infra/redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/**
 * One real Redis for the whole run: REDIS_URL if set; else a testcontainers Redis where a container engine
 * is reachable; else a redis-server process on a free port (this machine and CI have no engine).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env['REDIS_URL'] !== undefined && process.env['REDIS_URL'] !== '') {
    project.provide('redisUrl', process.env['REDIS_URL']);
    return async () => undefined;
  }
  try {
    const { RedisContainer } = await import('@testcontainers/redis');
    const container = await new RedisContainer('redis:7-alpine').start();
    project.provide('redisUrl', container.getConnectionUrl());
    return async () => {
      await container.stop();
    };
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    process.stderr.write(`[test setup] no container runtime (${reason}); starting a local redis-server\n`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'ptb-test-redis-'));
  const server = await startRedisServer({ dir, appendOnly: false });
  project.provide('redisUrl', server.url);
  return async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
