/** One Server-Sent Event: its name (`message` when unnamed), its `id` field if it had one, and its data. */
export interface ServerSentEvent {
  readonly event: string;
  readonly id: string | undefined;
  readonly data: string;
}

/** Longest text kept while waiting for the end of an event; a broker never sends one this large. */
const MAX_PENDING_CHARS = 1024 * 1024;

/**
 * Reads a text/event-stream incrementally, as the HTML standard's EventSource does: lines end with LF, CRLF or
 * CR; an empty line ends an event; `:` starts a comment; `event`, `id` and `data` fields (several `data` lines
 * are joined by LF); `retry` and unknown fields are ignored. Throws when an event grows past 1 MiB.
 */
export class SseParser {
  private pending = '';
  private event = '';
  private id: string | undefined;
  private data: string[] = [];

  /** The events completed by this chunk of text. */
  push(chunk: string): ServerSentEvent[] {
    this.pending += chunk;
    const out: ServerSentEvent[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.pending);
      // A lone CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (m === null || (m[0] === '\r' && m.index === this.pending.length - 1)) break;
      const line = this.pending.slice(0, m.index);
      this.pending = this.pending.slice(m.index + m[0].length);
      const done = this.line(line);
      if (done !== undefined) out.push(done);
    }
    if (this.pending.length > MAX_PENDING_CHARS) throw new Error('event stream line too long');
    return out;
  }

  private line(line: string): ServerSentEvent | undefined {
    if (line === '') {
      const done = this.data.length > 0 ? { event: this.event === '' ? 'message' : this.event, id: this.id, data: this.data.join('\n') } : undefined;
      this.event = '';
      this.id = undefined;
      this.data = [];
      return done;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (name === 'event') this.event = value;
    else if (name === 'id' && !value.includes('\0')) this.id = value;
    else if (name === 'data') {
      this.data.push(value);
      if (this.data.length > 10_000) throw new Error('event stream event too long');
    }
    return undefined;
  }
}
