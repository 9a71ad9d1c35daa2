import { closeOrDrop, settlesWithin } from '../lib/settle-within.js';
import { LocalTokenCache } from '../store/local-token-cache.js';
import { CallBudget } from '../store/call-budget.js';
import { closeRedis, createRedisClient, duplicateForSubscriber, type RedisTarget } from '../store/redis-connection.js';
import { RedisKeys } from '../store/redis-keys.js';
import { KindTokenStore } from '../store/kind-token-store.js';
import type { RedisClient } from '../store/redis-scripts.js';
import { connectOrExplain, probeKeys } from '../store/redis-startup-check.js';
import { SealedJson } from '../store/sealed-json.js';
import { TokenCipher } from '../store/token-cipher.js';
import { TokenStore } from '../store/token-store.js';
import { WarmSetStore } from '../store/warm-set-store.js';
import type { AppContext } from './app-context.js';

/** Where the broker's state lives: Redis (one commands client), and a serving replica's in-memory copy. */
export interface Stores {
  readonly redis: RedisClient;
  readonly keys: RedisKeys;
  readonly cipher: TokenCipher;
  /** Channel tokens, their status (reads included) and locks. */
  readonly store: TokenStore;
  /** The warm set: which channels are refreshed ahead of expiry, when, and how they leave. */
  readonly warmSet: WarmSetStore;
  /** Viewer and common tokens, and the watch-URL pools. */
  readonly kindStore: KindTokenStore;
  readonly budget: CallBudget;
  /** Tokens in memory, invalidated over pub/sub; undefined on a worker or when BROKER_LOCAL_CACHE_* turn it off. */
  readonly localCache: LocalTokenCache | undefined;
  /** Connects the commands client and runs the start-up check, once however often it is called. */
  connect(): Promise<void>;
  /** connect(), says how tokens are kept at rest, then subscribes the local cache. */
  start(): Promise<void>;
  /** Unsubscribes the local cache, then closes the commands client; each gets `graceMs`, then is dropped. */
  close(graceMs: number): Promise<void>;
}

/** The local cache of a serving replica, or none (worker role, or a zero age or size). */
function createLocalCache({ config, clock, logger }: AppContext, redis: RedisClient, keys: RedisKeys): LocalTokenCache | undefined {
  if (config.role === 'worker' || config.localCache.maxAgeMs === 0 || config.localCache.maxEntries === 0) return undefined;
  return new LocalTokenCache({
    subscriber: duplicateForSubscriber(redis, 'polyv-token-broker:events'),
    channel: keys.events(),
    clock,
    logger: logger.child({ module: 'local-token-cache' }),
    minTtlMs: config.tokens.minTtlSeconds * 1000,
    maxAgeMs: config.localCache.maxAgeMs,
    maxEntries: config.localCache.maxEntries,
  });
}

/** Step 1: the Redis commands client (not yet connected) and everything that reads and writes through it. */
export function createStores(ctx: AppContext, target: RedisTarget): Stores {
  const { config, clock, logger } = ctx;
  const keys = new RedisKeys(config.redisPrefix);
  const redis = createRedisClient(target, 'commands', logger.child({ module: 'redis' }));
  const cipher = new TokenCipher({ currentKey: config.encryption.key, oldKeys: config.encryption.oldKeys });
  const store = new TokenStore({ redis, keys, cipher, logger: logger.child({ module: 'token-store' }) });
  const budget = new CallBudget({ redis, keys, clock, globalPer10s: config.budget.globalPer10s });
  const localCache = createLocalCache(ctx, redis, keys);
  if (localCache !== undefined) store.onTokenChange((appId, channelId) => localCache.invalidate(appId, channelId));

  let connecting: Promise<void> | undefined;
  const connect = () => (connecting ??= connectOrExplain(redis, target, probeKeys(config.redisPrefix)));
  return {
    redis,
    keys,
    cipher,
    store,
    warmSet: new WarmSetStore({ redis, keys }),
    kindStore: new KindTokenStore({ redis, keys, sealed: new SealedJson(cipher) }),
    budget,
    localCache,
    connect,
    async start() {
      await connect();
      const encryption = cipher.describe();
      if (encryption.decryptKeyIds.length > 0) {
        const how = encryption.currentKeyId === undefined ? 'written in plain text, encrypted ones still read' : 'encrypted (AES-256-GCM)';
        logger.info(encryption, `tokens at rest: ${how}`);
      }
      await localCache?.start();
    },
    async close(graceMs) {
      if (localCache !== undefined) await settlesWithin(localCache.stop(), graceMs);
      await closeOrDrop('the Redis commands connection', () => closeRedis(redis), () => redis.disconnect(), graceMs, logger);
    },
  };
}
