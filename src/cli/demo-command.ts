import { loadConfig } from '../config/config.js';
import { DEMO_API_KEY } from '../domain/demo-credentials.js';
import { createLogger } from '../lib/logger.js';
import { startBroker, stopOnSignals } from '../main.js';
import { PolyvSimulator, defaultDemoAccount } from '../sim/polyv-simulator.js';

export const DEMO_ACCOUNT = defaultDemoAccount();
export const DEMO_KEY = DEMO_API_KEY;

/**
 * `polyv-token-broker demo`: the PolyV simulator, an embedded redis-server under .data/ and a broker with a
 * few warm channels, all in this process; prints the commands that read a token.
 */
export async function demo(env: NodeJS.ProcessEnv, print: (line: string) => void): Promise<void> {
  const sim = new PolyvSimulator({ accounts: [DEMO_ACCOUNT] });
  const simPort = env['SIM_PORT'] === undefined ? 0 : Number(env['SIM_PORT']);
  await sim.listen(simPort, '127.0.0.1');
  const config = loadConfig({
    PORT: env['PORT'] ?? '8080',
    HOST: '127.0.0.1',
    POLYV_BASE_URL: sim.url,
    POLYV_APP_ID: DEMO_ACCOUNT.appId,
    POLYV_APP_SECRET: DEMO_ACCOUNT.appSecret,
    BROKER_API_KEYS: `demo:${DEMO_KEY}`,
    BROKER_CHANNELS: '1000001,1000002',
    BROKER_DATA_DIR: env['BROKER_DATA_DIR'] ?? '.data',
    LOG_LEVEL: env['LOG_LEVEL'] ?? 'warn',
  });
  const logger = createLogger(config.logLevel);
  const broker = await startBroker(config, logger);
  const auth = `-H 'Authorization: Bearer ${DEMO_KEY}'`;
  print(`polyv-token-broker demo is running (Ctrl-C stops it)
  broker:          ${broker.url}
  PolyV simulator: ${sim.url}
  redis:           ${broker.redisUrl} (embedded, data under ${config.dataDir}/)

Read a cached token of a warm channel:
  curl -s ${auth} ${broker.url}/v1/channels/1000001/token
A cold channel (fetched once, then kept warm while it is read):
  curl -s ${auth} ${broker.url}/v1/channels/1000003/token
Keep a channel warm for a live event (fetched shortly before warmFrom, refreshed until warmUntil):
  curl -s ${auth} -X PUT -H 'Content-Type: application/json' -d "{\\"warmFrom\\": $(( $(date +%s) * 1000 + 600000 )), \\"warmUntil\\": $(( $(date +%s) * 1000 + 7800000 ))}" ${broker.url}/v1/channels/3151318
Report a token PolyV rejected (compare-and-refresh):
  curl -s ${auth} -H 'Content-Type: application/json' -d '{"rejectedToken":"<token>"}' ${broker.url}/v1/channels/1000001/token/refresh
Warm channels and their state:
  curl -s ${auth} ${broker.url}/v1/channels
A channel that is not in the account (404):
  curl -s ${auth} ${broker.url}/v1/channels/4242/token
Metrics and health:
  curl -s ${broker.url}/metrics | grep polyv_broker_
  curl -s ${broker.url}/readyz
Make the simulated PolyV fail (then read a cold channel):
  curl -s -X POST -d '{"kind":"http-status","status":502}' ${sim.url}/__sim/faults
  curl -s -X DELETE ${sim.url}/__sim/faults
`);
  stopOnSignals(
    async () => {
      await broker.stop();
      await sim.close();
    },
    config.shutdownTimeoutMs,
    logger,
  );
}
