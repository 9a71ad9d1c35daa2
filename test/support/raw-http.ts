import { connect, type Socket } from 'node:net';

/** The first response read off a raw connection, if any, and how the connection ended. */
export interface RawAnswer {
  /** Status of the first response; undefined when the server sent nothing parseable. */
  status: number | undefined;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  body: string;
  /** Every byte received, as latin1 text. */
  raw: string;
  /** Whether the server closed (or reset) the connection before we gave up waiting. */
  closed: boolean;
  /** From connect to close (or to giving up). */
  elapsedMs: number;
}

/** Parses the first HTTP/1.1 response of `raw`; status undefined until its head is complete. */
export function parseFirstResponse(raw: string): Pick<RawAnswer, 'status' | 'headers' | 'body'> & { complete: boolean } {
  const headEnd = raw.indexOf('\r\n\r\n');
  if (headEnd < 0) return { status: undefined, headers: {}, body: '', complete: false };
  const [statusLine = '', ...lines] = raw.slice(0, headEnd).split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1];
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const rest = raw.slice(headEnd + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const { body, complete } = dechunk(rest);
    return { status: status === undefined ? undefined : Number(status), headers, body, complete };
  }
  const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
  const body = length === undefined ? rest : rest.slice(0, length);
  return { status: status === undefined ? undefined : Number(status), headers, body, complete: length === undefined || rest.length >= length };
}

/** Decodes a chunked body as far as it has arrived. */
function dechunk(rest: string): { body: string; complete: boolean } {
  let body = '';
  let at = 0;
  for (;;) {
    const lineEnd = rest.indexOf('\r\n', at);
    if (lineEnd < 0) return { body, complete: false };
    const size = parseInt(rest.slice(at, lineEnd), 16);
    if (Number.isNaN(size)) return { body, complete: true };
    if (size === 0) return { body, complete: true };
    body += rest.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
    if (at > rest.length) return { body, complete: false };
  }
}

/**
 * Sends `bytes` on a fresh connection and collects what comes back. After the first complete response, or
 * after `answerWaitMs` without one, it half-closes its side; it gives up after `closeWaitMs` more.
 */
export async function rawRequest(
  port: number,
  bytes: Buffer | string,
  options: { answerWaitMs?: number; closeWaitMs?: number } = {},
): Promise<RawAnswer> {
  const answerWaitMs = options.answerWaitMs ?? 150;
  const closeWaitMs = options.closeWaitMs ?? 1500;
  const started = performance.now();
  const socket = connect(port, '127.0.0.1');
  let raw = '';
  const finished = new Promise<boolean>((resolve) => {
    let ended = false;
    const giveUp = setTimeout(() => resolve(false), answerWaitMs + closeWaitMs);
    const halfClose = setTimeout(() => endOnce(), answerWaitMs);
    const endOnce = () => {
      if (ended) return;
      ended = true;
      clearTimeout(halfClose);
      socket.end();
    };
    socket.on('data', (d: Buffer) => {
      raw += d.toString('latin1');
      if (parseFirstResponse(raw).complete) endOnce();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(giveUp);
      clearTimeout(halfClose);
      resolve(true);
    });
  });
  socket.write(bytes);
  const closed = await finished;
  socket.destroy();
  return { ...parseFirstResponse(raw), raw, closed, elapsedMs: performance.now() - started };
}

/** A slowloris: sends `head` and then one byte of `drip` every `everyMs`, never finishing the request. */
export interface Slowloris {
  readonly socket: Socket;
  /** Resolves with what the server sent and when it closed, or `closed: false` after `giveUpMs`. */
  readonly done: Promise<RawAnswer>;
  bytesSent(): number;
}

export function slowloris(port: number, options: { head: string; drip: string; everyMs: number; giveUpMs: number }): Slowloris {
  const started = performance.now();
  const socket = connect(port, '127.0.0.1');
  let raw = '';
  let sent = 0;
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<RawAnswer>((resolve) => {
    const finish = (closed: boolean) => {
      clearInterval(timer);
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ ...parseFirstResponse(raw), raw, closed, elapsedMs: performance.now() - started });
    };
    const giveUp = setTimeout(() => finish(false), options.giveUpMs);
    socket.on('data', (d: Buffer) => (raw += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => finish(true));
  });
  socket.once('connect', () => {
    socket.write(options.head);
    sent += Buffer.byteLength(options.head);
    let i = 0;
    timer = setInterval(() => {
      if (socket.destroyed) return;
      socket.write(options.drip[i % options.drip.length] ?? 'a');
      sent += 1;
      i += 1;
    }, options.everyMs);
  });
  return { socket, done, bytesSent: () => sent };
}
