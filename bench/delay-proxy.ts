import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy that holds every chunk the client sends for `delayMs` before passing it on (answers pass at
 * once). Put between a broker and Redis, it adds `delayMs` to each Redis round trip a request waits for, so
 * (latency through it - latency without it) / delayMs counts the round trips on the answer path: commands
 * sent together (a pipeline, or several at once) cost one delay, commands sent one after the other cost one
 * each, and commands off the answer path cost nothing.
 */
export async function startDelayProxy(target: { host: string; port: number }, delayMs: number): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      // No Nagle: a delayed small write must not wait for an ACK as well.
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk) => {
      setTimeout(() => {
        if (!upstream.destroyed) upstream.write(chunk);
      }, delayMs);
    });
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
