import type { PolyvAccount } from '../config/config.js';
import type { Caller } from '../domain/caller.js';
import type { CachedToken } from '../store/token-store.js';
import type { ChannelRefresher } from './channel-refresher.js';
import type { ChannelTokenReader, ServedToken } from './channel-token-reader.js';
import type { TimingPolicy } from './refresh-timing.js';
import type { ChannelState, WarmChannels, WarmReview, WarmWindow } from './warm-channels.js';

export type { ServedToken } from './channel-token-reader.js';
export type { ChannelState, WarmReview, WarmState, WarmWindow } from './warm-channels.js';

/**
 * Channel tokens as the HTTP API, the worker and the on-call CLI see them: one face over the three parts
 * that do the work, each in a file of its own: serving (ChannelTokenReader), refreshing through the refresh
 * core (ChannelRefresher) and the warm set (WarmChannels).
 */
export class ChannelTokenService {
  private readonly reader: ChannelTokenReader;
  private readonly refresher: ChannelRefresher;
  private readonly warmChannels: WarmChannels;
  readonly timing: TimingPolicy;

  constructor(parts: { reader: ChannelTokenReader; refresher: ChannelRefresher; warmChannels: WarmChannels; timing: TimingPolicy }) {
    this.reader = parts.reader;
    this.refresher = parts.refresher;
    this.warmChannels = parts.warmChannels;
    this.timing = parts.timing;
  }

  getToken(account: PolyvAccount, channelId: string, caller?: Caller): Promise<ServedToken> {
    return this.reader.getToken(account, channelId, caller);
  }

  peekToken(account: PolyvAccount, channelId: string): ServedToken | undefined {
    return this.reader.peekToken(account, channelId);
  }

  refreshRejected(account: PolyvAccount, channelId: string, rejectedToken: string, caller?: Caller): Promise<ServedToken> {
    return this.reader.refreshRejected(account, channelId, rejectedToken, caller);
  }

  refreshIfDue(account: PolyvAccount, channelId: string): Promise<CachedToken> {
    return this.refresher.refreshIfDue(account, channelId);
  }

  forceRefresh(account: PolyvAccount, channelId: string): Promise<CachedToken> {
    return this.refresher.forceRefresh(account, channelId);
  }

  warm(account: PolyvAccount, channelId: string, window?: WarmWindow): Promise<ChannelState> {
    return this.warmChannels.warm(account, channelId, window);
  }

  ensurePinned(appId: string, channelIds: readonly string[]): Promise<number> {
    return this.warmChannels.ensurePinned(appId, channelIds);
  }

  review(appId: string, channelId: string): Promise<WarmReview> {
    return this.warmChannels.review(appId, channelId);
  }

  reschedule(appId: string, channelId: string, dueAt: number): Promise<void> {
    return this.warmChannels.reschedule(appId, channelId, dueAt);
  }

  unwarm(account: PolyvAccount, channelId: string): Promise<boolean> {
    return this.warmChannels.unwarm(account, channelId);
  }

  describe(account: PolyvAccount, channelId: string): Promise<ChannelState> {
    return this.warmChannels.describe(account, channelId);
  }

  list(account: PolyvAccount): Promise<ChannelState[]> {
    return this.warmChannels.list(account);
  }
}
