import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../src/infra/redis-server.js';
import { LogCapture, api, testConfig, useSimulator } from './support/harness.js';

const fx = useSimulator();
const dir = mkdtempSync(join(tmpdir(), 'ptb-shutdown-'));
let server: RedisServerHandle | undefined;
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('graceful shutdown', () => {
  it('when Redis has gone away, then stop() still ends within BROKER_SHUTDOWN_TIMEOUT_MS, without an unhandled error', async () => {
    server = await startRedisServer({ dir, appendOnly: false });
    const logs = new LogCapture('warn');
    const b = await fx.broker(
      testConfig(fx.sim.url, { REDIS_URL: server.url, BROKER_ROLE: 'all', BROKER_CHANNELS: '1000001', BROKER_SHUTDOWN_TIMEOUT_MS: '3000' }),
      { logger: logs.logger },
    );
    expect((await api(b.url, '/v1/channels/1000001/token')).status).toBe(200);
    await server.stop();
    const started = Date.now();
    await b.stop();
    const tookMs = Date.now() - started;
    expect(tookMs).toBeLessThan(3000);
    expect(logs.text).not.toMatch(/"level":(50|60)/);
  });
});
