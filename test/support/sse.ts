import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';

/** One Server-Sent Event as received, with the moment it was parsed (Date.now()). */
export interface SseEvent {
  readonly event: string;
  readonly id: string | undefined;
  readonly data: string;
  readonly at: number;
}

export interface OpenOptions {
  /** Bearer key; null: no Authorization header. */
  key: string | null;
  lastEventId?: string;
  method?: 'GET' | 'HEAD';
}

/**
 * A text/event-stream read the way EventSource reads it (event, id, data lines; comments counted), on a
 * connection of its own, for tests. A non-200 answer is kept whole in `body`.
 */
export class SseStream {
  readonly events: SseEvent[] = [];
  comments = 0;
  retryMs: number | undefined;
  body = '';
  /** Resolves when the server ends the stream or the connection closes, with how it ended. */
  readonly closed: Promise<'ended' | 'aborted'>;
  private buffer = '';
  private waiters: Array<() => void> = [];
  private ended = false;

  private constructor(
    readonly status: number,
    readonly headers: IncomingHttpHeaders,
    private readonly res: IncomingMessage,
  ) {
    res.setEncoding('utf8');
    this.closed = new Promise((resolve) => {
      let complete = false;
      res.on('end', () => {
        complete = true;
      });
      res.on('close', () => {
        this.ended = true;
        this.wake();
        resolve(complete ? 'ended' : 'aborted');
      });
      res.on('error', () => undefined);
    });
    res.on('data', (chunk: string) => {
      if (status !== 200) {
        this.body += chunk;
        return;
      }
      this.buffer += chunk;
      this.parse();
    });
  }

  static open(url: string, options: OpenOptions): Promise<SseStream> {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (options.key !== null) headers['authorization'] = `Bearer ${options.key}`;
    if (options.lastEventId !== undefined) headers['last-event-id'] = options.lastEventId;
    return new Promise((resolve, reject) => {
      const req = request(url, { method: options.method ?? 'GET', headers, agent: false }, (res) => resolve(new SseStream(res.statusCode ?? 0, res.headers, res)));
      req.on('error', reject);
      req.end();
    });
  }

  /** Whether the stream has ended (by the server, or the connection dropped). */
  get isClosed(): boolean {
    return this.ended;
  }

  /** The events named `event` so far. */
  named(event: string): SseEvent[] {
    return this.events.filter((e) => e.event === event);
  }

  /** Waits until `count` events (of any name) have arrived; fails after `timeoutMs`. */
  async waitForEvents(count: number, timeoutMs = 10_000): Promise<SseEvent[]> {
    await this.waitFor(() => this.events.length >= count, timeoutMs, `${count} events (have ${this.events.length})`);
    return this.events;
  }

  /** Waits until `check` holds for the events so far; fails after `timeoutMs`. */
  async waitFor(check: () => boolean, timeoutMs = 10_000, what = 'a condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`SSE: ${what} not met within ${timeoutMs} ms`);
      if (this.ended && !check()) throw new Error(`SSE: the stream closed before ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(250, Math.max(1, deadline - Date.now())));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Stops reading from the socket (the kernel buffers fill, then the server's). */
  pause(): void {
    this.res.pause();
  }

  resume(): void {
    this.res.resume();
  }

  /** Closes the connection from the client side. */
  close(): void {
    this.res.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private parse(): void {
    let end: number;
    let any = false;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let event = 'message';
      let id: string | undefined;
      const data: string[] = [];
      let fields = 0;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          this.comments += 1;
          continue;
        }
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (name === 'event') event = value;
        else if (name === 'id') id = value;
        else if (name === 'data') data.push(value);
        else if (name === 'retry') this.retryMs = Number(value);
        else continue;
        fields += 1;
      }
      if (data.length > 0) {
        this.events.push({ event, id, data: data.join('\n'), at: Date.now() });
        any = true;
      } else if (fields > 0) {
        any = true;
      }
    }
    if (any || this.comments > 0) this.wake();
  }
}

/** The token of a `token` event. */
export function tokenOf(e: SseEvent): { channelId: string; channelToken: string; expireTime: number } {
  return JSON.parse(e.data) as { channelId: string; channelToken: string; expireTime: number };
}
