import type { PolyvAccount } from '../config/config.js';
import type { Caller } from '../domain/caller.js';
import type { Clock } from '../lib/clock.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { PolyvClient } from '../polyv/polyv-client.js';
import type { PolyvGateway } from './polyv-gateway.js';
import { recordServed } from './record-served.js';

export interface DisposableToken {
  readonly channelId: string;
  readonly channelToken: string;
  readonly expireTime: number;
}

/**
 * One-time channel tokens (`disposable=true`): never cached, always a fresh PolyV call through the gateway,
 * drawn from the same per-channel get-channel-token budget as the cached token (PolyV counts both against
 * its 500 per hour).
 */
export class DisposableTokenService {
  constructor(
    private readonly o: {
      polyv: PolyvClient;
      gateway: PolyvGateway;
      clock: Clock;
      metrics: BrokerMetrics;
      expireSeconds: number;
    },
  ) {}

  async issue(account: PolyvAccount, channelId: string, caller?: Caller): Promise<DisposableToken> {
    const data = await this.o.gateway.call({
      account,
      channelId,
      kind: 'channel',
      reason: 'disposable',
      caller,
      send: () => this.o.polyv.getChannelToken(account, { channelId, expireSeconds: this.o.expireSeconds, disposable: true }),
    });
    recordServed(this.o.metrics, 'channel', 'miss', data.expireTime - this.o.clock.now(), 0);
    return { channelId, channelToken: data.channelToken, expireTime: data.expireTime };
  }
}
