import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { responseProblem } from './openapi-check.js';
import { redisUrl, uniquePrefix } from './redis.js';
import { buildBrokerApp, type BrokerApp } from '../../src/app.js';
import { loadConfig, type Config, type LoadConfigOptions } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors/broker-error.js';
import type { Clock } from '../../src/lib/clock.js';
import { createLogger, type Logger } from '../../src/lib/logger.js';
import { PolyvSimulator, type PolyvSimulatorOptions, type SimAccount } from '../../src/sim/polyv-simulator.js';

export const TEST_ACCOUNT: SimAccount = {
  appId: 'testappid1',
  appSecret: 'test-secret-0123456789abcdef',
  channels: ['1000001', '1000002', '1000003', '1000004', '1000005', '2000001', '2000002', '2000003'],
};
export const TEST_KEY = 'test-consumer-key-0123456789';
export const OTHER_KEY = 'other-consumer-key-0123456789';

export { redisUrl, uniquePrefix };

export async function startSim(options: Partial<PolyvSimulatorOptions> = {}): Promise<PolyvSimulator> {
  const sim = new PolyvSimulator({ accounts: [TEST_ACCOUNT], ...options });
  await sim.listen(0);
  return sim;
}

/** The channel-token answer of the HTTP API. */
export interface TokenBody {
  channelId: string;
  channelToken: string;
  expireTime: number;
}

/** Every error answer of the HTTP API. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** The problems start-up would report for this environment (none: the config is valid). */
export function configProblems(env: Readonly<Record<string, string | undefined>>, options: LoadConfigOptions = {}): string[] {
  try {
    loadConfig(env, options);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

/** Short lifetimes for time-compressed tests: tokens live 6 s, refreshed 3 s before expiry, never served with under 1 s left. */
export const SHORT_TOKENS = {
  BROKER_TOKEN_EXPIRE_SECONDS: '6',
  BROKER_REFRESH_BEFORE_SECONDS: '3',
  BROKER_MIN_TTL_SECONDS: '1',
} as const;

/**
 * The consumer-protection policies, off unless a test turns them on (test/consumer-isolation.test.ts tests
 * them at their defaults): the other tests count PolyV calls of reports and misses as such.
 */
export const POLICIES_OFF = {
  BROKER_REPORT_MIN_AGE_SECONDS: '0',
  BROKER_REFRESH_RESERVE_PER_HOUR: '0',
  BROKER_CONSUMER_UPSTREAM_PER_HOUR: '0',
} as const;

/** A config as the broker would parse it from env, pointed at the simulator and the test Redis. */
export function testConfig(simUrl: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    REDIS_URL: redisUrl(),
    PORT: '0',
    HOST: '127.0.0.1',
    POLYV_BASE_URL: simUrl,
    POLYV_APP_ID: TEST_ACCOUNT.appId,
    POLYV_APP_SECRET: TEST_ACCOUNT.appSecret,
    POLYV_TIMEOUT_MS: '1500',
    BROKER_API_KEYS: `svc-a:${TEST_KEY},svc-b:${OTHER_KEY}`,
    BROKER_REDIS_PREFIX: uniquePrefix(),
    LOG_LEVEL: 'silent',
    ...POLICIES_OFF,
    ...env,
  });
}

/** Collects log lines in memory, for tests that assert what was (not) logged. */
export class LogCapture {
  readonly lines: string[] = [];
  readonly logger: Logger;
  constructor(level = 'info') {
    const stream = new Writable({
      write: (chunk: Buffer, _enc, done) => {
        this.lines.push(chunk.toString('utf8'));
        done();
      },
    });
    this.logger = createLogger(level, stream);
  }
  get text(): string {
    return this.lines.join('');
  }
}

export interface TestBroker {
  readonly app: BrokerApp;
  readonly url: string;
  stop(): Promise<void>;
}

export async function startBroker(
  config: Config,
  options: { clock?: Clock; logger?: Logger } = {},
): Promise<TestBroker> {
  const app = buildBrokerApp({
    config,
    redisUrl: config.redisUrl ?? redisUrl(),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  const url = await app.start();
  return { app, url, stop: () => app.stop() };
}

/** The simulator of a test file and the brokers its tests start (see `useSimulator`). */
export interface SimulatorFixture {
  /** The file's simulator (started before its first test). */
  readonly sim: PolyvSimulator;
  /** Starts a broker that is stopped after the current test (stopping it earlier is fine). */
  broker(config: Config, options?: { clock?: Clock; logger?: Logger }): Promise<TestBroker>;
}

/**
 * The lifecycle most test files share: one simulator for the file, started before its tests and closed after
 * them; after each test, every broker it started is stopped, and the simulator's fault and call log are reset.
 */
export function useSimulator(options: Partial<PolyvSimulatorOptions> = {}): SimulatorFixture {
  let sim: PolyvSimulator | undefined;
  const brokers: TestBroker[] = [];
  beforeAll(async () => {
    sim = await startSim(options);
  });
  afterEach(async () => {
    await Promise.all(brokers.splice(0).map((b) => b.stop()));
    sim?.setFault(null);
    sim?.resetCalls();
  });
  afterAll(async () => {
    await sim?.close();
  });
  return {
    get sim(): PolyvSimulator {
      if (sim === undefined) throw new Error('the simulator starts in beforeAll: use it inside tests or hooks');
      return sim;
    },
    async broker(config, brokerOptions = {}) {
      const b = await startBroker(config, brokerOptions);
      brokers.push(b);
      return b;
    },
  };
}

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

/** Calls the broker's HTTP API like a consumer would. */
export async function api<T = Record<string, unknown>>(
  baseUrl: string,
  path: string,
  init: { method?: string; body?: unknown; rawBody?: string; key?: string | null; headers?: Record<string, string> } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...init.headers };
  const key = init.key === undefined ? TEST_KEY : init.key;
  if (key !== null) headers['authorization'] = `Bearer ${key}`;
  let body: string | undefined;
  if (init.rawBody !== undefined) body = init.rawBody;
  else if (init.body !== undefined) body = JSON.stringify(init.body);
  if (body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${baseUrl}${path}`, { method: init.method ?? 'GET', headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    // leave as text
  }
  // Every answer of the HTTP tests must keep the OpenAPI description (openapi.json).
  const problem = responseProblem(init.method ?? 'GET', path, res.status, parsed);
  if (problem !== undefined) throw new Error(`the answer breaks the OpenAPI description: ${problem}`);
  return { status: res.status, headers: res.headers, body: parsed as T };
}

/** Waits until `check` returns a truthy value, polling; fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined | null | false>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
