import { buildBrokerApp, type BrokerApp } from './app.js';
import { loadConfig, type Config } from './config/config.js';
import { demoCredentialsInUse } from './config/demo-credentials-in-use.js';
import { ConfigError } from './errors/broker-error.js';
import { removeEmbeddedRedisUrl, startRedisServer, writeEmbeddedRedisUrl, type RedisServerHandle } from './infra/redis-server.js';
import { createLogger, type Logger } from './lib/logger.js';
import { describeRedisTarget, resolveRedisTarget } from './store/redis-connection.js';
import { checkRedisAtStartup } from './store/redis-startup-check.js';

export interface RunningBroker {
  readonly app: BrokerApp;
  readonly url: string;
  /** The Redis URL; with a Cluster or Sentinel, the variable that names it and its nodes. */
  readonly redisUrl: string;
  stop(): Promise<void>;
}

/**
 * Starts a broker from a validated config, with the embedded redis-server when no Redis is configured
 * (REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS).
 */
export async function startBroker(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<RunningBroker> {
  let embedded: RedisServerHandle | undefined;
  let redisUrl = config.redisUrl;
  if (redisUrl === undefined && config.redisDeployment === undefined) {
    embedded = await startRedisServer({ dir: config.dataDir });
    redisUrl = embedded.url;
    writeEmbeddedRedisUrl(config.dataDir, redisUrl);
    logger.info({ dir: config.dataDir, port: embedded.port }, 'REDIS_URL unset: started an embedded redis-server');
  }
  // A wrong password, ACL or CA stops start-up here, with a message naming the setting, before BullMQ connects.
  const target = resolveRedisTarget(config, redisUrl);
  try {
    await checkRedisAtStartup(target, config);
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
  const app = buildBrokerApp({ config, redisUrl, logger });
  let url: string;
  try {
    url = await app.start();
  } catch (err) {
    await app.stop().catch(() => undefined);
    await embedded?.stop();
    throw err;
  }
  return {
    app,
    url,
    redisUrl: redisUrl ?? describeRedisTarget(target),
    async stop() {
      await app.stop();
      if (embedded !== undefined) {
        await embedded.stop();
        removeEmbeddedRedisUrl(config.dataDir);
      }
    },
  };
}

/** What SIGTERM does before the shutdown: report not ready (`begin`) and keep serving for `seconds`. */
export interface DrainOnSigterm {
  readonly seconds: number;
  begin(): void;
}

/**
 * Stops gracefully on SIGTERM/SIGINT, and forcefully if that takes longer than the configured timeout. With a
 * drain, SIGTERM first reports not ready while still serving for `drain.seconds` (a load balancer or Kubernetes
 * takes the replica out of rotation meanwhile); SIGINT, or a second signal during the drain, shuts down at once.
 */
export function stopOnSignals(stop: () => Promise<void>, timeoutMs: number, logger: Logger, drain?: DrainOnSigterm): void {
  let stopping = false;
  let endDrain: (() => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (endDrain !== undefined) {
      endDrain();
      return;
    }
    if (stopping) return;
    stopping = true;
    if (signal === 'SIGTERM' && drain !== undefined && drain.seconds > 0) {
      logger.info({ signal, drainSeconds: drain.seconds }, 'draining: not ready (/readyz 503), still serving, then shutting down');
      drain.begin();
      const timer = setTimeout(() => endDrain?.(), drain.seconds * 1000);
      endDrain = () => {
        clearTimeout(timer);
        endDrain = undefined;
        shutDown(signal);
      };
      return;
    }
    shutDown(signal);
  };
  const shutDown = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      logger.error({ timeoutMs }, 'graceful shutdown took too long; exiting');
      process.exit(1);
    }, timeoutMs);
    force.unref();
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/** Crashes loudly on a bug nobody handled, instead of carrying on in an unknown state. */
export function exitOnUnhandled(logger: Logger): void {
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason }, 'unhandled promise rejection');
    process.exit(1);
  });
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
}

/** `polyv-token-broker serve`: parse config → build the app → start → wire signals. */
export async function serve(env: NodeJS.ProcessEnv): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`polyv-token-broker: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  exitOnUnhandled(logger);
  const demo = demoCredentialsInUse(config);
  if (demo.length > 0) {
    logger.warn({ demo }, "public demo credentials (the PolyV simulator's demo account, the demo API key): for development only");
  }
  const broker = await startBroker(config, logger);
  stopOnSignals(() => broker.stop(), config.shutdownTimeoutMs, logger, { seconds: config.drainSeconds, begin: () => broker.app.drain() });
}
