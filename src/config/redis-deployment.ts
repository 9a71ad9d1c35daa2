/**
 * How the broker reaches Redis when it is not one URL: the configuration decides it, the store connects to it
 * (store/redis-connection.ts re-exports these types).
 */
import type { ParsedEnv } from './env-schema.js';

/** TLS settings beyond what a `rediss://` URL carries. */
export interface RedisTlsSettings {
  /** PEM text of the CA(s) that signed the server certificate; unset: Node's built-in CAs. */
  readonly ca?: string | undefined;
}

/** A Redis Cluster seed node or a Sentinel: one entry of REDIS_CLUSTER_NODES or REDIS_SENTINELS. */
export type RedisNodeAddress = Readonly<NonNullable<ParsedEnv['REDIS_CLUSTER_NODES']>[number]>;

/**
 * Credentials and TLS of the data nodes when Redis is not one URL: every Cluster node, or the master the
 * Sentinels name (REDIS_USERNAME, REDIS_PASSWORD, REDIS_TLS, REDIS_TLS_CA_FILE).
 */
export interface RedisNodeSecurity {
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** Set when REDIS_TLS is true (`ca`: REDIS_TLS_CA_FILE's PEM text, else the system CAs); undefined: plain TCP. */
  readonly tls: RedisTlsSettings | undefined;
}

/** A Redis Cluster (REDIS_CLUSTER_NODES): seed nodes; ioredis discovers the rest. */
export interface RedisClusterDeployment extends RedisNodeSecurity {
  readonly kind: 'cluster';
  readonly nodes: readonly RedisNodeAddress[];
}

/** A master found through Redis Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_NAME, REDIS_SENTINEL_PASSWORD). */
export interface RedisSentinelDeployment extends RedisNodeSecurity {
  readonly kind: 'sentinel';
  readonly sentinels: readonly RedisNodeAddress[];
  readonly masterName: string;
  readonly sentinelPassword: string | undefined;
}

/** Redis reached other than through one URL. */
export type RedisDeployment = RedisClusterDeployment | RedisSentinelDeployment;
