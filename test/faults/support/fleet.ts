import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedisServer, type RedisServerHandle } from '../../../src/infra/redis-server.js';
import type { SimCall, SimFault } from '../../../src/sim/polyv-simulator.js';

/** The built CLI the suite runs as real processes (the global setup builds it). */
export const BIN = resolve('dist/src/cli/bin.js');

export const FAULT_ACCOUNT = { appId: 'faultsapp1', appSecret: 'faults-secret-0123456789abcdef' } as const;
export const FAULT_KEY = 'faults-consumer-key-0123456789';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Something a process did that the suite never allows: an exit we did not cause, an unhandled error. */
export interface ProcessProblem {
  readonly process: string;
  readonly at: number;
  readonly what: string;
}

/** A child process of the suite, with its output scanned line by line for trouble. */
export class ChildProc {
  readonly name: string;
  readonly port: number;
  private child: ChildProcess | undefined;
  private expectExit = false;
  private readonly tail: string[] = [];
  /** Pino lines at error level or above, by message (a count of each), and the first of each in full. */
  readonly errorLines = new Map<string, number>();
  readonly errorSamples = new Map<string, string>();
  /** Every run of 32+ hex digits in a broker's output: the tokens served must never be among them. */
  readonly hexSeen = new Set<string>();
  /** Exit codes of graceful stops (SIGTERM): 0 is the only clean answer. */
  readonly stopExitCodes: Array<number | null> = [];

  constructor(
    name: string,
    port: number,
    private readonly args: readonly string[],
    private readonly env: Record<string, string>,
    private readonly problems: ProcessProblem[],
    /** API keys that must never appear in this process's output (besides the appSecret). */
    private readonly secrets: readonly string[] = [FAULT_KEY],
  ) {
    this.name = name;
    this.port = port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts the process and resolves once `healthPath` answers 200. */
  async start(healthPath: string, timeoutMs = 20_000): Promise<void> {
    this.expectExit = false;
    const child = spawn(process.execPath, [BIN, ...this.args], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const onLine = (line: string) => this.scan(line);
    lineReader(child.stdout, onLine);
    lineReader(child.stderr, onLine);
    child.on('exit', (code, signal) => {
      if (!this.expectExit) {
        this.problems.push({ process: this.name, at: Date.now(), what: `exited unexpectedly (code ${code}, signal ${signal})\n${this.tail.slice(-20).join('\n')}` });
      }
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`${this.name} exited during start-up:\n${this.tail.join('\n')}`);
      try {
        const res = await fetch(`${this.url}${healthPath}`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`${this.name} not healthy within ${timeoutMs} ms:\n${this.tail.join('\n')}`);
      await sleep(100);
    }
  }

  /** SIGKILL: no shutdown code runs, as when the host dies or the OOM killer strikes. */
  async kill(): Promise<void> {
    await this.signalAndWait('SIGKILL', 5000);
  }

  /** SIGTERM and wait; the exit code is kept for the clean-shutdown assertion. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (!this.running) return;
    const code = await this.signalAndWait('SIGTERM', timeoutMs);
    this.stopExitCodes.push(code);
  }

  /** SIGSTOP / SIGCONT: the process freezes with its sockets open. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Resident memory from /proc, in bytes (undefined once the process is gone). */
  rssBytes(): number | undefined {
    if (this.pid === undefined || !this.running) return undefined;
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
      return kb === undefined ? undefined : Number(kb) * 1024;
    } catch {
      return undefined;
    }
  }

  lastLines(n = 30): string {
    return this.tail.slice(-n).join('\n');
  }

  private async signalAndWait(signal: NodeJS.Signals, timeoutMs: number): Promise<number | null> {
    const child = this.child;
    if (child === undefined || !this.running) return child?.exitCode ?? null;
    this.expectExit = true;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  private scan(line: string): void {
    this.tail.push(line);
    if (this.tail.length > 200) this.tail.shift();
    if (/unhandled|uncaught/i.test(line)) this.problems.push({ process: this.name, at: Date.now(), what: line.slice(0, 2000) });
    if (this.name !== 'sim') {
      if (line.includes(FAULT_ACCOUNT.appSecret) || this.secrets.some((key) => line.includes(key))) {
        this.problems.push({ process: this.name, at: Date.now(), what: 'a secret (appSecret or API key) in the output' });
      }
      for (const hex of line.match(/[0-9a-f]{32,}/g) ?? []) if (this.hexSeen.size < 100_000) this.hexSeen.add(hex);
    }
    if (!line.startsWith('{')) return;
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string };
      if ((entry.level ?? 0) >= 60) this.problems.push({ process: this.name, at: Date.now(), what: `fatal: ${line.slice(0, 2000)}` });
      if ((entry.level ?? 0) >= 50) {
        const msg = entry.msg ?? '(no msg)';
        this.errorLines.set(msg, (this.errorLines.get(msg) ?? 0) + 1);
        if (!this.errorSamples.has(msg)) this.errorSamples.set(msg, line.slice(0, 1000));
      }
    } catch {
      // not JSON: already scanned as text
    }
  }
}

function lineReader(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      onLine(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
    if (buffered.length > 100_000) buffered = buffered.slice(-10_000);
  });
}

export interface FleetOptions {
  /** BROKER_CHANNELS: warm from start-up, re-seeded by reconcile. */
  warmChannels: readonly string[];
  /** Channels the simulated account owns (warm ones and others for cold requests). */
  simChannels: readonly string[];
  /** Broker settings on top of the suite's defaults (timings, budget). */
  env?: Record<string, string>;
  apiReplicas?: number;
  workers?: number;
  /** Consumers besides `faults` (FAULT_KEY), by name: their API keys (16+ characters), added to BROKER_API_KEYS. */
  consumers?: Readonly<Record<string, string>>;
}

/** Timings every fleet shares unless a scenario overrides them. */
export const FLEET_DEFAULTS: Record<string, string> = {
  POLYV_TIMEOUT_MS: '1000',
  POLYV_CONNECT_TIMEOUT_MS: '500',
  BROKER_TOKEN_EXPIRE_SECONDS: '20',
  BROKER_REFRESH_BEFORE_SECONDS: '14',
  BROKER_MIN_TTL_SECONDS: '2',
  BROKER_RECONCILE_INTERVAL_SECONDS: '3',
  BROKER_CHANNEL_BUDGET_PER_HOUR: '450',
  BROKER_SHUTDOWN_TIMEOUT_MS: '5000',
  // The suite stops processes one after another: no drain (test/drain.test.ts covers it).
  BROKER_DRAIN_SECONDS: '0',
  LOG_LEVEL: 'warn',
  // The consumer-protection policies are off unless a scenario turns them on (consumer-isolation.test.ts):
  // the other scenarios count the PolyV calls of reports and cold reads of one consumer as such.
  BROKER_REPORT_MIN_AGE_SECONDS: '0',
  BROKER_REFRESH_RESERVE_PER_HOUR: '0',
  BROKER_CONSUMER_UPSTREAM_PER_HOUR: '0',
  // Time-compressed like the tokens (20 s): PolyV's 5-minute block after `qps exceeds` would outlast them.
  BROKER_UPSTREAM_PAUSE_SECONDS: '2',
};

/**
 * The system under test as real processes on loopback: one redis-server (on a fixed port, so it can be
 * killed and started again where the replicas expect it), the PolyV simulator, API replicas and workers.
 */
export class Fleet {
  readonly problems: ProcessProblem[] = [];
  readonly apis: ChildProc[] = [];
  readonly workers: ChildProc[] = [];
  sim!: ChildProc;
  redis: RedisServerHandle | undefined;
  redisPort = 0;
  redisDir = '';
  readonly env: Record<string, string>;
  private readonly root: string;

  constructor(readonly options: FleetOptions) {
    this.env = { ...FLEET_DEFAULTS, ...options.env };
    this.root = mkdtempSync(join(tmpdir(), 'ptb-faults-'));
  }

  get redisUrl(): string {
    return `redis://127.0.0.1:${this.redisPort}`;
  }

  get simUrl(): string {
    return this.sim.url;
  }

  get minTtlMs(): number {
    return Number(this.env['BROKER_MIN_TTL_SECONDS']) * 1000;
  }

  get expireSeconds(): number {
    return Number(this.env['BROKER_TOKEN_EXPIRE_SECONDS']);
  }

  get budgetPerHour(): number {
    return Number(this.env['BROKER_CHANNEL_BUDGET_PER_HOUR']);
  }

  get brokers(): ChildProc[] {
    return [...this.apis, ...this.workers];
  }

  async start(): Promise<void> {
    this.redisPort = await freePort();
    await this.startRedis({ fresh: true });
    const simPort = await freePort();
    this.sim = new ChildProc('sim', simPort, ['sim'], {
      SIM_PORT: String(simPort),
      SIM_HOST: '127.0.0.1',
      SIM_APP_ID: FAULT_ACCOUNT.appId,
      SIM_APP_SECRET: FAULT_ACCOUNT.appSecret,
      SIM_CHANNELS: this.options.simChannels.join(','),
    }, this.problems);
    await this.sim.start('/__sim/health');
    for (let i = 0; i < (this.options.workers ?? 2); i++) this.workers.push(await this.broker(`worker-${i + 1}`, 'worker'));
    for (let i = 0; i < (this.options.apiReplicas ?? 3); i++) this.apis.push(await this.broker(`api-${i + 1}`, 'api'));
    await Promise.all(this.brokers.map((p) => p.start('/readyz')));
  }

  /** Stops everything gracefully (brokers first) and removes the data directories. */
  async stop(): Promise<void> {
    await Promise.all(this.apis.map((p) => p.stop()));
    await Promise.all(this.workers.map((p) => p.stop()));
    await this.sim?.stop();
    await this.redis?.stop();
    rmSync(this.root, { recursive: true, force: true });
  }

  /** redis-server on the fleet's port: `fresh` = a new empty data directory, else the previous one (its AOF). */
  async startRedis(options: { fresh: boolean }): Promise<void> {
    if (options.fresh || this.redisDir === '') this.redisDir = mkdtempSync(join(this.root, 'redis-'));
    this.redis = await startRedisServer({ dir: this.redisDir, port: this.redisPort, appendOnly: true });
  }

  /** SIGKILL redis-server: no shutdown save, connections drop at once. */
  killRedis(): Promise<void> {
    const redis = this.redis;
    if (redis?.pid === undefined) return Promise.resolve();
    this.redis = undefined;
    const gone = redis.stop(); // resolves on exit; the SIGTERM it sends is overtaken by SIGKILL
    process.kill(redis.pid, 'SIGKILL');
    return gone;
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) redis-server: connections stay open but nothing answers. */
  pauseRedis(paused: boolean): void {
    if (this.redis?.pid !== undefined) process.kill(this.redis.pid, paused ? 'SIGSTOP' : 'SIGCONT');
  }

  private async broker(name: string, role: 'api' | 'worker'): Promise<ChildProc> {
    const port = await freePort();
    return new ChildProc(name, port, ['serve'], {
      ...this.env,
      BROKER_ROLE: role,
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: this.redisUrl,
      POLYV_BASE_URL: `http://127.0.0.1:${this.sim.port}`,
      POLYV_APP_ID: FAULT_ACCOUNT.appId,
      POLYV_APP_SECRET: FAULT_ACCOUNT.appSecret,
      BROKER_API_KEYS: [`faults:${FAULT_KEY}`, ...Object.entries(this.options.consumers ?? {}).map(([n, key]) => `${n}:${key}`)].join(','),
      BROKER_CHANNELS: this.options.warmChannels.join(','),
    }, this.problems, [FAULT_KEY, ...Object.values(this.options.consumers ?? {})]);
  }

  /** Whether each channel is in the warm set's schedule ('scheduled') or not ('missing'). */
  async scheduleStates(channels: readonly string[]): Promise<Record<string, string>> {
    const redis = new Redis({ host: '127.0.0.1', port: this.redisPort, lazyConnect: true });
    try {
      await redis.connect();
      const out: Record<string, string> = {};
      for (const ch of channels) out[ch] = (await redis.zscore(`ptb:{${FAULT_ACCOUNT.appId}}:schedule`, ch)) === null ? 'missing' : 'scheduled';
      return out;
    } finally {
      await redis.quit();
    }
  }

  // ---- the simulator's admin API ----

  async setFault(fault: SimFault): Promise<void> {
    const res = await fetch(`${this.simUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify(fault) });
    if (res.status !== 200) throw new Error(`sim refused fault: ${await res.text()}`);
    await res.arrayBuffer().catch(() => undefined);
  }

  async clearFault(): Promise<void> {
    const res = await fetch(`${this.simUrl}/__sim/faults`, { method: 'DELETE' });
    await res.arrayBuffer();
  }

  /** get-channel-token calls the simulator received, optionally for one channel. */
  async channelTokenCalls(channelId?: string): Promise<SimCall[]> {
    const q = new URLSearchParams({ endpoint: 'get-channel-token', ...(channelId === undefined ? {} : { channelId }) });
    const res = await fetch(`${this.simUrl}/__sim/calls?${q.toString()}`);
    return ((await res.json()) as { calls: SimCall[] }).calls;
  }

  async checkToken(channelId: string, token: string): Promise<{ valid: boolean; reason?: string }> {
    const q = new URLSearchParams({ kind: 'channel', channelId, token });
    const res = await fetch(`${this.simUrl}/__sim/check?${q.toString()}`);
    return (await res.json()) as { valid: boolean; reason?: string };
  }

  // ---- the brokers' ops endpoints ----

  async readyz(p: ChildProc): Promise<number> {
    try {
      const res = await fetch(`${p.url}/readyz`, { signal: AbortSignal.timeout(3000) });
      await res.arrayBuffer();
      return res.status;
    } catch {
      return 0;
    }
  }

  /** The Prometheus text of one process, parsed into `name{labels}` → value. */
  async metrics(p: ChildProc, timeoutMs = 5000): Promise<Map<string, number>> {
    const res = await fetch(`${p.url}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    const out = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const space = line.lastIndexOf(' ');
      out.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
    return out;
  }

  /** Tokens that some broker process wrote to its output (logs): must be none. */
  leakedTokens(tokens: ReadonlyArray<{ token: string }>): string[] {
    return tokens.filter((t) => this.brokers.some((p) => p.hexSeen.has(t.token))).map((t) => `${t.token.slice(0, 4)}…`);
  }

  /** Problems so far, as text (empty when none): alike lines counted once, each cut short. */
  describeProblems(): string {
    const counts = new Map<string, number>();
    for (const p of this.problems) {
      const key = `[${p.process}] ${p.what.replace(/"time":"[^"]*",?/, '').slice(0, 400)}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return [...counts].map(([line, n]) => (n > 1 ? `${line} (×${n})` : line)).join('\n');
  }
}

/** get-channel-token calls per channel in the run (< 1 hour, so this is the rolling-hour count). */
export function callsPerChannel(calls: readonly SimCall[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const c of calls) if (c.channelId !== undefined) out.set(c.channelId, (out.get(c.channelId) ?? 0) + 1);
  return out;
}

/** Successful, non-disposable channel-token issues: each one replaced (and at PolyV may invalidate) the previous token. */
export function issues(calls: readonly SimCall[]): SimCall[] {
  return calls.filter((c) => c.code === 200 && c.httpStatus === 200 && c.params['disposable'] !== 'true');
}

export { sleep };

/** Sum of a metric's series whose labels include `labels` (any label order). */
export function metricSum(metrics: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [key, value] of metrics) {
    const brace = key.indexOf('{');
    if ((brace < 0 ? key : key.slice(0, brace)) !== name) continue;
    const text = brace < 0 ? '' : key.slice(brace);
    if (Object.entries(labels).every(([k, v]) => text.includes(`${k}="${v}"`))) sum += value;
  }
  return sum;
}
