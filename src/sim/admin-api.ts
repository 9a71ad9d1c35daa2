import { parseSimFault, type SimFault } from './faults.js';
import { SIM_ENDPOINTS, type SimCall, type SimEndpoint, type SimTokenCheck, type SimTokenKind } from './sim-types.js';

/** What the admin API can reach on the simulator. */
export interface SimAdminTarget {
  setFault(fault: SimFault | null): void;
  currentFault(): SimFault | null;
  calls(filter?: { endpoint?: SimEndpoint; channelId?: string }): readonly SimCall[];
  resetCalls(): void;
  checkToken(kind: SimTokenKind, channelId: string, token: string): SimTokenCheck;
}

export interface AdminAnswer {
  status: number;
  body: unknown;
}

const TOKEN_KINDS: readonly string[] = ['channel', 'watch-api', 'common', 'watch-url'] satisfies SimTokenKind[];

/**
 * `/__sim/...`: fault switches, recorded calls and token checks over HTTP, for users running the simulator
 * as a process and for tests in other processes. No auth: it is a dev tool on the simulator's own host.
 */
export function answerAdminRequest(target: SimAdminTarget, method: string, url: URL, body: string): AdminAnswer {
  const route = `${method} ${url.pathname}`;
  const q = url.searchParams;
  switch (route) {
    case 'GET /__sim/health':
      return ok({ ok: true });
    case 'GET /__sim/faults':
      return ok({ fault: target.currentFault() });
    case 'POST /__sim/faults': {
      try {
        target.setFault(parseSimFault(JSON.parse(body)));
      } catch (err) {
        return { status: 400, body: { error: err instanceof Error ? err.message : String(err) } };
      }
      return ok({ ok: true, fault: target.currentFault() });
    }
    case 'DELETE /__sim/faults':
      target.setFault(null);
      return ok({ ok: true });
    case 'GET /__sim/calls': {
      const endpoint = q.get('endpoint') ?? '';
      const channelId = q.get('channelId') ?? '';
      const known = SIM_ENDPOINTS.find((e) => e === endpoint);
      if (endpoint !== '' && known === undefined) return badRequest(`endpoint must be one of ${SIM_ENDPOINTS.join(', ')}`);
      return ok({
        calls: target.calls({ ...(known === undefined ? {} : { endpoint: known }), ...(channelId === '' ? {} : { channelId }) }),
      });
    }
    case 'DELETE /__sim/calls':
      target.resetCalls();
      return ok({ ok: true });
    case 'GET /__sim/check': {
      const kind = q.get('kind') ?? '';
      const channelId = q.get('channelId') ?? '';
      const token = q.get('token') ?? '';
      if (!TOKEN_KINDS.includes(kind)) return badRequest(`kind must be one of ${TOKEN_KINDS.join(', ')}`);
      if (channelId === '' || token === '') return badRequest('channelId and token are required');
      return ok(target.checkToken(kind as SimTokenKind, channelId, token));
    }
  }
  const knownPath = ['/__sim/health', '/__sim/faults', '/__sim/calls', '/__sim/check'].includes(url.pathname);
  return knownPath ? { status: 405, body: { error: 'method not allowed' } } : { status: 404, body: { error: 'not found' } };
}

function ok(body: unknown): AdminAnswer {
  return { status: 200, body };
}

function badRequest(error: string): AdminAnswer {
  return { status: 400, body: { error } };
}
