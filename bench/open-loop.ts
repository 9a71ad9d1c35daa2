/**
 * An open-loop load generator (a child of the bench): sends GETs at a fixed rate whatever the answers do,
 * over keep-alive connections, and reports latency percentiles. Latency counts from the moment a request was
 * *due* (so a stalled server or a full connection pool cannot hide its delay: no coordinated omission) and,
 * separately, from the moment it was written to the socket.
 *
 * Requests are released by a 1 ms timer, so up to ~1 ms of the "from due" figure can be the generator's own
 * timer granularity; the bare node:http baseline goes through the same generator and shows that floor.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { quantile, serveCommands, sortNumbers } from './support.js';

interface RunArgs {
  url: string;
  rate: number;
  seconds: number;
  warmupSeconds: number;
  connections: number;
  headers: Record<string, string>;
}

export interface OpenLoopResult {
  sent: number;
  completed: number;
  non2xx: number;
  errors: number;
  achievedRate: number;
  fromDueMs: { p50: number; p90: number; p99: number; p999: number; max: number };
  fromWriteMs: { p50: number; p90: number; p99: number; p999: number; max: number };
}

interface Conn {
  socket: Socket;
  busy: boolean;
  buf: Buffer;
  dueAt: number;
  writtenAt: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');

function summary(values: number[]) {
  const s = sortNumbers(values);
  return { p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), p999: quantile(s, 0.999), max: s[s.length - 1] ?? Number.NaN };
}

async function run(a: RunArgs): Promise<OpenLoopResult> {
  const u = new URL(a.url);
  const headerLines = Object.entries(a.headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const request = Buffer.from(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n${headerLines}\r\n`, 'latin1');
  const fromDue: number[] = [];
  const fromWrite: number[] = [];
  const waiting: number[] = [];
  const conns: Conn[] = [];
  let sent = 0;
  let completed = 0;
  let non2xx = 0;
  let errors = 0;
  let measureFrom = Infinity;

  const write = (c: Conn, dueAt: number) => {
    c.busy = true;
    c.dueAt = dueAt;
    c.writtenAt = performance.now();
    c.socket.write(request);
  };

  const onData = (c: Conn, chunk: Buffer) => {
    c.buf = c.buf.length === 0 ? chunk : Buffer.concat([c.buf, chunk]);
    for (;;) {
      const end = c.buf.indexOf(HEADER_END);
      if (end < 0) return;
      const head = c.buf.toString('latin1', 0, end);
      const len = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? '0');
      const total = end + 4 + len;
      if (c.buf.length < total) return;
      const now = performance.now();
      if (!head.startsWith('HTTP/1.1 2')) non2xx += 1;
      if (c.dueAt >= measureFrom) {
        fromDue.push(now - c.dueAt);
        fromWrite.push(now - c.writtenAt);
      }
      completed += 1;
      c.buf = c.buf.subarray(total);
      c.busy = false;
      const next = waiting.shift();
      if (next !== undefined) write(c, next);
    }
  };

  await Promise.all(
    Array.from(
      { length: a.connections },
      () =>
        new Promise<void>((resolve, reject) => {
          const socket = connect({ host: u.hostname, port: Number(u.port), noDelay: true }, () => resolve());
          const c: Conn = { socket, busy: false, buf: Buffer.alloc(0), dueAt: 0, writtenAt: 0 };
          socket.on('data', (chunk: Buffer) => onData(c, chunk));
          socket.on('error', (err) => {
            errors += 1;
            reject(err);
          });
          conns.push(c);
        }),
    ),
  );

  const start = performance.now();
  measureFrom = start + a.warmupSeconds * 1000;
  const stopAt = measureFrom + a.seconds * 1000;
  const intervalMs = 1000 / a.rate;
  let cursor = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      const until = Math.min(now, stopAt);
      while (start + cursor * intervalMs <= until) {
        const dueAt = start + cursor * intervalMs;
        cursor += 1;
        sent += 1;
        const idle = conns.find((c) => !c.busy);
        if (idle !== undefined) write(idle, dueAt);
        else waiting.push(dueAt);
      }
      if (now >= stopAt) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  const drainUntil = performance.now() + 5000;
  while (completed < sent && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
  for (const c of conns) c.socket.destroy();
  return {
    sent,
    completed,
    non2xx,
    errors,
    achievedRate: fromDue.length / a.seconds,
    fromDueMs: summary(fromDue),
    fromWriteMs: summary(fromWrite),
  };
}

serveCommands(
  {},
  async (cmd, args) => {
    if (cmd === 'run') return run(args as unknown as RunArgs);
    throw new Error(`unknown command ${cmd}`);
  },
  async () => undefined,
);
