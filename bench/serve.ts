/**
 * A server under load, as a child of the bench: `serve.js bare|broker WORKERS`. `bare` is the baseline, a
 * node:http server that answers every request with the broker's token JSON and headers; `broker` is the
 * real broker (buildBrokerApp, configured from the environment like production). With WORKERS > 1 the
 * processes share the port through node:cluster.
 */
import cluster from 'node:cluster';
import { createServer } from 'node:http';
import { buildBrokerApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { serveCommands } from './support.js';

const [kind = 'broker', workersArg = '1'] = process.argv.slice(2);
const workers = Number(workersArg);
const port = Number(process.env['PORT'] ?? '0');

/** The bytes the broker sends for the cached token (the bench reads them from the broker first). */
const BODY = process.env['BENCH_BODY'] ?? '{}';

async function startOne(): Promise<{ url: string; stop: () => Promise<void> }> {
  if (kind === 'bare') {
    const server = createServer((_req, res) => {
      res.writeHead(200, {
        'Cache-Control': 'no-store',
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': Buffer.byteLength(BODY),
      });
      res.end(BODY);
    });
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const address = server.address();
    const actual = typeof address === 'object' && address !== null ? address.port : port;
    return {
      url: `http://127.0.0.1:${actual}`,
      stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }
  const config = loadConfig(process.env);
  const app = buildBrokerApp({ config, redisUrl: config.redisUrl ?? '' });
  const url = await app.start();
  return { url, stop: () => app.stop() };
}

if (workers > 1 && cluster.isPrimary) {
  const forked = Array.from({ length: workers }, () => cluster.fork());
  await Promise.all(forked.map((w) => new Promise<void>((resolve) => w.once('message', () => resolve()))));
  serveCommands(
    { url: `http://127.0.0.1:${port}`, pids: forked.map((w) => w.process.pid) },
    async () => undefined,
    async () => {
      await Promise.all(
        forked.map(
          (w) =>
            new Promise<void>((resolve) => {
              w.once('exit', () => resolve());
              w.kill('SIGTERM');
            }),
        ),
      );
    },
  );
} else {
  const running = await startOne();
  if (cluster.isWorker) {
    process.send?.({ type: 'worker-ready' });
    process.once('disconnect', () => process.exit(0));
    process.once('SIGTERM', () => void running.stop().finally(() => process.exit(0)));
  } else {
    serveCommands({ url: running.url, pids: [process.pid] }, async () => undefined, running.stop);
  }
}
