import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedisServer, type RedisServerHandle } from '../src/infra/redis-server.js';
import type { Config } from '../src/config/config.js';
import type { Logger } from '../src/lib/logger.js';
import { startBroker as startBrokerProcess } from '../src/main.js';
import type { PolyvSimulator } from '../src/sim/polyv-simulator.js';
import { LogCapture, api, eventually, startBroker, startSim, testConfig, uniquePrefix, type TestBroker, type TokenBody } from './support/harness.js';

/**
 * Redis with AUTH, an ACL user and TLS, end to end: the whole broker (HTTP, token store, Lua scripts, BullMQ
 * queue and worker) against real redis-server processes, and start-up failures that say what to fix
 * without printing the password.
 */


const ADMIN_PASSWORD = 'admin-pw-5f2c9d1e8a7b';
const BROKER_PASSWORD = 'broker-pw-c41d7e0b9a62';

let sim: PolyvSimulator;
let dir: string;
const brokers: TestBroker[] = [];
const stops: Array<() => Promise<void>> = [];

/** Starts a broker the way `serve` does and returns the error start-up failed with. */
async function startupError(config: Config, logger?: Logger): Promise<Error> {
  return startBrokerProcess(config, logger).then(
    (running) => {
      brokers.push({ app: running.app, url: running.url, stop: () => running.stop() });
      return new Error('started');
    },
    (err: unknown) => err as Error,
  );
}

/** The least-privilege ACL the README recommends for a broker whose BROKER_REDIS_PREFIX is `prefix`. */
function brokerAcl(user: string, password: string, prefix: string): string[] {
  return ['--user', user, 'on', `>${password}`, 'resetkeys', `~${prefix}:*`, `~{${prefix}}:*`, 'resetchannels', `&${prefix}:*`, '+@all', '-@dangerous', '+info'];
}

beforeAll(async () => {
  sim = await startSim();
  dir = mkdtempSync(join(tmpdir(), 'ptb-redis-auth-'));
});
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
});
afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  await sim.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Redis AUTH and ACL users', () => {
  let server: RedisServerHandle;
  const prefix = `acl${uniquePrefix()}`;
  const port = () => server.port;

  beforeAll(async () => {
    server = await startRedisServer({
      dir: join(dir, 'acl'),
      appendOnly: false,
      args: ['--requirepass', ADMIN_PASSWORD, ...brokerAcl('broker', BROKER_PASSWORD, prefix)],
    });
    stops.push(() => server.stop());
  });

  it('when REDIS_URL names an ACL user and its password, then HTTP, the store and the BullMQ worker all work through it', async () => {
    const logs = new LogCapture('trace');
    const b = await startBroker(
      testConfig(sim.url, {
        REDIS_URL: `redis://broker:${BROKER_PASSWORD}@127.0.0.1:${port()}`,
        BROKER_REDIS_PREFIX: prefix,
        BROKER_ROLE: 'all',
        BROKER_CHANNELS: '1000003',
      }),
      { logger: logs.logger },
    );
    brokers.push(b);

    const res = await api<TokenBody>(b.url, '/v1/channels/1000001/token');
    expect(res.status).toBe(200);
    expect(sim.checkToken('channel', '1000001', res.body.channelToken)).toEqual({ valid: true });

    // The warm channel is fetched by the BullMQ worker, on its own connections with the same credentials.
    const warm = await eventually(async () => {
      const state = await b.app.service.describe(b.app.accounts.defaultAccount, '1000003');
      return state.expireTime !== null ? state : null;
    });
    expect(warm.warm).toBe('pinned');
    expect((await api(b.url, '/readyz', { key: null })).status).toBe(200);

    // What the broker wrote is under its prefix, as the ACL user; the password shows up in no log line.
    const admin = new Redis(`redis://:${ADMIN_PASSWORD}@127.0.0.1:${port()}`);
    try {
      const keys = await admin.keys('*');
      expect(keys.length).toBeGreaterThan(0);
      expect(keys.filter((k) => !k.startsWith(`${prefix}:`) && !k.startsWith(`{${prefix}}:`))).toEqual([]);
      const clients = await admin.client('LIST');
      expect(String(clients)).toMatch(/user=broker .*name=polyv-token-broker:commands|name=polyv-token-broker:commands.* user=broker/);
    } finally {
      admin.disconnect();
    }
    expect(logs.text).not.toContain(BROKER_PASSWORD);
    expect(logs.text).not.toContain(ADMIN_PASSWORD);
  });

  it('when the server requires a password and REDIS_URL gives none, then connections are refused (the server really is protected)', async () => {
    const anonymous = new Redis(`redis://127.0.0.1:${port()}`, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    anonymous.on('error', () => undefined);
    try {
      await anonymous.connect().catch(() => undefined);
      await expect(anonymous.get('x')).rejects.toThrow();
    } finally {
      anonymous.disconnect();
    }
  });

  it('when the password is wrong, then start-up fails fast with an error naming REDIS_URL and never the password', async () => {
    const logs = new LogCapture('trace');
    const wrong = 'wrong-pw-0b1c2d3e4f';
    const config = testConfig(sim.url, {
      REDIS_URL: `redis://broker:${wrong}@127.0.0.1:${port()}`,
      BROKER_REDIS_PREFIX: prefix,
      BROKER_ROLE: 'all',
      LOG_LEVEL: 'trace',
    });
    const started = Date.now();
    // The real start-up path (`serve` prints this message and exits 1).
    const error = await startupError(config, logs.logger);
    expect(error.message).toContain('REDIS_URL');
    expect(error.message).toContain(`redis://broker:***@127.0.0.1:${port()}`);
    expect(error.message).toMatch(/WRONGPASS/);
    expect(error.message).toContain('check the user name and password in REDIS_URL');
    expect(error.message).not.toContain(wrong);
    expect(logs.text).not.toContain(wrong);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('when `serve` runs with a wrong password, then the process exits 1 with one line naming REDIS_URL, and prints the password nowhere', () => {
    const bin = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'bin.js');
    expect(existsSync(bin), `${bin} missing: run npm run build`).toBe(true);
    const wrong = 'wrong-pw-for-the-cli-77aa';
    const r = spawnSync(process.execPath, [bin, 'serve'], {
      encoding: 'utf8',
      timeout: 20_000,
      env: {
        PATH: process.env['PATH'] ?? '',
        REDIS_URL: `redis://broker:${wrong}@127.0.0.1:${port()}`,
        PORT: '0',
        POLYV_BASE_URL: sim.url,
        POLYV_APP_ID: 'testappid1',
        POLYV_APP_SECRET: 'test-secret-0123456789abcdef',
        BROKER_API_KEYS: 'svc:0123456789abcdef0123',
        BROKER_REDIS_PREFIX: prefix,
        LOG_LEVEL: 'trace',
      },
    });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(
      `polyv-token-broker: cannot use Redis at REDIS_URL redis://broker:***@127.0.0.1:${port()}: ` +
        'WRONGPASS invalid username-password pair or user is disabled. (check the user name and password in REDIS_URL)',
    );
    expect(r.stdout + r.stderr).not.toContain(wrong);
  });

  it('when the ACL user may not touch the broker prefix, then start-up fails instead of running half-broken', async () => {
    const other = `other${uniquePrefix()}`;
    const config = testConfig(sim.url, {
      REDIS_URL: `redis://broker:${BROKER_PASSWORD}@127.0.0.1:${port()}`,
      BROKER_REDIS_PREFIX: other,
      BROKER_ROLE: 'all',
    });
    const error = await startupError(config);
    expect(error.message).toMatch(/NOPERM/);
    expect(error.message).toContain('BROKER_REDIS_PREFIX');
    expect(error.message).not.toContain(BROKER_PASSWORD);
  });
});

/** A CA and a server certificate for 127.0.0.1 and localhost, made with openssl in `into`. */
function makeCertificates(into: string): { ca: string; cert: string; key: string; otherCa: string } {
  const f = (name: string) => join(into, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=ptb test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=unrelated CA', '-keyout', f('other-ca.key'), '-out', f('other-ca.pem'));
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', f('server.key'), '-out', f('server.csr'));
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('san.ext'), '-out', f('server.pem'));
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), otherCa: f('other-ca.pem') };
}

/** redis-server with TLS only (`--port 0`): nothing can reach it in plain text. */
async function startTlsRedis(into: string, certs: ReturnType<typeof makeCertificates>, password: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port', '0',
      '--tls-port', String(port),
      '--bind', '127.0.0.1',
      '--tls-cert-file', certs.cert,
      '--tls-key-file', certs.key,
      '--tls-ca-cert-file', certs.ca,
      '--tls-auth-clients', 'no',
      '--requirepass', password,
      '--dir', into,
      '--save', '',
      '--appendonly', 'no',
      '--maxmemory-policy', 'noeviction',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const stop = () =>
    new Promise<void>((done) => {
      if (child.exitCode !== null) return done();
      child.once('exit', () => done());
      child.kill('SIGTERM');
    });
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`TLS redis-server exited with ${child.exitCode}`);
    const probe = new Redis({ host: '127.0.0.1', port, password, tls: { ca: readFileSync(certs.ca) }, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      return (await probe.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      probe.disconnect();
    }
  });
  return { port, stop };
}

describe('Redis over TLS (rediss://)', () => {
  let certs: ReturnType<typeof makeCertificates>;
  let port: number;
  const password = 'tls-pw-9e8d7c6b5a41';

  beforeAll(async () => {
    const tlsDir = join(dir, 'tls');
    mkdirSync(tlsDir, { recursive: true });
    certs = makeCertificates(tlsDir);
    const server = await startTlsRedis(tlsDir, certs, password);
    port = server.port;
    stops.push(server.stop);
  });

  it('when REDIS_URL is rediss:// and REDIS_TLS_CA_FILE names the private CA, then HTTP, the store and the BullMQ worker all work over TLS', async () => {
    const b = await startBroker(
      testConfig(sim.url, {
        REDIS_URL: `rediss://:${password}@127.0.0.1:${port}`,
        REDIS_TLS_CA_FILE: certs.ca,
        BROKER_ROLE: 'all',
        BROKER_CHANNELS: '1000004',
      }),
    );
    brokers.push(b);
    const res = await api<TokenBody>(b.url, '/v1/channels/1000002/token');
    expect(res.status).toBe(200);
    expect(sim.checkToken('channel', '1000002', res.body.channelToken)).toEqual({ valid: true });
    const warm = await eventually(async () => {
      const state = await b.app.service.describe(b.app.accounts.defaultAccount, '1000004');
      return state.expireTime !== null ? state : null;
    });
    expect(warm.warm).toBe('pinned');
    expect((await api(b.url, '/readyz', { key: null })).status).toBe(200);
  });

  it('when the host name is used instead of the IP, then the certificate is checked against it and accepted', async () => {
    const b = await startBroker(
      testConfig(sim.url, { REDIS_URL: `rediss://:${password}@localhost:${port}`, REDIS_TLS_CA_FILE: certs.ca, BROKER_ROLE: 'api' }),
    );
    brokers.push(b);
    expect((await api(b.url, '/v1/channels/1000001/token')).status).toBe(200);
  });

  it.each([
    ['no REDIS_TLS_CA_FILE (the system CAs do not know the private CA)', undefined],
    ['a CA file of another CA', 'other'],
  ])('when the server certificate cannot be verified (%s), then start-up fails naming REDIS_TLS_CA_FILE, not the password', async (_label, which) => {
    const env: Record<string, string> = { REDIS_URL: `rediss://:${password}@127.0.0.1:${port}`, BROKER_ROLE: 'api' };
    if (which === 'other') env['REDIS_TLS_CA_FILE'] = certs.otherCa;
    const error = await startupError(testConfig(sim.url, env));
    expect(error.message).toContain(`REDIS_URL rediss://:***@127.0.0.1:${port}`);
    expect(error.message).toContain('REDIS_TLS_CA_FILE');
    expect(error.message).not.toContain(password);
  });

  it('when REDIS_TLS_CA_FILE is set for a plain redis:// URL, or is not a PEM file, then the configuration is refused', () => {
    expect(() => testConfig(sim.url, { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_TLS_CA_FILE: certs.ca })).toThrow(
      /REDIS_TLS_CA_FILE is set but REDIS_URL does not start with rediss:\/\//,
    );
    expect(() => testConfig(sim.url, { REDIS_URL: `rediss://127.0.0.1:${port}`, REDIS_TLS_CA_FILE: certs.key })).toThrow(
      /REDIS_TLS_CA_FILE must hold PEM certificates/,
    );
    expect(() => testConfig(sim.url, { REDIS_URL: `rediss://127.0.0.1:${port}`, REDIS_TLS_CA_FILE: join(dir, 'missing.pem') })).toThrow(
      /REDIS_TLS_CA_FILE cannot be read \(ENOENT\)/,
    );
  });
});
