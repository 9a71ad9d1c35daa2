import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis, type RedisOptions } from 'ioredis';
import { ensureRedisServerBinary, freePort } from '../../src/infra/redis-server.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A Redis Cluster of redis-server processes on loopback, started by a test. */
export interface RedisClusterHandle {
  /** The masters' ports. */
  readonly ports: readonly number[];
  /** `127.0.0.1:P1,127.0.0.1:P2,...`, the value for REDIS_CLUSTER_NODES. */
  readonly seeds: string;
  /** A connection to each master as the `default` user (for assertions node by node); closed by stop(). */
  readonly masters: readonly Redis[];
  stop(): Promise<void>;
}

/** PEM files of a private CA and of a server certificate it signed for 127.0.0.1 and localhost. */
export interface TestCertificates {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Makes a CA and a server certificate (IP 127.0.0.1, DNS localhost) with openssl, in `into`. */
export function makeTestCertificates(into: string): TestCertificates {
  mkdirSync(into, { recursive: true });
  const f = (name: string) => join(into, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=ptb cluster test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', f('node.key'), '-out', f('node.csr'));
  // The nodes present this certificate to clients and, on the cluster bus, to each other.
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  ssl('x509', '-req', '-in', f('node.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('san.ext'), '-out', f('node.pem'));
  return { ca: f('ca.pem'), cert: f('node.pem'), key: f('node.key') };
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Processes this module started and has not stopped: killed when the test process exits, whatever happened. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function track(child: ChildProcess): ChildProcess {
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise<void>((done) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      done();
      return;
    }
    child.once('exit', () => done());
    child.kill('SIGTERM');
  });
}

/**
 * Starts `masters` redis-server processes with `--cluster-enabled yes` on free loopback ports, each in a
 * directory of its own under `dir` (no persistence), joins them with `redis-cli --cluster create` (no
 * replicas) and resolves once every node reports `cluster_state:ok`. With `password`, every node requires
 * it for the `default` user (`requirepass`, and `masterauth` for the cluster's own links). With `tls`, the
 * nodes speak TLS only (`--port 0`), to clients and on the cluster bus.
 */
export async function startRedisCluster(options: {
  dir: string;
  masters?: number;
  password?: string;
  tls?: TestCertificates;
  /** More redis-server arguments for every node, e.g. an ACL user (`--user ...`). */
  args?: readonly string[];
}): Promise<RedisClusterHandle> {
  ensureRedisServerBinary();
  const count = options.masters ?? 3;
  const { tls, password } = options;
  const auth = password === undefined ? [] : ['--requirepass', password, '--masterauth', password];
  const children: ChildProcess[] = [];
  const masters: Redis[] = [];
  const ports: number[] = [];
  const stop = async () => {
    for (const m of masters) m.disconnect();
    await Promise.all(children.map(stopChild));
  };
  const connection = (port: number): RedisOptions => ({
    host: '127.0.0.1',
    port,
    password,
    maxRetriesPerRequest: 1,
    ...(tls === undefined ? {} : { tls: { ca: readFileSync(tls.ca) } }),
  });
  try {
    for (let i = 0; i < count; i++) {
      const dir = join(options.dir, `node-${i}`);
      mkdirSync(dir, { recursive: true });
      const port = await freePort();
      const listen =
        tls === undefined
          ? ['--port', String(port)]
          : ['--port', '0', '--tls-port', String(port), '--tls-cluster', 'yes', '--tls-replication', 'yes', '--tls-auth-clients', 'no',
             '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca];
      const args = [
        ...listen, '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction',
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000',
        ...auth, ...(options.args ?? []),
      ];
      const child = track(spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] }));
      children.push(child);
      ports.push(port);
      const m = new Redis({ ...connection(port), lazyConnect: true, retryStrategy: () => 50 });
      m.on('error', () => undefined);
      masters.push(m);
      await waitFor(
        `redis-server on ${port} did not answer`,
        async () => {
          if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
          if (m.status === 'wait') await m.connect();
          return (await m.ping()) === 'PONG';
        },
        10_000,
      );
    }
    const addresses = ports.map((p) => `127.0.0.1:${p}`);
    const cliAuth = password === undefined ? [] : ['-a', password, '--no-auth-warning'];
    const cliTls = tls === undefined ? [] : ['--tls', '--cacert', tls.ca];
    await run('redis-cli', [...cliTls, ...cliAuth, '--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 20_000,
    });
    await waitFor(
      'cluster_state:ok on every node',
      async () => (await Promise.all(masters.map((m) => m.cluster('INFO')))).every((info) => String(info).includes('cluster_state:ok')),
      15_000,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { ports, seeds: ports.map((p) => `127.0.0.1:${p}`).join(','), masters, stop };
}

/** A redis-server in Sentinel mode, started by a test. */
export interface RedisSentinelHandle {
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Starts one Sentinel on a free loopback port watching the master at 127.0.0.1:`masterPort` under
 * `masterName` (quorum 1), with `masterPassword` to reach the master and `password` as its own
 * `requirepass`; resolves once it names the master.
 */
export async function startRedisSentinel(options: {
  dir: string;
  masterName: string;
  masterPort: number;
  masterPassword?: string;
  password?: string;
}): Promise<RedisSentinelHandle> {
  ensureRedisServerBinary();
  mkdirSync(options.dir, { recursive: true });
  const port = await freePort();
  const conf = join(options.dir, 'sentinel.conf');
  // Sentinel rewrites its configuration file, so it gets one of its own.
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${options.dir}`,
      `sentinel monitor ${options.masterName} 127.0.0.1 ${options.masterPort} 1`,
      `sentinel down-after-milliseconds ${options.masterName} 2000`,
      `sentinel failover-timeout ${options.masterName} 10000`,
      ...(options.masterPassword === undefined ? [] : [`sentinel auth-pass ${options.masterName} ${options.masterPassword}`]),
      ...(options.password === undefined ? [] : [`requirepass ${options.password}`]),
      '',
    ].join('\n'),
  );
  const child = track(spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', 'ignore', 'inherit'] }));
  const stop = () => stopChild(child);
  const client = new Redis({ host: '127.0.0.1', port, password: options.password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 100 });
  client.on('error', () => undefined);
  try {
    await waitFor(
      `Sentinel on port ${port} did not name master ${options.masterName}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`redis-sentinel exited with code ${child.exitCode}`);
        if (client.status === 'wait') await client.connect();
        const addr = (await client.call('SENTINEL', 'get-master-addr-by-name', options.masterName)) as string[] | null;
        return addr !== null && addr[1] === String(options.masterPort);
      },
      10_000,
    );
  } catch (err) {
    await stop();
    throw err;
  } finally {
    client.disconnect();
  }
  return { port, stop };
}
