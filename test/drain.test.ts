import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, fetch } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/infra/redis-server.js';
import type { PolyvSimulator } from '../src/sim/polyv-simulator.js';
import { TEST_ACCOUNT, TEST_KEY, redisUrl, startSim, uniquePrefix } from './support/harness.js';

/**
 * A rolling update behind a load balancer, with real broker processes: an old and a new replica serve one
 * channel; a load balancer polls their /readyz and sends a steady stream of token requests to the ready ones;
 * the old replica gets SIGTERM right after a poll, so the balancer keeps sending to it until its next poll, as a
 * real one does. With BROKER_DRAIN_SECONDS the balancer sees 503 and moves away before the replica closes: no
 * request is refused. With 0 (the behaviour before the drain) the replica closes at once and requests fail.
 */

const BIN = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'bin.js');
const CHANNEL = '1000001';
/** How often the balancer asks /readyz: shorter than the 2-s drain, as a Kubernetes readiness period must be. */
const POLL_MS = 300;
const CLIENTS = 4;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A broker as a real process (`polyv-token-broker serve`), and what it printed. */
class Replica {
  readonly url: string;
  readonly exited: Promise<{ code: number | null; at: number }>;
  output = '';
  private constructor(
    readonly name: string,
    port: number,
    readonly child: ChildProcessWithoutNullStreams,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    child.stdout.on('data', (c: Buffer) => (this.output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (this.output += c.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve({ code, at: Date.now() })));
  }

  static async start(name: string, env: Record<string, string>): Promise<Replica> {
    const port = await freePort();
    const child = spawn(process.execPath, [BIN, 'serve'], {
      env: { PATH: process.env['PATH'] ?? '', PORT: String(port), HOST: '127.0.0.1', ...env },
    });
    const replica = new Replica(name, port, child);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${name} exited during start-up:\n${replica.output}`);
      const status = await fetch(`${replica.url}/readyz`).then(
        async (r) => (await r.arrayBuffer(), r.status),
        () => 0,
      );
      if (status === 200) return replica;
      if (Date.now() > deadline) throw new Error(`${name} not ready:\n${replica.output}`);
      await sleep(100);
    }
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}

interface Outcome {
  replica: string;
  at: number;
  /** HTTP status, or the error a refused or broken connection gave. */
  result: number | string;
}

/** Round-robin over the replicas whose last /readyz answered 200, polled every POLL_MS. */
class LoadBalancer {
  readonly outcomes: Outcome[] = [];
  /** When each replica was last taken out of rotation. */
  readonly removedAt = new Map<string, number>();
  private inRotation: Replica[];
  private next = 0;
  private running = true;
  private polled: Array<() => void> = [];
  private readonly agent = new Agent({ keepAliveTimeout: 10_000 });
  private readonly loops: Array<Promise<void>>;

  constructor(private readonly replicas: readonly Replica[]) {
    this.inRotation = [...replicas];
    this.loops = [this.pollLoop(), ...Array.from({ length: CLIENTS }, () => this.clientLoop())];
  }

  /** Resolves right after the next readiness poll has updated the rotation. */
  nextPoll(): Promise<void> {
    return new Promise((resolve) => this.polled.push(resolve));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await this.agent.close();
  }

  private async pollLoop(): Promise<void> {
    while (this.running) {
      const ready = await Promise.all(
        this.replicas.map((r) =>
          fetch(`${r.url}/readyz`, { dispatcher: this.agent, signal: AbortSignal.timeout(POLL_MS) }).then(
            async (res) => (await res.arrayBuffer(), res.status === 200),
            () => false,
          ),
        ),
      );
      for (const r of this.inRotation) if (!ready[this.replicas.indexOf(r)]) this.removedAt.set(r.name, Date.now());
      this.inRotation = this.replicas.filter((_, i) => ready[i]);
      for (const resolve of this.polled.splice(0)) resolve();
      await sleep(POLL_MS);
    }
  }

  private async clientLoop(): Promise<void> {
    while (this.running) {
      const replica = this.inRotation[this.next++ % Math.max(1, this.inRotation.length)];
      if (replica === undefined) {
        await sleep(5);
        continue;
      }
      const at = Date.now();
      const result = await fetch(`${replica.url}/v1/channels/${CHANNEL}/token`, {
        dispatcher: this.agent,
        headers: { authorization: `Bearer ${TEST_KEY}` },
      }).then(
        async (res) => (await res.arrayBuffer(), res.status),
        (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
      );
      this.outcomes.push({ replica: replica.name, at, result });
    }
  }
}

let sim: PolyvSimulator;
const replicas: Replica[] = [];

beforeAll(async () => {
  expect(existsSync(BIN), `${BIN} missing: run npm run build`).toBe(true);
  sim = await startSim();
});

afterEach(() => {
  for (const r of replicas.splice(0)) if (r.running) r.child.kill('SIGKILL');
});

afterAll(async () => {
  await sim.close();
});

function replicaEnv(): Record<string, string> {
  return {
    REDIS_URL: redisUrl(),
    BROKER_REDIS_PREFIX: uniquePrefix(),
    POLYV_BASE_URL: sim.url,
    POLYV_APP_ID: TEST_ACCOUNT.appId,
    POLYV_APP_SECRET: TEST_ACCOUNT.appSecret,
    BROKER_API_KEYS: `lb:${TEST_KEY}`,
    BROKER_ROLE: 'api',
    LOG_LEVEL: 'info',
  };
}

/** Old and new replica on one Redis prefix, the channel's token cached; the old one drains for `drainSeconds`. */
async function rollingUpdate(drainSeconds: number) {
  const env = replicaEnv();
  const [old, fresh] = await Promise.all([
    Replica.start('old', { ...env, BROKER_DRAIN_SECONDS: String(drainSeconds) }),
    Replica.start('new', env),
  ]);
  replicas.push(old, fresh);
  const lb = new LoadBalancer([old, fresh]);
  await sleep(500);
  await lb.nextPoll();
  const sigtermAt = Date.now();
  old.child.kill('SIGTERM');
  // A client whose routing is stale asks the old replica directly, halfway through the drain.
  const straggler =
    drainSeconds > 0
      ? sleep(drainSeconds * 500).then(() => fetch(`${old.url}/v1/channels/${CHANNEL}/token`, { headers: { authorization: `Bearer ${TEST_KEY}` } }))
      : undefined;
  const readyDuringDrain = sleep(POLL_MS / 2).then(() =>
    fetch(`${old.url}/readyz`).then(
      async (r) => ({ status: r.status, body: await r.json() }),
      () => undefined,
    ),
  );
  const exit = await old.exited;
  await sleep(500);
  await lb.stop();
  return { old, lb, sigtermAt, exit, straggler: await straggler, readyDuringDrain: await readyDuringDrain };
}

describe('drain on SIGTERM (BROKER_DRAIN_SECONDS)', () => {
  it('when the old replica is stopped during a rolling update, then /readyz says draining while it still serves, the balancer moves away, and no request is refused', async () => {
    const { old, lb, sigtermAt, exit, straggler, readyDuringDrain } = await rollingUpdate(2);
    const failed = lb.outcomes.filter((o) => o.result !== 200);
    expect(failed, JSON.stringify(failed.slice(0, 5))).toEqual([]);
    expect(lb.outcomes.length).toBeGreaterThan(100);
    // It served after the SIGTERM, reported not ready meanwhile, and closed only after the drain.
    expect(lb.outcomes.some((o) => o.replica === 'old' && o.at > sigtermAt)).toBe(true);
    expect(readyDuringDrain).toEqual({ status: 503, body: { status: 'not_ready', checks: { redis: 'ok', shutdown: 'draining' } } });
    expect(straggler?.status).toBe(200);
    expect(straggler?.headers.get('connection')).toBe('close');
    const removedAt = lb.removedAt.get('old');
    expect(removedAt, 'the balancer took the old replica out').toBeDefined();
    expect(removedAt! - sigtermAt).toBeLessThan(2 * POLL_MS + 200);
    expect(exit.at - sigtermAt).toBeGreaterThanOrEqual(2000);
    expect(exit.code, old.output).toBe(0);
    expect(old.output).toContain('draining: not ready (/readyz 503), still serving, then shutting down');
    // Every request after the balancer noticed went to the new replica.
    expect(lb.outcomes.filter((o) => o.replica === 'old' && o.at > removedAt!)).toEqual([]);
  });

  it('when BROKER_DRAIN_SECONDS is 0, then SIGTERM closes at once and requests the balancer still routes there fail', async () => {
    const { old, lb, sigtermAt, exit } = await rollingUpdate(0);
    expect(exit.code, old.output).toBe(0);
    expect(exit.at - sigtermAt).toBeLessThan(2000);
    const failedOnOld = lb.outcomes.filter((o) => o.replica === 'old' && o.result !== 200);
    expect(failedOnOld.length).toBeGreaterThan(0);
    expect(old.output).not.toContain('draining');
  });

  it('when a second signal arrives during the drain, or the first is SIGINT, then it shuts down at once', async () => {
    const env = { ...replicaEnv(), BROKER_DRAIN_SECONDS: '60' };
    const [twice, interrupted] = await Promise.all([Replica.start('twice', env), Replica.start('interrupted', env)]);
    replicas.push(twice, interrupted);
    const sentAt = Date.now();
    twice.child.kill('SIGTERM');
    interrupted.child.kill('SIGINT');
    await sleep(300);
    expect(twice.running, 'still draining after one SIGTERM').toBe(true);
    twice.child.kill('SIGTERM');
    const [a, b] = await Promise.all([twice.exited, interrupted.exited]);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(a.at - sentAt).toBeLessThan(5000);
    expect(b.at - sentAt).toBeLessThan(2000);
    expect(interrupted.output).not.toContain('draining');
  });
});
