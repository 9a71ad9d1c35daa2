import { Router, type Response } from 'express';
import type { z } from 'zod';
import { RequestError } from '../../errors/broker-error.js';
import type { TokenKind } from '../../domain/token-kinds.js';
import type { BrokerMetrics } from '../../metrics/broker-metrics.js';
import type { AccountRegistry } from '../../service/account-registry.js';
import type { CommonTokenService } from '../../service/common-token-service.js';
import type { ViewerTokenService } from '../../service/viewer-token-service.js';
import type { WatchUrlService } from '../../service/watch-url-service.js';
import { rejectedTokenBody, viewerProfileBody } from '../api-schemas.js';
import { authorize, consumerOf } from '../authorize.js';
import { accountOf, channelIdOf } from '../route-params.js';

export interface TokenKindRoutesDeps {
  accounts: AccountRegistry;
  metrics: BrokerMetrics;
  viewerTokens: ViewerTokenService;
  commonTokens: CommonTokenService;
  watchUrls: WatchUrlService;
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body ?? {});
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const where = first !== undefined && first.path.length > 0 ? `${first.path.join('.')}: ` : '';
    throw new RequestError('invalid_request', `${where}${first?.message ?? 'invalid body'}`);
  }
  return parsed.data;
}

/**
 * Routes of the token kinds beyond the channel token, mounted beside the channel routes (same auth, same
 * errors): viewer watch-API tokens, the deprecated common token, single-use watch-page URLs.
 */
export function tokenKindRoutes(deps: TokenKindRoutesDeps): Router {
  const { accounts, metrics } = deps;
  const router = Router({ mergeParams: true });

  const timed = async <T extends { outcome: string }>(kind: TokenKind, res: Response, work: () => Promise<T>) => {
    const stop = metrics.serveDuration.startTimer({ kind });
    try {
      const result = await work();
      stop({ outcome: result.outcome });
      res.locals['outcome'] = result.outcome;
      res.setHeader('Cache-Control', 'no-store');
      return result;
    } catch (err) {
      stop({ outcome: 'unavailable' });
      metrics.tokensServed.inc({ kind, outcome: 'unavailable' });
      throw err;
    }
  };

  router.post('/:channelId/watch-tokens', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'watch_api' });
    const profile = parseBody(viewerProfileBody, req.body);
    const t = await timed('watch_api', res, () => deps.viewerTokens.getToken(account, channelId, profile, consumerOf(res)));
    res.json({ token: t.token, expireTime: t.expireTime });
  });

  const sendCommon = (res: Response, channelId: string, t: { token: string; mediaChannelKey: string; expireTime: number }) => {
    res.setHeader('Deprecation', 'true');
    res.setHeader('Link', `</v1/channels/${channelId}/token>; rel="successor-version"`);
    res.json({ token: t.token, mediaChannelKey: t.mediaChannelKey, expireTime: t.expireTime });
  };

  router.get('/:channelId/common-token', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'common' });
    sendCommon(res, channelId, await timed('common', res, () => deps.commonTokens.getToken(account, channelId, consumerOf(res))));
  });

  router.post('/:channelId/common-token/refresh', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'common' });
    const { rejectedToken } = parseBody(rejectedTokenBody, req.body);
    sendCommon(
      res,
      channelId,
      await timed('common', res, () => deps.commonTokens.refreshRejected(account, channelId, rejectedToken, consumerOf(res))),
    );
  });

  router.post('/:channelId/watch-urls', async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'watch_url' });
    const u = await timed('watch_url', res, () => deps.watchUrls.take(account, channelId, consumerOf(res)));
    res.json({ url: u.url, expireTime: u.expireTime });
  });

  return router;
}
