import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort } from '../../src/infra/redis-server.js';

/**
 * The broker as released before key schema v2 (0.2.0, commit 0fea743): its compiled `dist/src` and
 * package.json, packed into a fixture. Extracted under the repository's node_modules, it runs on this
 * checkout's dependencies (the same bullmq, ioredis, express and undici), as an old replica would in a
 * rolling upgrade.
 */
const FIXTURE = resolve('test/fixtures/broker-v1/polyv-token-broker-v1-0.2.0.tgz');
const HOME = resolve('node_modules/.cache/polyv-token-broker-v1');

function v1Bin(): string {
  const bin = join(HOME, 'package/dist/src/cli/bin.js');
  if (!existsSync(bin)) {
    mkdirSync(HOME, { recursive: true });
    const untar = spawnSync('tar', ['-xzf', FIXTURE, '-C', HOME]);
    if (untar.status !== 0) throw new Error(`could not extract the v1 broker: ${untar.stderr.toString()}`);
  }
  return bin;
}

export interface V1Broker {
  readonly url: string;
  /** What the process wrote (its log lines), for a failing test's message. */
  readonly output: string[];
  stop(): Promise<void>;
}

/** Starts a v1 broker replica (`serve`) with `env` and waits until it reports ready. */
export async function startV1Broker(env: Record<string, string>): Promise<V1Broker> {
  const port = await freePort();
  const output: string[] = [];
  const child: ChildProcess = spawn(process.execPath, [v1Bin(), 'serve'], {
    env: { PATH: process.env['PATH'] ?? '', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the v1 broker exited with ${child.exitCode}: ${output.join('')}`);
    const ready = await fetch(`${url}/readyz`).then((r) => r.status === 200, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the v1 broker did not become ready: ${output.join('')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    output,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) return done();
        child.once('exit', () => done());
        child.kill('SIGTERM');
      }),
  };
}
