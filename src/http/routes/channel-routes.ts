import { Router, type Request, type Response } from 'express';
import { accountOf, channelIdOf } from '../route-params.js';
import { disposableQuery, rejectedTokenBody, warmWindowBody } from '../api-schemas.js';
import { authorize, consumerOf, mayAccess } from '../authorize.js';
import { BrokerError, RequestError } from '../../errors/broker-error.js';
import type { BrokerMetrics } from '../../metrics/broker-metrics.js';
import type { AccountRegistry } from '../../service/account-registry.js';
import type { ChannelTokenService, ServedToken, WarmWindow } from '../../service/channel-token-service.js';
import type { DisposableTokenService } from '../../service/disposable-token-service.js';

export interface ChannelRoutesDeps {
  service: ChannelTokenService;
  disposable: DisposableTokenService;
  accounts: AccountRegistry;
  metrics: BrokerMetrics;
}

const MAX_TOKEN_LENGTH = 4096;

/** Whether the request carries a body (a length above 0, or a chunked one). */
function hasBody(req: Request): boolean {
  return Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
}

/** The optional warm window of a PUT; no body, or an empty one, pins the channel. */
function warmWindowOf(body: unknown): WarmWindow | undefined {
  if (body === undefined || body === null) return undefined;
  const parsed = warmWindowBody.safeParse(body);
  if (!parsed.success) {
    const detail = parsed.error.issues[0]?.message ?? 'invalid';
    throw new RequestError('invalid_request', `body must be empty or JSON {"warmFrom": <epoch ms>, "warmUntil": <epoch ms>} (both optional): ${detail}`);
  }
  const { warmFrom, warmUntil } = parsed.data;
  return warmFrom === undefined && warmUntil === undefined ? undefined : { warmFrom: warmFrom ?? null, warmUntil: warmUntil ?? null };
}

function tokenBody(t: ServedToken) {
  return { channelId: t.channelId, channelToken: t.channelToken, expireTime: t.expireTime };
}

/**
 * Channel-token routes, mounted at `/v1/channels` (default account) and `/v1/accounts/:account/channels`.
 * Channel IDs are validated before any other work, so bad input never reaches Redis or PolyV.
 */
export function channelRoutes(deps: ChannelRoutesDeps): Router {
  const { service, accounts, metrics } = deps;
  const router = Router({ mergeParams: true });

  const timed = async (res: Response, work: () => Promise<ServedToken>) => {
    const stop = metrics.serveDuration.startTimer({ kind: 'channel' });
    try {
      const served = await work();
      stop({ outcome: served.outcome });
      res.locals['outcome'] = served.outcome;
      res.setHeader('Cache-Control', 'no-store');
      res.json(tokenBody(served));
    } catch (err) {
      const outcome = err instanceof BrokerError && err.code === 'channel_not_in_account' ? 'rejected' : 'unavailable';
      stop({ outcome });
      metrics.tokensServed.inc({ kind: 'channel', outcome });
      throw err;
    }
  };

  router.get('/', async (req, res) => {
    const account = accountOf(req, accounts);
    // 403 without the account or the `channel` kind in scope; otherwise only the channels in scope are listed.
    authorize(res, { account, kind: 'channel' });
    const channels = (await service.list(account)).filter((c) => mayAccess(res, { account, channelId: c.channelId, kind: 'channel' }));
    res.json({ account: account.name, channels });
  });

  router.get('/:channelId/token', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'channel' });
    const disposable = req.query['disposable'];
    if (disposable !== undefined && !disposableQuery.safeParse(disposable).success) {
      throw new RequestError('invalid_request', 'disposable must be true or false');
    }
    if (disposable === 'true') {
      const stop = metrics.serveDuration.startTimer({ kind: 'channel', outcome: 'disposable' });
      const issued = await deps.disposable.issue(account, channelId, consumerOf(res));
      stop();
      res.locals['outcome'] = 'disposable';
      res.setHeader('Cache-Control', 'no-store');
      res.json({ ...issued, disposable: true });
      return;
    }
    await timed(res, () => service.getToken(account, channelId, consumerOf(res)));
  });

  router.post('/:channelId/token/refresh', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'channel' });
    const parsed = rejectedTokenBody.safeParse(req.body);
    if (!parsed.success) {
      throw new RequestError('invalid_request', `body must be JSON {"rejectedToken": "<the token PolyV rejected>"} (1-${MAX_TOKEN_LENGTH} characters)`);
    }
    const rejected = parsed.data.rejectedToken;
    await timed(res, () => service.refreshRejected(account, channelId, rejected, consumerOf(res)));
  });

  router.put('/:channelId', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'channel' });
    // A window sent as another type would be ignored by the JSON parser and the channel pinned instead.
    if (req.body === undefined && hasBody(req) && !req.is('application/json')) {
      throw new BrokerError('unsupported_media_type', 'a warm window must be sent as JSON (Content-Type: application/json)');
    }
    res.json(await service.warm(account, channelId, warmWindowOf(req.body)));
  });

  router.delete('/:channelId', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'channel' });
    await service.unwarm(account, channelId);
    res.status(204).end();
  });

  router.get('/:channelId', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'channel' });
    res.json(await service.describe(account, channelId));
  });

  return router;
}
