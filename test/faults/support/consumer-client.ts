import { Pool } from 'undici';

const REQUEST_TIMEOUT_MS = 5000;

/** One answer of the broker, as a consumer sees it. */
export interface Answer {
  /** HTTP status; 0 when the request failed in transport. */
  readonly status: number;
  /** The error code of a non-200 JSON body (or `transport:<code>`); '' for none. */
  readonly code: string;
  readonly token: string | undefined;
  readonly retryAfter: string | undefined;
}

/**
 * One named consumer of the broker with its own API key, over keep-alive connections to each API replica. It
 * tallies every answer by status and error code, and notes each 429 that comes without a `Retry-After`.
 */
export class ConsumerClient {
  /** Answers by `<status> <code>` (`200 ` for a success). */
  readonly tally = new Map<string, number>();
  /** Tokens received, in order of arrival. */
  readonly tokens: string[] = [];
  /** 429 answers without a positive `Retry-After`. */
  tooManyWithoutRetryAfter = 0;
  /** When the first 429 arrived (epoch ms), 0 before. */
  firstTooManyAt = 0;
  /** The range of `Retry-After` (seconds) of the 429 answers. */
  retryAfterMin = Infinity;
  retryAfterMax = 0;
  private readonly pools: Pool[];

  constructor(
    readonly name: string,
    private readonly key: string,
    targets: readonly string[],
  ) {
    this.pools = targets.map((url) => new Pool(url, { connections: 4, keepAliveTimeout: 30_000 }));
  }

  get replicas(): number {
    return this.pools.length;
  }

  /** How many answers had this status (and, if given, this error code). */
  count(status: number, code?: string): number {
    let n = 0;
    for (const [k, v] of this.tally) if (k.startsWith(`${status} `) && (code === undefined || k === `${status} ${code}`)) n += v;
    return n;
  }

  get total(): number {
    let n = 0;
    for (const v of this.tally.values()) n += v;
    return n;
  }

  /** `200: n, 429 upstream_quota_exceeded: m, …` for the figures. */
  describe(): string {
    return [...this.tally].map(([k, v]) => `${k.trim()}: ${v}`).join(', ');
  }

  get(replica: number, path: string): Promise<Answer> {
    return this.request(replica, 'GET', path, undefined);
  }

  post(replica: number, path: string, body: unknown): Promise<Answer> {
    return this.request(replica, 'POST', path, JSON.stringify(body));
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.close()));
  }

  private async request(replica: number, method: 'GET' | 'POST', path: string, body: string | undefined): Promise<Answer> {
    let status = 0;
    let code = '';
    let token: string | undefined;
    let retryAfter: string | undefined;
    try {
      const res = await this.pools[replica % this.pools.length]!.request({
        method,
        path,
        headers: { authorization: `Bearer ${this.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body }),
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      });
      status = res.statusCode;
      const ra = res.headers['retry-after'];
      retryAfter = typeof ra === 'string' ? ra : undefined;
      const parsed = (await res.body.json().catch(() => undefined)) as Record<string, unknown> | undefined;
      if (status === 200 && typeof parsed?.['channelToken'] === 'string') token = parsed['channelToken'];
      if (status !== 200) code = String((parsed?.['error'] as { code?: string } | undefined)?.code ?? '');
    } catch (err) {
      code = `transport:${(err as { code?: string }).code ?? (err as Error).name}`;
    }
    const k = `${status} ${code}`;
    this.tally.set(k, (this.tally.get(k) ?? 0) + 1);
    if (token !== undefined) this.tokens.push(token);
    if (status === 429) {
      if (this.firstTooManyAt === 0) this.firstTooManyAt = Date.now();
      const seconds = Number(retryAfter);
      if (seconds > 0) {
        this.retryAfterMin = Math.min(this.retryAfterMin, seconds);
        this.retryAfterMax = Math.max(this.retryAfterMax, seconds);
      } else {
        this.tooManyWithoutRetryAfter += 1;
      }
    }
    return { status, code, token, retryAfter };
  }
}

/** Runs `loops` copies of `step` back to back (no pause between requests) until `until` (epoch ms). */
export async function atFullSpeed(loops: number, until: number, step: (loop: number) => Promise<void>): Promise<void> {
  await Promise.all(
    Array.from({ length: loops }, async (_, loop) => {
      while (Date.now() < until) await step(loop);
    }),
  );
}
