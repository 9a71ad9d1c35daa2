import { describe, expect, it } from 'vitest';
import { SseParser } from './sse-parser.js';

describe('SseParser', () => {
  it('when events arrive in pieces, with any line ending, comments and several data lines, then each is read whole once', () => {
    const text = 'retry: 2000\n\n: heartbeat\n\nevent: token\nid: 7\ndata: {"a":1}\n\nevent: x\r\ndata: one\r\ndata: two\r\n\rdata:no-space\n\n';
    const parser = new SseParser();
    const events = [];
    for (let i = 0; i < text.length; i += 3) events.push(...parser.push(text.slice(i, i + 3)));
    expect(events).toEqual([
      { event: 'token', id: '7', data: '{"a":1}' },
      { event: 'x', id: undefined, data: 'one\ntwo' },
      { event: 'message', id: undefined, data: 'no-space' },
    ]);
  });

  it('when an event never ends, then the parser refuses to hold more than 1 MiB', () => {
    const parser = new SseParser();
    expect(() => parser.push(`data: ${'x'.repeat(1024 * 1024 + 1)}`)).toThrow(/too long/);
  });
});
