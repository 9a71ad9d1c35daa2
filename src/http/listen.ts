import type { RequestListener, Server } from 'node:http';
import { isIPv6, type AddressInfo } from 'node:net';
import type { Logger } from '../lib/logger.js';
import { createHttpServer, type SlowClientLimits } from './create-http-server.js';

/** Where a listener binds: `port` 0 picks any free port. */
export interface ListenAddress {
  readonly port: number;
  readonly host: string;
}

/** A listening server of the broker: the main listener or the admin one. */
export interface HttpListener {
  /** A base URL a client on this host can use (see `localBaseUrl`). */
  readonly url: string;
  /**
   * Stops accepting connections and ends the idle ones at once, the busy ones after `forceAfterMs`; resolves
   * when the server is closed.
   */
  close(forceAfterMs: number): Promise<void>;
}

/**
 * The base URL at which a client on this host reaches a server bound to host:port: a wildcard address
 * (`0.0.0.0`, `::`) becomes the IPv4 loopback, which a dual-stack `::` also accepts; an IPv6 literal is
 * bracketed (`http://[::1]:8080`).
 */
export function localBaseUrl(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '::') return `http://127.0.0.1:${port}`;
  return isIPv6(host) ? `http://[${host}]:${port}` : `http://${host}:${port}`;
}

/** Closes a server: new connections refused, idle ones ended now, busy ones after `forceAfterMs`. */
async function closeServer(server: Server, forceAfterMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const force = setTimeout(() => server.closeAllConnections(), forceAfterMs);
  force.unref();
  try {
    await closed;
  } finally {
    clearTimeout(force);
  }
}

/**
 * Listens on host:port with the limits against slow and oversized requests (create-http-server.ts), and
 * resolves once the port is bound; rejects when it cannot be (a port in use, an address not on this host).
 */
export async function listen(
  requestListener: RequestListener,
  address: ListenAddress,
  limits: SlowClientLimits,
  logger: Logger,
): Promise<HttpListener> {
  const server = createHttpServer(requestListener, limits, logger);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return { url: localBaseUrl(address.host, port), close: (forceAfterMs) => closeServer(server, forceAfterMs) };
}
