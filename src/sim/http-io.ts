import type { IncomingMessage, ServerResponse } from 'node:http';

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
const MAX_BODY_BYTES = 1024 * 1024;

export class BodyTooLargeError extends Error {
  constructor() {
    super(`request body larger than ${MAX_BODY_BYTES} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/** Reads the whole request body as UTF-8 text (at most 1 MiB). */
export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLargeError();
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The parameters PolyV reads: the query string, then an `application/x-www-form-urlencoded` body. When a
 * name occurs more than once the first value wins (as a servlet's getParameter does).
 */
export function requestParams(query: URLSearchParams, contentType: string | undefined, body: string): Record<string, string> {
  const params: Record<string, string> = {};
  const take = (source: URLSearchParams) => {
    for (const [name, value] of source) if (!Object.hasOwn(params, name)) params[name] = value;
  };
  take(query);
  if ((contentType ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')) take(new URLSearchParams(body));
  return params;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Whether a form body is UTF-8, as PolyV reads it: a declared charset other than UTF-8, or percent-encoded
 * bytes that are not UTF-8 (a GBK nickname, say), make every parameter differ from what was signed.
 */
export function isUtf8Form(contentType: string | undefined, body: string): boolean {
  const charset = /;\s*charset=([^;\s]+)/i.exec(contentType ?? '')?.[1]?.replace(/"/g, '').toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') return false;
  for (const part of body.split('&')) {
    const bytes: number[] = [];
    const text = part.replace(/\+/g, ' ');
    for (let i = 0; i < text.length; i++) {
      if (text[i] === '%' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
        bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
        i += 2;
      } else {
        bytes.push(...Buffer.from(text[i] ?? '', 'utf8'));
      }
    }
    try {
      STRICT_UTF8.decode(Uint8Array.from(bytes));
    } catch {
      return false;
    }
  }
  return true;
}

export function send(res: ServerResponse, status: number, contentType: string, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'content-type': contentType, 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  send(res, status, JSON_CONTENT_TYPE, JSON.stringify(body), headers);
}
