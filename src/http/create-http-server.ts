import { STATUS_CODES, createServer, type RequestListener, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../errors/broker-error.js';
import { ERROR_STATUS } from '../errors/broker-error.js';
import type { Logger } from '../lib/logger.js';

/**
 * Largest request line plus headers accepted, in bytes (Node's own default, set explicitly so that neither
 * `--max-http-header-size` nor NODE_OPTIONS can raise it); more is answered 431 and the connection closed.
 */
export const MAX_HEADER_BYTES = 16 * 1024;

/** Longer than a load balancer's usual idle timeout (60 s), so the broker never closes a connection it is reusing. */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** How a listener treats slow clients (BROKER_HEADERS_TIMEOUT_MS, BROKER_REQUEST_TIMEOUT_MS). */
export interface SlowClientLimits {
  /** Longest time to receive the request line and headers. */
  readonly headersTimeoutMs: number;
  /** Longest time to receive the whole request, body included; at least `headersTimeoutMs`. */
  readonly requestTimeoutMs: number;
}

/**
 * Node checks the two timeouts only every `connectionsCheckingInterval` (30 s by default, which would let a
 * slow client hold a connection for up to 30 s past its timeout); a quarter of the shorter timeout, at most
 * 1 s, keeps the overshoot small. The check walks only connections with a request in progress.
 */
function checkingIntervalMs(limits: SlowClientLimits): number {
  return Math.max(10, Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4)));
}

/** What the broker answers when Node's HTTP parser gives up on a connection, by Node's error code. */
function protocolError(code: string | undefined): { code: ErrorCode; message: string } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return { code: 'headers_too_large', message: `the request line and headers exceed ${MAX_HEADER_BYTES} bytes` };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { code: 'payload_too_large', message: 'the chunk extensions of the request body are too large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { code: 'request_timeout', message: 'the request was not received in time' };
    default:
      return { code: 'invalid_request', message: 'the request is not valid HTTP/1.1' };
  }
}

/**
 * Node's default `clientError` answer (400, 408, 413 or 431, then close) with the broker's JSON error body.
 * Like Node's, it writes only when no response to this connection has started, and always destroys the
 * socket. Nothing of the request is logged: its raw bytes may hold an API key.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, logger: Logger): void {
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (err.code !== 'ECONNRESET' && socket.writable && inFlight?.headersSent !== true) {
    const { code, message } = protocolError(err.code);
    const status = ERROR_STATUS[code];
    const body = JSON.stringify({ error: { code, message } });
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
        'Connection: close\r\n' +
        'Content-Type: application/json; charset=utf-8\r\n' +
        'Cache-Control: no-store\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    logger.debug({ code: err.code, status }, 'client error: connection answered and closed');
  }
  socket.destroy();
}

/**
 * RFC 9112 asks a server to answer 400 to an HTTP/1.1 request without Host; Node does so with an empty body,
 * this does it with the JSON error body.
 */
function requireHost(listener: RequestListener): RequestListener {
  return (req, res) => {
    if (req.headers.host !== undefined || req.httpVersionMajor !== 1 || req.httpVersionMinor !== 1) {
      listener(req, res);
      return;
    }
    const body = JSON.stringify({ error: { code: 'invalid_request', message: 'an HTTP/1.1 request needs a Host header' } });
    res.writeHead(400, {
      Connection: 'close',
      'Content-Type': 'application/json; charset=utf-8',
      'Cache-Control': 'no-store',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  };
}

/**
 * An HTTP server for the broker's listeners (main and admin) with the limits against hostile clients: header
 * size, headers and request timeouts, and JSON bodies on the errors Node answers by itself. Not listening yet.
 */
export function createHttpServer(listener: RequestListener, limits: SlowClientLimits, logger: Logger): Server {
  const server = createServer(
    {
      requireHostHeader: false, // checked by requireHost, which answers in JSON
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: checkingIntervalMs(limits),
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      maxHeaderSize: MAX_HEADER_BYTES,
    },
    requireHost(listener),
  );
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket, logger));
  return server;
}
