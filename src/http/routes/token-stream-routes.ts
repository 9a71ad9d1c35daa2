import { Router, type Request, type Response } from 'express';
import { CHANNEL_ID_RE } from '../../config/env-schema.js';
import { RequestError } from '../../errors/broker-error.js';
import type { AccountRegistry } from '../../service/account-registry.js';
import { authorize, consumerOf } from '../authorize.js';
import { accountOf, channelIdOf } from '../route-params.js';
import { MAX_STREAM_CHANNELS } from '../token-stream-events.js';
import type { StreamTarget, TokenStreams } from '../token-streams.js';

export interface TokenStreamRoutesDeps {
  accounts: AccountRegistry;
  streams: TokenStreams;
}

/** The `channels` query parameter of the multiplexed stream: 1-MAX_STREAM_CHANNELS channel IDs, each once. */
function channelListOf(req: Request): string[] {
  const raw = req.query['channels'];
  if (typeof raw !== 'string' || raw === '') {
    throw new RequestError('invalid_request', `give the channels once, comma-separated: ?channels=1000001,1000002 (at most ${MAX_STREAM_CHANNELS})`);
  }
  const ids = [...new Set(raw.split(','))];
  if (ids.length > MAX_STREAM_CHANNELS) {
    throw new RequestError('invalid_request', `a stream follows at most ${MAX_STREAM_CHANNELS} channels; open several streams`);
  }
  if (!ids.every((id) => CHANNEL_ID_RE.test(id))) throw new RequestError('invalid_channel_id', 'every channelId must be 1-20 digits');
  return ids;
}

/**
 * The token streams (Server-Sent Events), mounted on the `/v1` router behind the same authentication and
 * rate limit as every read (one request, charged once, however long the stream lasts):
 * `/channels/{channelId}/token/stream` and `/token-stream?channels=...`, and their twins under
 * `/accounts/{account}`. The checks come in the order of `GET .../token`: channel IDs, account, scope (per
 * channel on the multiplexed stream). A HEAD request gets the headers only.
 */
export function tokenStreamRoutes(deps: TokenStreamRoutesDeps): Router {
  const { accounts, streams } = deps;
  const router = Router({ mergeParams: true });

  const open = async (req: Request, res: Response, targets: StreamTarget[], multiplexed: boolean) => {
    if (req.method === 'HEAD') {
      res.status(200).set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store' }).end();
      return;
    }
    // For the access log and polyv_broker_requests_total (counted when a stream ends cleanly).
    res.locals['outcome'] = 'stream';
    await streams.serve(res, { targets, multiplexed, lastEventId: req.headers['last-event-id'], caller: consumerOf(res) });
  };

  router.get(['/channels/:channelId/token/stream', '/accounts/:account/channels/:channelId/token/stream'], async (req, res) => {
    const channelId = channelIdOf(req);
    const account = accountOf(req, accounts);
    authorize(res, { account, channelId, kind: 'channel' });
    await open(req, res, [{ account, channelId }], false);
  });

  router.get(['/token-stream', '/accounts/:account/token-stream'], async (req, res) => {
    const channelIds = channelListOf(req);
    const account = accountOf(req, accounts);
    for (const channelId of channelIds) authorize(res, { account, channelId, kind: 'channel' });
    await open(
      req,
      res,
      channelIds.map((channelId) => ({ account, channelId })),
      true,
    );
  });

  return router;
}
