import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/infra/redis-server.js';

/** The CLI as users run it: the built package binary (npm test builds before vitest runs). */
const BIN = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'bin.js');
const DEMO_KEY = 'demo-key-0123456789abcdef';

let dataDir: string;
let demo: ChildProcessWithoutNullStreams;
let brokerUrl: string;
let simUrl: string;
let banner = '';

function cli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    env: {
      PATH: process.env['PATH'] ?? '',
      BROKER_DATA_DIR: dataDir,
      POLYV_APP_ID: 'demoappid1',
      POLYV_APP_SECRET: 'demo-secret-not-for-production',
      POLYV_BASE_URL: simUrl,
      BROKER_API_KEYS: `demo:${DEMO_KEY}`,
      ...env,
    },
  });
}

beforeAll(async () => {
  expect(existsSync(BIN), `${BIN} missing: run npm run build`).toBe(true);
  dataDir = mkdtempSync(join(tmpdir(), 'ptb-demo-'));
  const port = await freePort();
  demo = spawn(process.execPath, [BIN, 'demo'], {
    env: { PATH: process.env['PATH'] ?? '', PORT: String(port), BROKER_DATA_DIR: dataDir, LOG_LEVEL: 'warn' },
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${banner}`)), 20_000);
    demo.stdout.on('data', (chunk: Buffer) => {
      banner += chunk.toString();
      if (banner.includes('Make the simulated PolyV fail')) {
        clearTimeout(timer);
        resolve();
      }
    });
    demo.stderr.on('data', (chunk: Buffer) => (banner += chunk.toString()));
    demo.on('exit', (code) => reject(new Error(`demo exited with ${code}:\n${banner}`)));
  });
  brokerUrl = /broker: +(\S+)/.exec(banner)![1]!;
  simUrl = /PolyV simulator: +(\S+)/.exec(banner)![1]!;
}, 40_000);

afterAll(() => {
  if (demo.exitCode === null) demo.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

describe('npm run demo (polyv-token-broker demo)', () => {
  it('prints working curl commands: a warm channel answers with a token from the simulator', async () => {
    expect(banner).toContain(`curl -s -H 'Authorization: Bearer ${DEMO_KEY}' ${brokerUrl}/v1/channels/1000001/token`);
    const res = await fetch(`${brokerUrl}/v1/channels/1000001/token`, { headers: { authorization: `Bearer ${DEMO_KEY}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { channelToken: string };
    const check = await fetch(
      `${simUrl}/__sim/check?kind=channel&channelId=1000001&token=${encodeURIComponent(body.channelToken)}`,
    );
    expect(await check.json()).toEqual({ valid: true });
  });

  it('on-call commands read the same state from the embedded Redis, with the token masked', async () => {
    const res = await fetch(`${brokerUrl}/v1/channels/1000001/token`, { headers: { authorization: `Bearer ${DEMO_KEY}` } });
    const { channelToken } = (await res.json()) as { channelToken: string };

    const inspect = cli(['inspect', '1000001', '--json']);
    expect(inspect.status, inspect.stderr).toBe(0);
    const detail = JSON.parse(inspect.stdout);
    expect(detail).toMatchObject({ channelId: '1000001', warm: 'pinned', callsLastHour: 1, budgetPerHour: 450 });
    // Between refreshes a channel has no job: it waits in the warm set's schedule.
    expect(detail.job.state).toBe('missing');
    expect(detail.nextRefreshAt).toBeGreaterThan(Date.now());
    expect(detail.token).toBe(`${channelToken.slice(0, 4)}…${channelToken.slice(-4)} (32 chars)`);
    expect(inspect.stdout).not.toContain(channelToken);

    const human = cli(['inspect', '1000001']);
    expect(human.stdout).toMatch(/next refresh: +\d{4}-/);
    expect(human.stdout).not.toContain(channelToken);

    const channels = cli(['channels', '--json']);
    const listed = JSON.parse(channels.stdout) as { channels: Array<{ channelId: string }> };
    expect(listed.channels.map((c) => c.channelId)).toEqual(['1000001', '1000002']);

    const refreshed = cli(['refresh', '1000001', '--json']);
    expect(refreshed.status, refreshed.stderr).toBe(0);
    expect(refreshed.stdout).not.toContain(channelToken);
    const budget = cli(['budget', '1000001', '--json']);
    expect(JSON.parse(budget.stdout)).toMatchObject({ channelId: '1000001', callsLastHour: 2, remaining: 448 });

    const after = await fetch(`${brokerUrl}/v1/channels/1000001/token`, { headers: { authorization: `Bearer ${DEMO_KEY}` } });
    expect(((await after.json()) as { channelToken: string }).channelToken).not.toBe(channelToken);

    const named = cli(['budget', '--account', 'default', '1000001', '--json']);
    expect(JSON.parse(named.stdout)).toMatchObject({ channelId: '1000001', callsLastHour: 2 });
    const unknown = cli(['channels', '--account', 'nope']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('--account needs one of: default');

    const bad = cli(['budget', 'abc']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('channel ID must be 1-20 digits');
  });

  it('on-call sees warm windows and the warm set by mode', async () => {
    const warmFrom = Date.now() + 3_600_000;
    const warmUntil = warmFrom + 7_200_000;
    const put = await fetch(`${brokerUrl}/v1/channels/3151318`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${DEMO_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ warmFrom, warmUntil }),
    });
    expect(put.status).toBe(200);

    const listed = JSON.parse(cli(['channels', '--json']).stdout) as { channels: Array<Record<string, unknown>> };
    expect(listed.channels.find((c) => c['channelId'] === '3151318')).toMatchObject({ warm: false, warmFrom, warmUntil });
    const table = cli(['channels']).stdout;
    expect(table).toMatch(new RegExp(`3151318\\tno\\t.*\\t${new Date(warmFrom).toISOString()}\\.\\.${new Date(warmUntil).toISOString()}`));
    const human = cli(['inspect', '3151318']).stdout;
    expect(human).toContain(`window:        ${new Date(warmFrom).toISOString()}..${new Date(warmUntil).toISOString()}`);
    const summary = JSON.parse(cli(['inspect', '--json']).stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ warmByMode: { pinned: 2, 'on-demand': 0, window: 1 }, warmCapacityChannels: 394_200, keySchema: 2 });
  });

  it('stops cleanly on SIGTERM (exit 0) and removes the embedded Redis address', async () => {
    const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
    demo.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(existsSync(join(dataDir, 'redis-url'))).toBe(false);
  });
});

describe('polyv-token-broker serve', () => {
  it('when the configuration is invalid, then it exits 2 naming each variable, before touching Redis', () => {
    const res = spawnSync(process.execPath, [BIN, 'serve'], {
      encoding: 'utf8',
      timeout: 10_000,
      env: { PATH: process.env['PATH'] ?? '', POLYV_APP_ID: 'app', POLYV_APP_SECRET: 's', BROKER_API_KEYS: 'a:short', PORT: 'x' },
    });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('PORT must be a whole number');
    expect(res.stderr).not.toContain('short');
  });

  it('help lists the commands; an unknown command exits 2', () => {
    expect(spawnSync(process.execPath, [BIN, 'help'], { encoding: 'utf8' }).stdout).toContain('inspect [channelId]');
    expect(spawnSync(process.execPath, [BIN, 'nope'], { encoding: 'utf8' }).status).toBe(2);
  });
});
