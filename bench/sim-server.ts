/**
 * The project's PolyV simulator as a child of the bench, in its own process so that it never shares an
 * event loop with what is measured. Any channel ID belongs to the bench account; the per-IP limit is lifted
 * (every bench process calls from 127.0.0.1), the per-channel hourly limit is PolyV's.
 */
import { PolyvSimulator } from '../src/sim/polyv-simulator.js';
import { BENCH_APP_ID, BENCH_APP_SECRET, serveCommands } from './support.js';

const sim = new PolyvSimulator({
  accounts: [{ appId: BENCH_APP_ID, appSecret: BENCH_APP_SECRET }],
  ipLimitPer10s: 1_000_000_000,
});
const { url } = await sim.listen(0, '127.0.0.1');

serveCommands(
  { url },
  async (cmd, args) => {
    if (cmd === 'reset') {
      sim.resetCalls();
      return null;
    }
    if (cmd === 'count') {
      // Successful get-channel-token calls in [from, to) for channel IDs starting with `prefix`.
      const { from, to, prefix } = args as { from: number; to: number; prefix: string };
      const calls = sim.calls({ endpoint: 'get-channel-token' });
      let n = 0;
      const channels = new Set<string>();
      for (const c of calls) {
        if (c.code !== 200 || c.at < from || c.at >= to || !(c.channelId ?? '').startsWith(prefix)) continue;
        n += 1;
        channels.add(c.channelId ?? '');
      }
      return { calls: n, channels: channels.size, recorded: calls.length };
    }
    throw new Error(`unknown command ${cmd}`);
  },
  () => sim.close(),
);
