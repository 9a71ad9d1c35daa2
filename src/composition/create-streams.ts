import { TokenStreams } from '../http/token-streams.js';
import { closeOrDrop } from '../lib/settle-within.js';
import { ChannelTokenFeed } from '../service/channel-token-feed.js';
import { duplicateForSubscriber } from '../store/redis-connection.js';
import { TokenEventSubscription } from '../store/token-event-subscription.js';
import type { AppContext } from './app-context.js';
import type { Services } from './create-services.js';
import type { Stores } from './create-stores.js';

/** The token streams of a serving replica and what feeds them. */
export interface StreamParts {
  readonly streams: TokenStreams;
  /** Subscribes to the token change announcements (its own Redis connection). */
  start(): Promise<void>;
  /** Ends every open stream and refuses new ones: first thing at shutdown, before the listeners close. */
  drain(): void;
  /** Unsubscribes; after `graceMs` the connection is dropped. */
  close(graceMs: number): Promise<void>;
}

/**
 * Step 5b: the token streams (Server-Sent Events), over the stores and the channel token service: a
 * subscriber connection on the `events()` pub/sub channel, the feed that turns its announcements into
 * tokens, and the open streams. None on a worker, or with BROKER_STREAM_MAX_CLIENTS=0.
 */
export function createStreams(ctx: AppContext, deps: { stores: Stores; services: Services }): StreamParts | undefined {
  const { config, clock, logger, metrics } = ctx;
  if (config.role === 'worker' || config.stream.maxClients === 0) return undefined;
  const { stores, services } = deps;
  const streamLogger = logger.child({ module: 'token-streams' });
  const subscription = new TokenEventSubscription({
    subscriber: duplicateForSubscriber(stores.redis, 'polyv-token-broker:streams'),
    channel: stores.keys.events(),
    logger: streamLogger,
  });
  const feed = new ChannelTokenFeed({
    store: stores.store,
    channelTokens: services.channelTokens,
    clock,
    timing: services.channelTokens.timing,
    logger: streamLogger,
  });
  const streams = new TokenStreams({ feed, maxClients: config.stream.maxClients, metrics, logger: streamLogger });
  // A channel with an open stream is being read: it stays warm as long as someone follows it.
  services.reads.countAsRead(() => feed.watchedList());
  return {
    streams,
    start: () => subscription.start({ onEvent: (e) => feed.changed(e.appId, e.channelId), onResync: () => feed.resync() }),
    drain: () => streams.drain(),
    async close(graceMs) {
      feed.stop();
      await closeOrDrop("the token streams' Redis subscriber", () => subscription.stop(), () => subscription.drop(), graceMs, logger);
    },
  };
}
