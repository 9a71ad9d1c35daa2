/**
 * A refresh worker for the scheduler-scale bench (a child of the bench): the real broker with role `worker`,
 * built from the environment like production (fleet-wide PolyV limit included). It is instrumented from the
 * outside only: each call of `service.refreshIfDue` (what every refresh job runs) first notes how far from
 * its due time it started; the due time is the one this worker's previous run of the channel put in the warm
 * set (`service.reschedule`), so each channel's first scheduled refresh is not sampled.
 */
import { buildBrokerApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import type { PolyvAccount } from '../src/config/config.js';
import { quantile, serveCommands, sortNumbers } from './support.js';

const config = loadConfig(process.env);
const app = buildBrokerApp({ config, redisUrl: config.redisUrl ?? '' });
const samples: Array<{ at: number; errorMs: number }> = [];
const dueAt = new Map<string, number>();
const reschedule = app.service.reschedule.bind(app.service);
app.service.reschedule = (appId: string, channelId: string, at: number) => {
  dueAt.set(channelId, at);
  return reschedule(appId, channelId, at);
};
const refreshIfDue = app.service.refreshIfDue.bind(app.service);
app.service.refreshIfDue = async (account: PolyvAccount, channelId: string) => {
  const startedAt = Date.now();
  const due = dueAt.get(channelId);
  if (due !== undefined) samples.push({ at: startedAt, errorMs: startedAt - due });
  return refreshIfDue(account, channelId);
};
await app.start();

serveCommands(
  { pid: process.pid },
  async (cmd, args) => {
    if (cmd === 'cpu') return process.cpuUsage();
    if (cmd === 'timing') {
      const { from, to } = args as { from: number; to: number };
      const errors = sortNumbers(samples.filter((s) => s.at >= from && s.at < to).map((s) => s.errorMs));
      const abs = sortNumbers(errors.map(Math.abs));
      return {
        count: errors.length,
        p1: quantile(errors, 0.01),
        p50: quantile(errors, 0.5),
        p99: quantile(errors, 0.99),
        max: errors[errors.length - 1] ?? null,
        absP99: quantile(abs, 0.99),
      };
    }
    throw new Error(`unknown command ${cmd}`);
  },
  () => app.stop(),
);
