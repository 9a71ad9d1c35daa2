import { z } from 'zod';
import { ConfigError } from '../errors/broker-error.js';
import { createLogger } from '../lib/logger.js';
import { stopOnSignals } from '../main.js';
import { PolyvSimulator } from '../sim/polyv-simulator.js';
import { DEMO_ACCOUNT } from './demo-command.js';

const simEnvSchema = z.object({
  SIM_PORT: z.string().regex(/^\d{1,5}$/, 'must be a port number').default('8090').transform(Number),
  SIM_HOST: z.string().default('127.0.0.1'),
  SIM_APP_ID: z.string().min(1).default(DEMO_ACCOUNT.appId),
  SIM_APP_SECRET: z.string().min(1).default(DEMO_ACCOUNT.appSecret),
  SIM_CHANNELS: z
    .string()
    .regex(/^\d{1,20}(,\d{1,20})*$/, 'must be comma-separated channel IDs')
    .optional(),
});

/** `polyv-token-broker sim`: runs the PolyV simulator as a process (fault switches under /__sim/). */
export async function sim(env: NodeJS.ProcessEnv, print: (line: string) => void): Promise<void> {
  const parsed = simEnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${String(i.path[0])} ${i.message}`));
  }
  const e = parsed.data;
  const simulator = new PolyvSimulator({
    accounts: [
      {
        appId: e.SIM_APP_ID,
        appSecret: e.SIM_APP_SECRET,
        channels: e.SIM_CHANNELS === undefined ? DEMO_ACCOUNT.channels : e.SIM_CHANNELS.split(','),
      },
    ],
  });
  const { url } = await simulator.listen(e.SIM_PORT, e.SIM_HOST);
  const demo = e.SIM_APP_ID === DEMO_ACCOUNT.appId && e.SIM_APP_SECRET === DEMO_ACCOUNT.appSecret;
  print(`PolyV simulator listening on ${url} (appId ${e.SIM_APP_ID}${demo ? ': the public demo account, for development only' : ''})`);
  stopOnSignals(() => simulator.close(), 5000, createLogger('info'));
}
