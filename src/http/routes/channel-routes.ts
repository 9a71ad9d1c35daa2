import { Router, type Request, type Response } from 'express';
import { CHANNEL_ID_RE } from '../../config/env-schema.js';
import type { PolyvAccount } from '../../config/config.js';
import { BrokerError, RequestError } from '../../errors/broker-error.js';
import type { BrokerMetrics } from '../../metrics/broker-metrics.js';
import type { AccountRegistry } from '../../service/account-registry.js';
import type { ChannelTokenService, ServedToken } from '../../service/channel-token-service.js';

export interface ChannelRoutesDeps {
  service: ChannelTokenService;
  accounts: AccountRegistry;
  metrics: BrokerMetrics;
}

const MAX_TOKEN_LENGTH = 4096;

function channelIdOf(req: Request): string {
  const id = req.params['channelId'];
  if (typeof id !== 'string' || !CHANNEL_ID_RE.test(id)) {
    throw new RequestError('invalid_channel_id', 'channelId must be 1-20 digits');
  }
  return id;
}

function accountOf(req: Request, accounts: AccountRegistry): PolyvAccount {
  const name = req.params['account'];
  if (name === undefined) return accounts.defaultAccount;
  const account = typeof name === 'string' ? accounts.named(name) : undefined;
  if (account === undefined) throw new BrokerError('not_found', `unknown account: ${String(name).slice(0, 64)}`);
  return account;
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
    res.json({ account: account.name, channels: await service.list(account) });
  });

  router.get('/:channelId/token', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    if (req.query['disposable'] !== undefined && req.query['disposable'] !== 'false') {
      throw new RequestError('invalid_request', 'disposable tokens are not supported by this broker yet');
    }
    await timed(res, () => service.getToken(account, channelId));
  });

  router.post('/:channelId/token/refresh', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    const body: unknown = req.body;
    const rejected = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)['rejectedToken'] : undefined;
    if (typeof rejected !== 'string' || rejected === '' || rejected.length > MAX_TOKEN_LENGTH) {
      throw new RequestError(
        'invalid_request',
        `body must be JSON {"rejectedToken": "<the token PolyV rejected>"} (1-${MAX_TOKEN_LENGTH} characters)`,
      );
    }
    await timed(res, () => service.refreshRejected(account, channelId, rejected));
  });

  router.put('/:channelId', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    res.json(await service.warm(account, channelId));
  });

  router.delete('/:channelId', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    await service.unwarm(account, channelId);
    res.status(204).end();
  });

  router.get('/:channelId', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    res.json(await service.describe(account, channelId));
  });

  return router;
}
