import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { answerAdminRequest } from './admin-api.js';
import { FaultSwitch, type SimFault } from './faults.js';
import { BodyTooLargeError, JSON_CONTENT_TYPE, isUtf8Form, readBody, requestParams, send, sendJson } from './http-io.js';
import { answerPolyvRequest, errorEnvelope, httpStatusForCode, type PolyvEndpointState } from './polyv-endpoints.js';
import { IpRateLimiter, RollingWindowCounter } from './rate-limits.js';
import { endpointForPath, type SimAccount, type SimCall, type SimClock, type SimEndpoint, type SimEnvelope, type SimTokenCheck, type SimTokenKind } from './sim-types.js';
import { TokenRegistry } from './token-registry.js';

export { defaultDemoAccount } from './demo-account.js';
export { SIM_PATHS } from './sim-types.js';
export type { SimFault, SimFaultScope } from './faults.js';
export type { SimAccount, SimCall, SimClock, SimEndpoint, SimTokenCheck, SimTokenKind } from './sim-types.js';

export interface PolyvSimulatorOptions {
  accounts: readonly SimAccount[];
  /** Default: Date.now. */
  clock?: SimClock | undefined;
  /** get-channel-token calls per channel per rolling hour; default 500. */
  channelTokenLimitPerHour?: number | undefined;
  /** Requests per 10 s from one IP over all endpoints; default 1500. Beyond it the IP is blocked for 5 minutes. */
  ipLimitPer10s?: number | undefined;
  /** Default true: a new non-disposable channel token invalidates the channel's previous one. */
  invalidatePreviousChannelToken?: boolean | undefined;
  /** How far `timestamp` may be from the sim clock; default 180 000 ms. */
  timestampWindowMs?: number | undefined;
}

const HOUR_MS = 3_600_000;
const MAX_RECORDED_CALLS = 100_000;
const REDACTED = '[REDACTED]';
const SAFE_HOST_HEADER = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const BROKEN_JSON = '{"code":200,"status":"success","message":"","data":{"channelToken":"';

type CallBase = Pick<SimCall, 'endpoint' | 'at' | 'channelId' | 'params'>;

/**
 * A stand-in for api.polyv.net over real HTTP: the four token endpoints with PolyV's checks, limits and
 * envelopes, fault switches, and a record of what it received. Admin API under `/__sim/`.
 */
export class PolyvSimulator {
  private readonly server: Server;
  private readonly clock: SimClock;
  private readonly state: PolyvEndpointState;
  private readonly secrets: ReadonlySet<string>;
  private readonly faults = new FaultSwitch();
  private readonly timers = new Set<NodeJS.Timeout>();
  private log: SimCall[] = [];
  private address: { url: string; port: number } | null = null;

  constructor(options: PolyvSimulatorOptions) {
    const accounts = new Map<string, SimAccount>();
    for (const account of options.accounts) {
      if (account.appId === '' || account.appSecret === '') throw new TypeError('sim accounts need an appId and an appSecret');
      if (accounts.has(account.appId)) throw new TypeError(`duplicate sim account ${account.appId}`);
      accounts.set(account.appId, account);
    }
    const channelTokenLimitPerHour = positiveInt('channelTokenLimitPerHour', options.channelTokenLimitPerHour, 500);
    const ipLimitPer10s = positiveInt('ipLimitPer10s', options.ipLimitPer10s, 1500);
    this.clock = options.clock ?? { now: () => Date.now() };
    this.secrets = new Set(options.accounts.map((a) => a.appSecret));
    this.state = {
      accounts,
      tokens: new TokenRegistry(options.invalidatePreviousChannelToken ?? true),
      ipLimiter: new IpRateLimiter(ipLimitPer10s),
      ipLimitPer10s,
      channelTokenCounter: new RollingWindowCounter(HOUR_MS),
      channelTokenLimitPerHour,
      timestampWindowMs: positiveInt('timestampWindowMs', options.timestampWindowMs, 180_000),
    };
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  /** Starts listening; port 0 picks a free port. */
  async listen(port = 0, host = '127.0.0.1'): Promise<{ url: string; port: number }> {
    if (this.server.listening) throw new Error('the simulator is already listening');
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const bound = (this.server.address() as AddressInfo).port;
    const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    this.address = { url: `http://${urlHost}:${bound}`, port: bound };
    return { ...this.address };
  }

  /** Stops listening and destroys every open socket (keep-alive, hung and delayed requests included). */
  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (!this.server.listening) return;
    await new Promise<void>((resolve, reject) => {
      this.server.close((err) => (err === undefined ? resolve() : reject(err)));
      this.server.closeAllConnections();
    });
  }

  /** `http://host:port`, without a trailing slash. */
  get url(): string {
    if (this.address === null) throw new Error('the simulator is not listening yet: await listen() first');
    return this.address.url;
  }

  /** Sets (or with null clears) the fault; validated, so a typo throws instead of silently doing nothing. */
  setFault(fault: SimFault | null): void {
    this.faults.set(fault);
  }

  /** The active fault, with the remaining `times`; null when none. */
  currentFault(): SimFault | null {
    return this.faults.current();
  }

  calls(filter: { endpoint?: SimEndpoint; channelId?: string } = {}): readonly SimCall[] {
    return this.log
      .filter((c) => (filter.endpoint === undefined || c.endpoint === filter.endpoint) && (filter.channelId === undefined || c.channelId === filter.channelId))
      .map((c) => ({ ...c, params: { ...c.params } }));
  }

  resetCalls(): void {
    this.log = [];
  }

  /**
   * Is this a token the simulator issued for this channel, unexpired, not invalidated and (watch URLs) unused?
   * For 'watch-url', the whole URL is accepted as well as its token.
   */
  checkToken(kind: SimTokenKind, channelId: string, token: string): SimTokenCheck {
    const bare = kind === 'watch-url' && token.includes('?') ? (new URLSearchParams(token.slice(token.indexOf('?') + 1)).get('token') ?? '') : token;
    return this.state.tokens.check(kind, channelId, bare, this.clock.now());
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(`http://sim.invalid${req.url ?? '/'}`);
      const method = req.method ?? 'GET';
      const body = await readBody(req);
      if (url.pathname.startsWith('/__sim/')) {
        const answer = answerAdminRequest(this, method, url, body);
        sendJson(res, answer.status, answer.body);
      } else if (url.pathname.startsWith('/watch/')) {
        this.answerWatchPage(method, url, res);
      } else {
        const endpoint = endpointForPath(url.pathname);
        if (endpoint === undefined) sendJson(res, 404, errorEnvelope(404, 'not found'));
        else this.answerPolyv(endpoint, method, url, body, req, res);
      }
    } catch (err) {
      if (res.headersSent) res.destroy();
      else if (err instanceof BodyTooLargeError) send(res, 413, 'text/plain; charset=utf-8', err.message, { connection: 'close' });
      else sendJson(res, 500, { code: 500, status: 'fail', message: 'internal error', data: '' });
    }
  }

  private answerPolyv(endpoint: SimEndpoint, method: string, url: URL, body: string, req: IncomingMessage, res: ServerResponse): void {
    const params = requestParams(url.searchParams, req.headers['content-type'], body);
    const now = this.clock.now();
    const call: CallBase = { endpoint, at: now, channelId: params['channelId'], params: this.redact(params) };

    const allowed = endpoint === 'get-token-watch-url' ? ['GET', 'POST'] : ['POST'];
    if (!allowed.includes(method)) {
      const envelope = errorEnvelope(405, 'method not allowed');
      this.record(call, 405, envelope.code, envelope.message, false);
      sendJson(res, 405, envelope, { allow: allowed.join(', ') });
      return;
    }
    const isForm = (req.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded');
    if (isForm && !isUtf8Form(req.headers['content-type'], body)) {
      // PolyV decodes the form as UTF-8: other bytes change the parameters, so the signature cannot match.
      const envelope = errorEnvelope(403, 'invalid signature.');
      this.record(call, httpStatusForCode(envelope.code), envelope.code, envelope.message, false);
      sendJson(res, httpStatusForCode(envelope.code), envelope);
      return;
    }
    const answer = () => {
      const envelope = answerPolyvRequest(this.state, { endpoint, params, ip: req.socket.remoteAddress ?? 'unknown', now, watchBaseUrl: this.watchBaseUrl(req) });
      return { envelope, status: httpStatusForCode(envelope.code) };
    };
    const fault = this.faults.take(endpoint, call.channelId);
    if (fault === null) {
      const { envelope, status } = answer();
      this.record(call, status, envelope.code, envelope.message, false);
      sendJson(res, status, envelope);
      return;
    }
    this.applyFault(fault, call, req, res, answer);
  }

  private applyFault(fault: SimFault, call: CallBase, req: IncomingMessage, res: ServerResponse, answer: () => { envelope: SimEnvelope; status: number }): void {
    switch (fault.kind) {
      case 'error-code': {
        const envelope: SimEnvelope = { ...errorEnvelope(fault.code, fault.message), ...(fault.code === 200 ? { status: 'success' } : {}) };
        const status = fault.httpStatus ?? httpStatusForCode(fault.code);
        this.record(call, status, fault.code, fault.message, true);
        sendJson(res, status, envelope);
        return;
      }
      case 'http-status': {
        this.record(call, fault.status, 0, '', true);
        send(res, fault.status, 'text/html', nginxErrorPage(fault.status));
        return;
      }
      case 'bad-json':
        this.record(call, 200, 0, '', true);
        send(res, 200, JSON_CONTENT_TYPE, BROKEN_JSON);
        return;
      case 'latency': {
        const { envelope, status } = answer();
        this.record(call, status, envelope.code, envelope.message, true);
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          if (!res.destroyed) sendJson(res, status, envelope);
        }, fault.ms);
        this.timers.add(timer);
        return;
      }
      case 'hang':
        this.record(call, 0, 0, '', true);
        return;
      case 'reset':
        this.record(call, 0, 0, '', true);
        if (!req.socket.destroyed) req.socket.resetAndDestroy();
        return;
    }
  }

  /** GET /watch/:channelId?token=... opens a one-time watch URL: 200 the first time, 403 afterwards. */
  private answerWatchPage(method: string, url: URL, res: ServerResponse): void {
    const channelId = /^\/watch\/(\d{1,20})$/.exec(url.pathname)?.[1];
    if (channelId === undefined) return send(res, 404, 'text/plain; charset=utf-8', 'not found');
    if (method !== 'GET') return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed', { allow: 'GET' });
    const result = this.state.tokens.useWatchUrl(channelId, url.searchParams.get('token') ?? '', this.clock.now());
    if (!result.valid) return send(res, 403, 'text/plain; charset=utf-8', `watch URL rejected: ${result.reason ?? 'invalid'}`);
    send(res, 200, 'text/html; charset=utf-8', `<!doctype html><title>PolyV simulator</title><p>Watching channel ${channelId}</p>`);
  }

  /** The watch URLs point back at the simulator, as the client reached it. */
  private watchBaseUrl(req: IncomingMessage): string {
    const host = req.headers.host;
    return host !== undefined && SAFE_HOST_HEADER.test(host) ? `http://${host}` : this.url;
  }

  private redact(params: Readonly<Record<string, string>>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(params)) {
      if (name === 'sign') continue;
      out[name] = this.secrets.has(value) || /secret/i.test(name) ? REDACTED : value;
    }
    return out;
  }

  private record(call: CallBase, httpStatus: number, code: number, message: string, faulted: boolean): void {
    if (this.log.length >= MAX_RECORDED_CALLS) this.log.splice(0, MAX_RECORDED_CALLS / 10);
    this.log.push({ ...call, httpStatus, code, message, faulted });
  }
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

function nginxErrorPage(status: number): string {
  const title = `${status} ${STATUS_CODES[status] ?? 'Error'}`;
  return `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`;
}
