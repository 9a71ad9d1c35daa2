import { buildBrokerApp, type BrokerApp } from '../app.js';
import type { Config, PolyvAccount } from '../config/config.js';
import { CHANNEL_ID_RE } from '../config/env-schema.js';
import { readEmbeddedRedisUrl } from '../infra/redis-server.js';
import { createLogger } from '../lib/logger.js';
import { refreshJobId } from '../scheduler/refresh-queue.js';
import { KEY_SCHEMA_VERSION } from '../scheduler/migrate-v1.js';
import type { ChannelState } from '../service/channel-token-service.js';
import { GLOBAL_WINDOW_MS, HOUR_MS } from '../store/call-budget.js';
import { maskToken } from './mask.js';

export type Print = (line: string) => void;

export class UsageError extends Error {}

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? '-' : new Date(ms).toISOString());
const secondsFrom = (ms: number | null | undefined, now: number) =>
  ms === null || ms === undefined ? '-' : `${Math.round((ms - now) / 1000)}s`;

/**
 * Opens the broker's own stores on the configured Redis (REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS,
 * else the embedded server of a local `serve`/`demo`), without HTTP or worker.
 */
export function openForOncall(config: Config): BrokerApp {
  const redisUrl = config.redisUrl ?? (config.redisDeployment === undefined ? readEmbeddedRedisUrl(config.dataDir) : undefined);
  if (redisUrl === undefined && config.redisDeployment === undefined) {
    throw new UsageError(
      'REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS are unset and no embedded redis-server is running under BROKER_DATA_DIR',
    );
  }
  return buildBrokerApp({ config: { ...config, role: 'api' }, redisUrl, logger: createLogger('silent') });
}

/** openForOncall, connected and checked (a wrong password or an unreachable Redis fails here, explained). */
export async function connectForOncall(config: Config): Promise<BrokerApp> {
  const app = openForOncall(config);
  try {
    await app.connect();
  } catch (err) {
    await app.stop().catch(() => undefined);
    throw err;
  }
  return app;
}

/** Positional arguments: everything but `--flags` and the value after `--account`. */
function positional(args: readonly string[]): string[] {
  return args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--account');
}

/** `--account <name>` picks a configured account; the default account otherwise. */
function accountArg(app: BrokerApp, args: readonly string[]): PolyvAccount {
  const i = args.indexOf('--account');
  if (i < 0) return app.accounts.defaultAccount;
  const name = args[i + 1];
  const account = name === undefined ? undefined : app.accounts.named(name);
  if (account === undefined) {
    throw new UsageError(`--account needs one of: ${app.accounts.all.map((a) => a.name).join(', ')}`);
  }
  return account;
}

function channelArg(args: readonly string[], required: boolean): string | undefined {
  const ch = positional(args)[0];
  if (ch === undefined) {
    if (required) throw new UsageError('a channel ID is required');
    return undefined;
  }
  if (!CHANNEL_ID_RE.test(ch)) throw new UsageError(`channel ID must be 1-20 digits: ${ch.slice(0, 40)}`);
  return ch;
}

/** A warm window as `<warmFrom>..<warmUntil>` (ISO times, `-` for an open side), or `-` without one. */
function windowText(r: ChannelState): string {
  return r.warmFrom === null && r.warmUntil === null ? '-' : `${iso(r.warmFrom)}..${iso(r.warmUntil)}`;
}

function printTable(print: Print, rows: ChannelState[], now: number): void {
  print(['CHANNEL', 'WARM', 'EXPIRES IN', 'NEXT REFRESH IN', 'CALLS/H', 'LAST ERROR', 'LAST READ', 'WINDOW'].join('\t'));
  for (const r of rows) {
    print(
      [
        r.channelId,
        r.warm === false ? 'no' : r.warm,
        secondsFrom(r.expireTime, now),
        secondsFrom(r.nextRefreshAt, now),
        `${r.callsLastHour}/${r.budgetPerHour}`,
        r.lastError === null ? '-' : `${r.lastError.code} ${iso(r.lastError.at)}`,
        secondsFrom(r.lastReadAt, now),
        windowText(r),
      ].join('\t'),
    );
  }
}

/** `channels [--json]`: every warm channel with its state. */
export async function channelsCommand(app: BrokerApp, args: readonly string[], print: Print): Promise<void> {
  const account = accountArg(app, args);
  const rows = await app.service.list(account);
  if (args.includes('--json')) print(JSON.stringify({ account: account.name, channels: rows }, null, 2));
  else printTable(print, rows, Date.now());
}

/** `inspect [channelId] [--json]`: one channel in depth (token masked), or the whole broker at a glance. */
export async function inspectCommand(app: BrokerApp, args: readonly string[], print: Print): Promise<void> {
  const account = accountArg(app, args);
  const channelId = channelArg(args, false);
  const now = Date.now();
  if (channelId === undefined) {
    const counts = await app.queue.queue.getJobCounts('waiting', 'delayed', 'active', 'failed', 'completed');
    const warmCounts = await app.warmSet.count(account.appId);
    const warm = warmCounts.total;
    const schema = await app.warmSet.schema();
    const globalUsed = await app.budget.globalUsed();
    const credentialsRefused = await app.budget.readAccountFailure(account.appId);
    const upstreamPause = await app.budget.readPause();
    const summary = {
      account: account.name,
      appId: account.appId,
      warmChannels: warm,
      warmByMode: { pinned: warmCounts.pinned, 'on-demand': warmCounts.onDemand, window: warmCounts.window },
      warmCapacityChannels: app.capacity.figures.capacityChannels,
      keySchema: schema ?? 1,
      jobs: counts,
      globalCallsLast10s: globalUsed,
      globalLimitPer10s: app.config.budget.globalPer10s,
      credentialsRefused,
      upstreamPause,
    };
    if (args.includes('--json')) {
      print(JSON.stringify(summary, null, 2));
      return;
    }
    print(
      `account ${summary.account} (appId ${summary.appId}): ${warm} warm channels (${warmCounts.pinned} pinned, ${warmCounts.onDemand} on demand, ${warmCounts.window} in windows)`,
    );
    print(`fleet capacity: ${summary.warmCapacityChannels} warm channels at the configured token lifetime (all accounts together)`);
    if (summary.keySchema !== KEY_SCHEMA_VERSION) print(`key schema: v${summary.keySchema} (no v${KEY_SCHEMA_VERSION} worker has run yet: it migrates at start-up)`);
    print(`jobs: ${Object.entries(counts).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    print(`PolyV calls in the last 10 s (whole fleet): ${globalUsed}/${summary.globalLimitPer10s}`);
    if (upstreamPause !== null) {
      const state = upstreamPause.until > now ? `paused until ${iso(upstreamPause.until)} (in ${secondsFrom(upstreamPause.until, now)})` : 'the probe after the pause is due';
      print(`PolyV calls of the whole fleet: ${state}, after PolyV said at ${iso(upstreamPause.at)}: ${upstreamPause.message}`);
    }
    if (credentialsRefused !== null) {
      print(`credentials refused by PolyV at ${iso(credentialsRefused.at)}: ${credentialsRefused.message}`);
      print(`  no PolyV call for this account until ${iso(credentialsRefused.retryAt)} (in ${secondsFrom(credentialsRefused.retryAt, now)}); \`refresh <channelId>\` forces one try`);
    }
    return;
  }
  const [state, cached, jobState, rejected] = await Promise.all([
    app.service.describe(account, channelId),
    app.store.read(account.appId, channelId),
    app.queue.jobState(account.appId, channelId),
    app.store.readRejected(account.appId, channelId),
  ]);
  const detail = {
    ...state,
    token: cached === null ? null : maskToken(cached.token),
    tokenVersion: cached?.version ?? null,
    fetchedAt: cached?.fetchedAt ?? null,
    // A refresh job exists only while the refresh is due or running ('missing' in between is normal).
    job: { id: refreshJobId(account.appId, channelId), state: jobState },
    rejectedByPolyv: rejected,
  };
  if (args.includes('--json')) {
    print(JSON.stringify(detail, null, 2));
    return;
  }
  print(`channel ${channelId} (account ${account.name})`);
  print(`  warm:          ${state.warm === false ? 'no' : state.warm}`);
  if (state.warmFrom !== null || state.warmUntil !== null) print(`  window:        ${windowText(state)}`);
  print(`  last read:     ${iso(state.lastReadAt)}${state.lastReadAt === null ? '' : ` (${secondsFrom(state.lastReadAt, now)})`}`);
  print(`  token:         ${detail.token ?? 'none cached'}`);
  print(`  expireTime:    ${iso(state.expireTime)} (in ${secondsFrom(state.expireTime, now)})`);
  print(`  fetched:       ${iso(detail.fetchedAt)}   version ${detail.tokenVersion ?? '-'}`);
  print(`  next refresh:  ${iso(state.nextRefreshAt)} (in ${secondsFrom(state.nextRefreshAt, now)})`);
  print(`  job:           ${detail.job.id} ${jobState} (queued only while a refresh is due or running)`);
  print(`  calls/hour:    ${state.callsLastHour}/${state.budgetPerHour}`);
  print(`  last error:    ${state.lastError === null ? '-' : `${state.lastError.code} at ${iso(state.lastError.at)}: ${state.lastError.message}`}`);
  if (rejected !== null) print(`  rejected:      ${rejected}`);
}

/** `refresh <channelId> [--json]`: fetch a new token now (through the budget and the lock; one try even while the account's credentials are recorded as refused). */
export async function refreshCommand(app: BrokerApp, args: readonly string[], print: Print): Promise<void> {
  const channelId = channelArg(args, true)!;
  const account = accountArg(app, args);
  const token = await app.service.forceRefresh(account, channelId);
  const out = { channelId, token: maskToken(token.token), expireTime: token.expireTime, version: token.version };
  if (args.includes('--json')) print(JSON.stringify(out, null, 2));
  else print(`refreshed channel ${channelId}: ${out.token}, expires ${iso(token.expireTime)}`);
}

/** `budget <channelId> [--json]`: calls in the rolling hour against the budget, and when a slot frees. */
export async function budgetCommand(app: BrokerApp, args: readonly string[], print: Print): Promise<void> {
  const channelId = channelArg(args, true)!;
  const account = accountArg(app, args);
  const now = Date.now();
  const [used, oldest, globalUsed] = await Promise.all([
    app.budget.used(account.appId, channelId),
    app.budget.oldestCall(account.appId, channelId),
    app.budget.globalUsed(),
  ]);
  const perHour = app.budgets.perHour(account, 'channel');
  const out = {
    channelId,
    callsLastHour: used,
    budgetPerHour: perHour,
    remaining: Math.max(0, perHour - used),
    oldestCallAt: oldest,
    nextSlotFreesAt: used >= perHour && oldest !== null ? oldest + HOUR_MS : null,
    globalCallsLast10s: globalUsed,
    globalLimitPer10s: app.config.budget.globalPer10s,
    globalWindowMs: GLOBAL_WINDOW_MS,
  };
  if (args.includes('--json')) {
    print(JSON.stringify(out, null, 2));
    return;
  }
  print(`channel ${channelId}: ${used}/${perHour} calls in the last hour, ${out.remaining} left`);
  print(`  oldest call:   ${iso(oldest)}`);
  if (out.nextSlotFreesAt !== null) print(`  budget spent; next slot frees ${iso(out.nextSlotFreesAt)} (in ${secondsFrom(out.nextSlotFreesAt, now)})`);
  print(`  fleet:         ${globalUsed}/${out.globalLimitPer10s} PolyV calls in the last 10 s`);
}
