import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { RedisKeys } from '../src/store/redis-keys.js';
import { encryptionKeyId } from '../src/store/token-cipher.js';
import type { PolyvSimulator } from '../src/sim/polyv-simulator.js';
import { LogCapture, OTHER_KEY, TEST_ACCOUNT, TEST_KEY, api, eventually, redisUrl, startBroker, startSim, testConfig, uniquePrefix, type ApiResponse, type TestBroker, type TokenBody, type ErrorBody, configProblems } from './support/harness.js';


let sim: PolyvSimulator;
let redis: Redis;
let dir: string;
const brokers: TestBroker[] = [];

async function broker(env: Record<string, string> = {}, logs?: LogCapture): Promise<TestBroker> {
  const b = await startBroker(testConfig(sim.url, { BROKER_ROLE: 'api', ...env }), logs === undefined ? {} : { logger: logs.logger });
  brokers.push(b);
  return b;
}

/** Stops a broker now (a replica restarting with new settings). */
async function restart(b: TestBroker): Promise<void> {
  const i = brokers.indexOf(b);
  if (i >= 0) brokers.splice(i, 1);
  await b.stop();
}

function secretFile(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

const channelCalls = (channelId: string) => sim.calls({ endpoint: 'get-channel-token', channelId }).length;

beforeAll(async () => {
  sim = await startSim();
  redis = new Redis(redisUrl());
  dir = mkdtempSync(join(tmpdir(), 'ptb-security-'));
});
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
  sim.setFault(null);
  sim.resetCalls();
});
afterAll(async () => {
  redis.disconnect();
  await sim.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Every key of a broker prefix (its own keys and BullMQ's), by SCAN. */
async function keysOf(prefix: string): Promise<string[]> {
  const found: string[] = [];
  for (const pattern of [`${prefix}:*`, `{${prefix}}:*`]) {
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
  }
  return found;
}

/** Everything stored under a prefix, as text: what `redis-cli` or a dump would show. */
async function valuesOf(prefix: string): Promise<string> {
  const out: string[] = [];
  for (const key of await keysOf(prefix)) {
    const type = await redis.type(key);
    if (type === 'string') out.push((await redis.get(key)) ?? '');
    else if (type === 'hash') out.push(JSON.stringify(await redis.hgetall(key)));
    else if (type === 'set') out.push(JSON.stringify(await redis.smembers(key)));
    else if (type === 'zset') out.push(JSON.stringify(await redis.zrange(key, '0', '-1', 'WITHSCORES')));
    else if (type === 'list') out.push(JSON.stringify(await redis.lrange(key, 0, -1)));
    else if (type === 'stream') out.push(JSON.stringify(await redis.xrange(key, '-', '+')));
    const dump = await redis.dumpBuffer(key);
    if (dump !== null) out.push(dump.toString('latin1'));
  }
  return out.join('\n');
}

describe('secrets from files, never from the command line', () => {
  const base = { POLYV_APP_ID: 'app1', POLYV_APP_SECRET: 'secret-value-1234' };

  it('when BROKER_API_KEYS_FILE holds keys one per line or comma-separated, then they are all read; comments and blank lines are skipped', () => {
    const path = secretFile('api-keys', '# consumers\nsvc-a:key-a-0123456789abcdef\n\nsvc-b:key-b-0123456789abcdef, svc-c:key-c-0123456789abcdef\n');
    const c = loadConfig({ ...base, BROKER_API_KEYS_FILE: path });
    expect(c.apiKeys.map((k) => k.name)).toEqual(['svc-a', 'svc-b', 'svc-c']);
    expect(c.apiKeys[2]?.key).toBe('key-c-0123456789abcdef');
  });

  it('when API keys are missing, given twice, or the file is unusable, then start-up is refused naming the variable and never a key', () => {
    expect(configProblems(base)).toEqual(['BROKER_API_KEYS is required (comma-separated name:key pairs), or give BROKER_API_KEYS_FILE']);
    const path = secretFile('api-keys-2', 'svc:0123456789abcdef-secret\n');
    expect(configProblems({ ...base, BROKER_API_KEYS: 'svc:0123456789abcdef-other', BROKER_API_KEYS_FILE: path })).toEqual([
      'BROKER_API_KEYS and BROKER_API_KEYS_FILE are both set: give exactly one',
    ]);
    expect(configProblems({ ...base, BROKER_API_KEYS_FILE: join(dir, 'nope') })).toEqual([
      `BROKER_API_KEYS_FILE cannot be read (ENOENT): ${join(dir, 'nope')}`,
    ]);
    expect(configProblems({ ...base, BROKER_API_KEYS_FILE: secretFile('empty', '\n') })).toEqual([
      `BROKER_API_KEYS_FILE is empty: ${join(dir, 'empty')}`,
    ]);
    const short = configProblems({ ...base, BROKER_API_KEYS_FILE: secretFile('short', 'svc:tooshort-xyz\n') });
    expect(short).toEqual(['BROKER_API_KEYS key "svc" must be at least 16 characters long']);
    expect(short.join()).not.toContain('tooshort-xyz');
  });

  it('when BROKER_ENCRYPTION_KEY is 32 bytes of base64 or hex (or in BROKER_ENCRYPTION_KEY_FILE), then it is accepted; anything else is refused without echoing it', () => {
    const key = randomBytes(32);
    const env = { ...base, BROKER_API_KEYS: 'svc:0123456789abcdef' };
    expect(loadConfig({ ...env, BROKER_ENCRYPTION_KEY: key.toString('base64') }).encryption.key?.equals(key)).toBe(true);
    expect(loadConfig({ ...env, BROKER_ENCRYPTION_KEY: key.toString('hex') }).encryption.key?.equals(key)).toBe(true);
    const fromFile = loadConfig({ ...env, BROKER_ENCRYPTION_KEY_FILE: secretFile('enc-key', `${key.toString('base64')}\n`) });
    expect(fromFile.encryption.key?.equals(key)).toBe(true);
    const old = [randomBytes(32), randomBytes(32)];
    const rotated = loadConfig({
      ...env,
      BROKER_ENCRYPTION_KEY: key.toString('hex'),
      BROKER_ENCRYPTION_OLD_KEYS: `${old[0]!.toString('base64')},${old[1]!.toString('hex')}`,
    });
    expect(rotated.encryption.oldKeys.map((k) => k.toString('hex'))).toEqual(old.map((k) => k.toString('hex')));
    expect(loadConfig(env).encryption).toEqual({ key: undefined, oldKeys: [] });

    const weak = 'not-a-real-key-but-a-secret-anyway';
    const problems = configProblems({ ...env, BROKER_ENCRYPTION_KEY: weak, BROKER_ENCRYPTION_OLD_KEYS: `${key.toString('hex')},${randomBytes(16).toString('hex')}` });
    expect(problems).toEqual([
      'BROKER_ENCRYPTION_KEY must be 32 bytes written as base64 or 64 hex digits (make one with: openssl rand -base64 32)',
      'BROKER_ENCRYPTION_OLD_KEYS entry 2 must be 32 bytes written as base64 or 64 hex digits (make one with: openssl rand -base64 32)',
    ]);
    expect(problems.join()).not.toContain(weak);
    expect(configProblems({ ...env, BROKER_ENCRYPTION_KEY: key.toString('hex'), BROKER_ENCRYPTION_KEY_FILE: join(dir, 'enc-key') })).toEqual([
      'BROKER_ENCRYPTION_KEY and BROKER_ENCRYPTION_KEY_FILE are both set: give exactly one',
    ]);
  });

  it('when the broker is configured from secret files only, then it serves tokens', async () => {
    const b = await broker({
      POLYV_APP_SECRET: '',
      POLYV_APP_SECRET_FILE: secretFile('polyv-secret', `${TEST_ACCOUNT.appSecret}\n`),
      BROKER_API_KEYS: '',
      BROKER_API_KEYS_FILE: secretFile('keys', `svc-a:${TEST_KEY}\nsvc-b:${OTHER_KEY}\n`),
      BROKER_ENCRYPTION_KEY_FILE: secretFile('enc', randomBytes(32).toString('base64')),
    });
    const res = await api<TokenBody>(b.url, '/v1/channels/1000001/token', { key: OTHER_KEY });
    expect(res.status).toBe(200);
    expect(sim.checkToken('channel', '1000001', res.body.channelToken)).toEqual({ valid: true });
  });

  const BIN = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'bin.js');
  it.each(['serve', 'sim', 'demo'])('when `%s` is given arguments, then it refuses them (exit 2) without echoing them', (command) => {
    expect(existsSync(BIN), `${BIN} missing: run npm run build`).toBe(true);
    const secret = 'cli-secret-value-0123456789';
    const r = spawnSync(process.execPath, [BIN, command, `--api-key=${secret}`, secret], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { PATH: process.env['PATH'] ?? '' },
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${command} takes no arguments`);
    expect(r.stderr).toContain('POLYV_APP_SECRET_FILE');
    expect(r.stdout + r.stderr).not.toContain(secret);
  });
});

describe('tokens encrypted at rest (BROKER_ENCRYPTION_KEY)', () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);

  it('when a key is set, then Redis holds only versioned ciphertext bound to its key, and consumers get the real token', async () => {
    const prefix = uniquePrefix();
    const b = await broker({ BROKER_REDIS_PREFIX: prefix, BROKER_ENCRYPTION_KEY: k1.toString('base64') });
    const res = await api<TokenBody>(b.url, '/v1/channels/1000001/token');
    expect(res.status).toBe(200);
    expect(sim.checkToken('channel', '1000001', res.body.channelToken)).toEqual({ valid: true });

    const tokenKey = new RedisKeys(prefix).token(TEST_ACCOUNT.appId, '1000001');
    const stored = await redis.hgetall(tokenKey);
    expect(stored['token']).toMatch(new RegExp(`^v1:${encryptionKeyId(k1)}:[^:]+:[^:]+:[^:]+$`));
    expect(await valuesOf(prefix)).not.toContain(res.body.channelToken);

    // Served from the cache (no PolyV call), decrypted.
    const again = await api<TokenBody>(b.url, '/v1/channels/1000001/token');
    expect(again.body.channelToken).toBe(res.body.channelToken);
    expect(channelCalls('1000001')).toBe(1);
  });

  it('when a ciphertext is copied to another channel, then it does not decrypt there: that channel fetches its own token, and the log says why without content', async () => {
    const prefix = uniquePrefix();
    const logs = new LogCapture('trace');
    const b = await broker({ BROKER_REDIS_PREFIX: prefix, BROKER_ENCRYPTION_KEY: k1.toString('hex') }, logs);
    const one = await api<TokenBody>(b.url, '/v1/channels/1000001/token');
    const keys = new RedisKeys(prefix);
    const source = await redis.hgetall(keys.token(TEST_ACCOUNT.appId, '1000001'));
    await redis.hset(keys.token(TEST_ACCOUNT.appId, '1000002'), source);

    const two = await api<TokenBody>(b.url, '/v1/channels/1000002/token');
    expect(two.status).toBe(200);
    expect(two.body.channelToken).not.toBe(one.body.channelToken);
    expect(sim.checkToken('channel', '1000002', two.body.channelToken)).toEqual({ valid: true });
    expect(channelCalls('1000002')).toBe(1);
    const warning = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['reason'] === 'auth_failed');
    expect(warning).toMatchObject({ channelId: '1000002', keyId: encryptionKeyId(k1), level: 40 });
    expect(logs.text).not.toContain(one.body.channelToken);
    expect(logs.text).not.toContain(source['token']!.split(':')[4]!);
  });

  it('when the key is rotated as the README says, then no token is refetched, new writes use the new key, and only a dropped key forces a refetch', async () => {
    const prefix = uniquePrefix();
    const env = { BROKER_REDIS_PREFIX: prefix };
    const tokenKey = new RedisKeys(prefix).token(TEST_ACCOUNT.appId, '1000003');
    const keyIdOf = async () => (await redis.hget(tokenKey, 'token'))!.split(':')[1];

    // 0. Encryption on with k1.
    let b = await broker({ ...env, BROKER_ENCRYPTION_KEY: k1.toString('base64') });
    const first = await api<TokenBody>(b.url, '/v1/channels/1000003/token');
    await restart(b);
    expect(await keyIdOf()).toBe(encryptionKeyId(k1));

    // 1. Every replica learns k2 as current and keeps k1 to decrypt: the k1 token is served as is.
    b = await broker({ ...env, BROKER_ENCRYPTION_KEY: k2.toString('base64'), BROKER_ENCRYPTION_OLD_KEYS: k1.toString('base64') });
    expect((await api<TokenBody>(b.url, '/v1/channels/1000003/token')).body.channelToken).toBe(first.body.channelToken);
    expect(channelCalls('1000003')).toBe(1);
    // The next refresh writes with k2.
    const second = await api<TokenBody>(b.url, '/v1/channels/1000003/token/refresh', {
      method: 'POST',
      body: { rejectedToken: first.body.channelToken },
    });
    expect(second.status).toBe(200);
    expect(await keyIdOf()).toBe(encryptionKeyId(k2));
    await restart(b);

    // 2. k1 dropped: k2 tokens are still read.
    b = await broker({ ...env, BROKER_ENCRYPTION_KEY: k2.toString('base64') });
    expect((await api<TokenBody>(b.url, '/v1/channels/1000003/token')).body.channelToken).toBe(second.body.channelToken);
    expect(channelCalls('1000003')).toBe(2);
    await restart(b);

    // A replica that lost every key never serves ciphertext: it counts the token as absent and fetches one.
    b = await broker({ ...env, BROKER_ENCRYPTION_KEY: k1.toString('base64') });
    const refetched = await api<TokenBody>(b.url, '/v1/channels/1000003/token');
    expect(refetched.body.channelToken).not.toMatch(/^v1:/);
    expect(sim.checkToken('channel', '1000003', refetched.body.channelToken)).toEqual({ valid: true });
    expect(channelCalls('1000003')).toBe(3);
  });

  it('when encryption is switched on over plain-text tokens, then they are served without a refetch and re-encrypted on the next write; switched off, ciphertext is never served', async () => {
    const prefix = uniquePrefix();
    const tokenKey = new RedisKeys(prefix).token(TEST_ACCOUNT.appId, '1000004');
    let b = await broker({ BROKER_REDIS_PREFIX: prefix });
    const plain = await api<TokenBody>(b.url, '/v1/channels/1000004/token');
    expect(await redis.hget(tokenKey, 'token')).toBe(plain.body.channelToken);
    await restart(b);

    b = await broker({ BROKER_REDIS_PREFIX: prefix, BROKER_ENCRYPTION_KEY: k1.toString('base64') });
    expect((await api<TokenBody>(b.url, '/v1/channels/1000004/token')).body.channelToken).toBe(plain.body.channelToken);
    expect(channelCalls('1000004')).toBe(1);
    const fresh = await api<TokenBody>(b.url, '/v1/channels/1000004/token/refresh', {
      method: 'POST',
      body: { rejectedToken: plain.body.channelToken },
    });
    expect(await redis.hget(tokenKey, 'token')).toMatch(/^v1:/);
    await restart(b);

    b = await broker({ BROKER_REDIS_PREFIX: prefix });
    const afterOff = await api<TokenBody>(b.url, '/v1/channels/1000004/token');
    expect(afterOff.status).toBe(200);
    expect(afterOff.body.channelToken).not.toMatch(/^v1:/);
    expect(afterOff.body.channelToken).not.toBe(fresh.body.channelToken);
    expect(sim.checkToken('channel', '1000004', afterOff.body.channelToken)).toEqual({ valid: true });
  });
});

describe('metrics and health on a separate admin port (BROKER_ADMIN_PORT)', () => {
  it('when BROKER_ADMIN_PORT is unset, then /metrics, /healthz and /readyz are on the main port', async () => {
    const b = await broker();
    expect(b.app.adminUrl).toBeUndefined();
    const metrics = await fetch(`${b.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('polyv_broker_tokens_served_total');
    expect((await api(b.url, '/healthz', { key: null })).status).toBe(200);
    expect((await api(b.url, '/readyz', { key: null })).status).toBe(200);
  });

  it('when BROKER_ADMIN_PORT is set, then /metrics is served there only, health on both, the API on the main port only, and the admin port closes on shutdown', async () => {
    const b = await startBroker(testConfig(sim.url, { BROKER_ROLE: 'all', BROKER_ADMIN_PORT: '0', BROKER_ADMIN_HOST: '127.0.0.1' }));
    const adminUrl = b.app.adminUrl!;
    expect(adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(adminUrl).not.toBe(b.url);

    const onMain = await api<ErrorBody>(b.url, '/metrics', { key: null });
    expect(onMain.status).toBe(404);
    expect(onMain.body.error.code).toBe('not_found');
    const onAdmin = await fetch(`${adminUrl}/metrics`);
    expect(onAdmin.status).toBe(200);
    expect(onAdmin.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await onAdmin.text()).toContain('polyv_broker_tokens_served_total');
    for (const base of [b.url, adminUrl]) {
      expect((await api(base, '/healthz', { key: null })).status, base).toBe(200);
      expect((await api(base, '/readyz', { key: null })).status, base).toBe(200);
    }
    expect((await api(b.url, '/v1/channels/1000001/token')).status).toBe(200);
    expect((await api(adminUrl, '/v1/channels/1000001/token')).status).toBe(404);

    await b.stop();
    await expect(fetch(`${adminUrl}/healthz`)).rejects.toThrow();
  });

  it('when BROKER_ADMIN_PORT equals PORT, or BROKER_ADMIN_HOST is set alone, then the configuration is refused', () => {
    expect(() => testConfig(sim.url, { PORT: '8080', BROKER_ADMIN_PORT: '8080' })).toThrow(/BROKER_ADMIN_PORT must differ from PORT \(both are 8080\)/);
    expect(() => testConfig(sim.url, { BROKER_ADMIN_HOST: '127.0.0.1' })).toThrow(/BROKER_ADMIN_HOST is set but BROKER_ADMIN_PORT is not/);
    expect(() => testConfig(sim.url, { BROKER_ADMIN_PORT: 'nine' })).toThrow(/BROKER_ADMIN_PORT must be a whole number/);
  });
});

describe('no secret reaches logs, metrics, error bodies or Redis', () => {
  it('when a run goes through success, compare-and-refresh, bad signature, 5xx, budget exhausted, illegal channel and bad keys, then no appSecret, API key, encryption key or token appears anywhere', async () => {
    const prefix = uniquePrefix();
    const logs = new LogCapture('trace');
    const encryptionKey = randomBytes(32);
    const wrongSecret = 'wrong-app-secret-7d1f0c9e2b';
    const presentedBadKey = 'presented-but-unknown-key-5a4b3c2d1e';
    const common = {
      BROKER_REDIS_PREFIX: prefix,
      LOG_LEVEL: 'trace',
      BROKER_ENCRYPTION_KEY: encryptionKey.toString('base64'),
    };
    const published: string[] = [];
    const subscriber = new Redis(redisUrl());
    subscriber.on('pmessage', (_pattern: string, channel: string, message: string) => published.push(`${channel} ${message}`));
    await subscriber.psubscribe(`${prefix}:*`, `{${prefix}}:*`);
    const main = await broker({ ...common, BROKER_ROLE: 'all', BROKER_CHANNELS: '1000005', BROKER_ADMIN_PORT: '0' }, logs);
    const tight = await broker({ ...common, BROKER_CHANNEL_BUDGET_PER_HOUR: '1' }, logs);
    const badSign = await broker({ ...common, POLYV_APP_SECRET: wrongSecret }, logs);

    const responses: Array<ApiResponse<unknown>> = [];
    const call = async <T>(base: string, path: string, init: Parameters<typeof api>[2] = {}) => {
      const res = await api<T>(base, path, init);
      responses.push(res);
      return res;
    };

    // Success, cache hit, compare-and-refresh (current and stale), the worker's warm channel.
    const t1 = await call<TokenBody>(main.url, '/v1/channels/1000001/token');
    expect(t1.status).toBe(200);
    await call(main.url, '/v1/channels/1000001/token');
    const t2 = await call<TokenBody>(main.url, '/v1/channels/1000001/token/refresh', { method: 'POST', body: { rejectedToken: t1.body.channelToken } });
    expect(t2.body.channelToken).not.toBe(t1.body.channelToken);
    const stale = await call<TokenBody>(main.url, '/v1/channels/1000001/token/refresh', { method: 'POST', body: { rejectedToken: t1.body.channelToken } });
    expect(stale.body.channelToken).toBe(t2.body.channelToken);
    await eventually(async () => (await main.app.service.describe(main.app.accounts.defaultAccount, '1000005')).expireTime !== null);
    await call(main.url, '/v1/channels/1000005/token');
    await call(main.url, '/v1/channels/1000005');
    await call(main.url, '/v1/channels');

    // Bad signature (wrong appSecret): 503 upstream_auth_failed.
    const sign = await call<ErrorBody>(badSign.url, '/v1/channels/1000002/token');
    expect(sign.body.error.code).toBe('upstream_auth_failed');

    // PolyV 5xx and an error envelope with code 500.
    sim.setFault({ kind: 'http-status', status: 502 });
    expect((await call<ErrorBody>(main.url, '/v1/channels/1000003/token')).body.error.code).toBe('upstream_unavailable');
    sim.setFault({ kind: 'error-code', code: 500, message: 'system error' });
    expect((await call<ErrorBody>(main.url, '/v1/channels/1000003/token')).status).toBe(503);
    sim.setFault(null);

    // Budget exhausted on a compare-and-refresh.
    const t4 = await call<TokenBody>(tight.url, '/v1/channels/1000004/token');
    const spent = await call<ErrorBody>(tight.url, '/v1/channels/1000004/token/refresh', { method: 'POST', body: { rejectedToken: t4.body.channelToken } });
    expect(spent.body.error.code).toBe('budget_exhausted');

    // Illegal channel, unknown key, no key, a token in a malformed body.
    expect((await call<ErrorBody>(main.url, '/v1/channels/9999999/token')).body.error.code).toBe('channel_not_in_account');
    expect((await call(main.url, '/v1/channels/1000001/token', { key: presentedBadKey })).status).toBe(401);
    expect((await call(main.url, '/v1/channels/1000001/token', { key: null })).status).toBe(401);
    expect((await call(main.url, '/v1/channels/1000001/token/refresh', { method: 'POST', rawBody: `{"rejectedToken": "${t2.body.channelToken}"` })).status).toBe(400);
    expect((await call(main.url, '/v1/channels/1000001/token/refresh', { method: 'POST', body: { rejectedToken: 42, t: t2.body.channelToken } })).status).toBe(400);

    const tokens = responses
      .map((r) => (r.body as Partial<TokenBody> | undefined)?.channelToken)
      .filter((t): t is string => typeof t === 'string');
    expect(new Set(tokens).size).toBeGreaterThanOrEqual(4);
    const secrets: Record<string, string> = {
      appSecret: TEST_ACCOUNT.appSecret,
      wrongSecret,
      consumerKeyA: TEST_KEY,
      consumerKeyB: OTHER_KEY,
      presentedBadKey,
      encryptionKeyBase64: encryptionKey.toString('base64'),
      encryptionKeyHex: encryptionKey.toString('hex'),
      ...Object.fromEntries(tokens.map((t, i) => [`token${i}`, t])),
    };

    const metrics = [await (await fetch(`${main.app.adminUrl!}/metrics`)).text(), await (await fetch(`${tight.url}/metrics`)).text()];
    expect(metrics[0]).toContain('polyv_broker_polyv_calls_total');
    const errorBodies = responses.filter((r) => r.status >= 400).map((r) => JSON.stringify(r.body));
    expect(errorBodies.length).toBeGreaterThanOrEqual(8);
    const keyNames = (await keysOf(prefix)).join('\n');
    expect(keyNames).toContain(`${prefix}:{${TEST_ACCOUNT.appId}:1000001}:token`);
    const stored = await valuesOf(prefix);
    expect(logs.lines.length).toBeGreaterThan(10);
    subscriber.disconnect();

    const places: Record<string, string> = {
      logs: logs.text,
      metrics: metrics.join('\n'),
      'error bodies': errorBodies.join('\n'),
      'Redis key names': keyNames,
      'Redis values (encrypted at rest)': stored,
      'pub/sub messages': published.join('\n'),
    };
    const leaks: string[] = [];
    for (const [place, text] of Object.entries(places)) {
      for (const [name, secret] of Object.entries(secrets)) if (text.includes(secret)) leaks.push(`${name} in ${place}`);
    }
    expect(leaks).toEqual([]);
  });

  it('when an ioredis error carrying the command arguments is logged (an AUTH password, a Lua script argument), then they are redacted', () => {
    const logs = new LogCapture('trace');
    const err = Object.assign(new Error('WRONGPASS invalid username-password pair'), {
      command: { name: 'auth', args: ['broker', 'the-redis-password-123'] },
    });
    logs.logger.fatal({ err }, 'unhandled promise rejection');
    logs.logger.warn({ module: 'x', detail: { command: { name: 'evalsha', args: ['sha', 'a-token-value-456'] } } }, 'script failed');
    expect(logs.text).toContain('WRONGPASS');
    expect(logs.text).not.toContain('the-redis-password-123');
    expect(logs.text).not.toContain('a-token-value-456');
  });
});
