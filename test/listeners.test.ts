import { describe, expect, it } from 'vitest';
import { localBaseUrl } from '../src/http/listen.js';
import { readinessCheck } from '../src/http/readiness-check.js';
import { api, testConfig, useSimulator, type TokenBody } from './support/harness.js';

const fx = useSimulator();

describe('the URLs the listeners report', () => {
  it('when the broker listens on HOST=::1, then start() returns a bracketed URL through which a consumer reads a token', async () => {
    const b = await fx.broker(testConfig(fx.sim.url, { HOST: '::1', BROKER_ROLE: 'api' }));
    expect(b.url).toMatch(/^http:\/\/\[::1\]:\d+$/);
    expect(new URL(b.url).hostname).toBe('[::1]');
    const cold = await api<TokenBody>(b.url, '/v1/channels/1000001/token');
    expect(cold.status).toBe(200);
    expect(fx.sim.checkToken('channel', '1000001', cold.body.channelToken)).toEqual({ valid: true });
    const cached = await api<TokenBody>(b.url, '/v1/channels/1000001/token'); // the fast route, from memory
    expect([cached.status, cached.body]).toEqual([200, cold.body]);
    expect(fx.sim.calls({ endpoint: 'get-channel-token', channelId: '1000001' })).toHaveLength(1);
  });

  it('when the admin listener is on ::1 too, then its URL is bracketed as well and answers /readyz', async () => {
    const b = await fx.broker(testConfig(fx.sim.url, { HOST: '::1', BROKER_ADMIN_PORT: '0', BROKER_ADMIN_HOST: '::1' }));
    expect(b.app.adminUrl).toMatch(/^http:\/\/\[::1\]:\d+$/);
    expect(b.app.adminUrl).not.toBe(b.url);
    const ready = await api<{ status: string }>(b.app.adminUrl!, '/readyz', { key: null });
    expect([ready.status, ready.body.status]).toEqual([200, 'ready']);
  });

  it('when a listener is bound to a wildcard address, then its URL names the loopback; a host name or IPv4 address is kept', () => {
    expect(localBaseUrl('0.0.0.0', 8080)).toBe('http://127.0.0.1:8080');
    expect(localBaseUrl('::', 8080)).toBe('http://127.0.0.1:8080');
    expect(localBaseUrl('::1', 8080)).toBe('http://[::1]:8080');
    expect(localBaseUrl('fd00::5', 9090)).toBe('http://[fd00::5]:9090');
    expect(localBaseUrl('10.0.0.5', 8080)).toBe('http://10.0.0.5:8080');
    expect(localBaseUrl('broker.internal', 8080)).toBe('http://broker.internal:8080');
  });
});

describe('readiness', () => {
  it('when a dependency does not answer in time or fails, then /readyz names it unreachable with the reason, the others keep their state', async () => {
    const readiness = readinessCheck(
      {
        redis: () => new Promise<string>(() => undefined),
        polyv: () => Promise.reject(new Error('connect ECONNREFUSED')),
        worker: () => 'not running',
        queue: () => 'ok',
      },
      50,
    );
    expect(await readiness.check()).toEqual({
      redis: 'unreachable: timeout',
      polyv: 'unreachable: connect ECONNREFUSED',
      worker: 'not running',
      queue: 'ok',
    });
  });
});
