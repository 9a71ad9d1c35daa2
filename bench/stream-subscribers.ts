/**
 * Token-stream subscribers as a child of the bench, in a process of their own: `open` connects N streams
 * (one raw socket each, the cheapest client there is) and resolves once every one has its first event;
 * `count` says how many token events they have received in all, and the last version each one holds.
 */
import { connect, type Socket } from 'node:net';
import { serveCommands } from './support.js';

interface Subscriber {
  socket: Socket;
  buffer: string;
  events: number;
  lastId: string;
  closed: boolean;
}

const subscribers: Subscriber[] = [];

function open(port: number, path: string, key: string): Promise<Subscriber> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const s: Subscriber = { socket, buffer: '', events: 0, lastId: '', closed: false };
    socket.setEncoding('utf8');
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nAccept: text/event-stream\r\n\r\n`);
    });
    socket.on('data', (chunk: string) => {
      s.buffer += chunk;
      let end: number;
      while ((end = s.buffer.indexOf('\n\n')) >= 0) {
        const block = s.buffer.slice(0, end);
        s.buffer = s.buffer.slice(end + 2);
        if (!block.includes('event: token')) continue;
        s.events += 1;
        s.lastId = /\nid: (\d*)/.exec(block)?.[1] ?? '';
        if (s.events === 1) resolve(s);
      }
    });
    socket.on('close', () => {
      s.closed = true;
    });
  });
}

serveCommands(
  { pid: process.pid },
  async (cmd, args) => {
    if (cmd === 'open') {
      const { port, path, key, count } = args as { port: number; path: string; key: string; count: number };
      for (let i = 0; i < count; i += 100) {
        const batch = await Promise.all(Array.from({ length: Math.min(100, count - i) }, () => open(port, path, key)));
        subscribers.push(...batch);
      }
      return { open: subscribers.length };
    }
    if (cmd === 'count') {
      const lastIds = new Set(subscribers.map((s) => s.lastId));
      return {
        events: subscribers.reduce((n, s) => n + s.events, 0),
        closed: subscribers.filter((s) => s.closed).length,
        lastIds: [...lastIds].slice(0, 5),
      };
    }
    throw new Error(`unknown command ${cmd}`);
  },
  async () => {
    for (const s of subscribers) s.socket.destroy();
  },
);
