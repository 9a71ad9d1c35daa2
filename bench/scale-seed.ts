/**
 * Makes channels warm for the scheduler-scale bench (a child of the bench). It is a broker replica built by
 * the real composition root, so each channel goes through the production path. `seed` makes channels warm on
 * demand, by a cold read each (`service.getToken`: budget slot, PolyV (the simulator), versioned write, the
 * channel joins the warm set's schedule, the read is noted and written as `lastReadAt`). `pin` and `warm` pin
 * channels as `PUT /v1/channels/{id}` does (`service.warm`); their first fetch is a worker's, so `pin` runs in
 * a replica with role `worker` (this script with BROKER_ROLE=worker) and the bench waits for the tokens.
 *
 * One bench-only change: the fleet-wide PolyV limit (BROKER_GLOBAL_LIMIT_PER_10S, at most 1500 per 10 s)
 * is lifted, or 100k channels would take 11 minutes to warm. The simulator lifts its per-IP limit to match.
 */
import { buildBrokerApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { serveCommands, sleep } from './support.js';

const parsed = loadConfig(process.env);
const config = { ...parsed, budget: { ...parsed.budget, globalPer10s: 1_000_000_000 } };
const app = buildBrokerApp({ config, redisUrl: config.redisUrl ?? '' });
await app.start();
const account = app.accounts.defaultAccount;

/** Runs `work(i)` for i in [0, count) with at most `concurrency` at once; returns the failures. */
async function pool(count: number, concurrency: number, work: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  let failures = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const i = next++;
        try {
          await work(i);
        } catch {
          failures += 1;
        }
      }
    }),
  );
  return failures;
}

serveCommands(
  {},
  async (cmd, args) => {
    if (cmd === 'seed') {
      // A cold read of each channel, as a consumer's first GET makes it warm on demand; then the reads are
      // written (lastReadAt), as the replica's next flush would.
      const { from, count, concurrency } = args as { from: number; count: number; concurrency: number };
      const started = Date.now();
      const failures = await pool(count, concurrency, (i) => app.service.getToken(account, String(from + i)));
      await app.reads.flush();
      return { ms: Date.now() - started, failures };
    }
    if (cmd === 'pin') {
      // PUT /v1/channels/{id} for each channel, as fast as it goes; the worker fetches their tokens.
      const { from, count, concurrency } = args as { from: number; count: number; concurrency: number };
      const started = Date.now();
      const failures = await pool(count, concurrency, (i) => app.service.warm(account, String(from + i)));
      return { ms: Date.now() - started, failures };
    }
    if (cmd === 'warm') {
      // PUT /v1/channels/{id} for each channel, paced: the workers then fetch and schedule them.
      const { from, count, ratePerSec } = args as { from: number; count: number; ratePerSec: number };
      const started = Date.now();
      let failures = 0;
      for (let i = 0; i < count; i += 1) {
        const dueAt = started + (i * 1000) / ratePerSec;
        const wait = dueAt - Date.now();
        if (wait > 0) await sleep(wait);
        app.service.warm(account, String(from + i)).catch(() => (failures += 1));
      }
      return { ms: Date.now() - started, failures };
    }
    throw new Error(`unknown command ${cmd}`);
  },
  () => app.stop(),
);
