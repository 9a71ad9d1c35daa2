#!/usr/bin/env node
import { loadConfig } from '../config/config.js';
import { ConfigError } from '../errors/broker-error.js';
import { serve } from '../main.js';
import { demo } from './demo-command.js';
import {
  UsageError,
  budgetCommand,
  channelsCommand,
  connectForOncall,
  inspectCommand,
  refreshCommand,
  type Print,
} from './oncall-commands.js';
import { sim } from './sim-command.js';
import type { BrokerApp } from '../app.js';
import { buildOpenApiDocument } from '../http/openapi.js';

const USAGE = `usage: polyv-token-broker <command>

commands:
  serve     run the broker (configured by environment variables; see README)
  sim       run the PolyV simulator (SIM_PORT, SIM_APP_ID, SIM_APP_SECRET, SIM_CHANNELS)
  demo      simulator + embedded Redis + broker with warm channels, and curl examples
  openapi   print the OpenAPI 3.1 description of the HTTP API (as served at GET /openapi.json)

on-call (same environment as the broker; --json for machine-readable output, --account <name> for
another account of BROKER_CONFIG_FILE):
  inspect [channelId]   a channel in depth (token masked), or the broker at a glance
  channels              warm channels: expiry, next refresh, calls in the last hour, last error
  refresh <channelId>   fetch a new token now (through the budget and the refresh lock)
  budget <channelId>    calls in the rolling hour against the budget, and when a slot frees
  help                  this text
`;

const print = (line: string) => process.stdout.write(`${line}\n`);

const ONCALL: Record<string, (app: BrokerApp, args: readonly string[], print: Print) => Promise<void>> = {
  inspect: inspectCommand,
  channels: channelsCommand,
  refresh: refreshCommand,
  budget: budgetCommand,
};

async function oncall(command: string, args: readonly string[]): Promise<number> {
  const run = ONCALL[command]!;
  const app = await connectForOncall(loadConfig(process.env));
  try {
    await run(app, args, print);
    return 0;
  } finally {
    await app.stop();
  }
}

/**
 * `serve`, `sim` and `demo` take no arguments: configuration, secrets above all, comes from the environment
 * and from files (`*_FILE`), never the command line, where `ps` and shell history would show it. The
 * arguments are not echoed, in case one was a secret.
 */
function refuseArguments(command: string, args: readonly string[]): void {
  if (args.length > 0) {
    throw new UsageError(
      `${command} takes no arguments (got ${args.length}): configure it with environment variables, and give secrets as files (POLYV_APP_SECRET_FILE, BROKER_API_KEYS_FILE, BROKER_ENCRYPTION_KEY_FILE), never on the command line`,
    );
  }
}

async function main(argv: readonly string[]): Promise<number | undefined> {
  const [command, ...args] = argv;
  if (command !== undefined && Object.hasOwn(ONCALL, command)) return oncall(command, args);
  if (command === 'serve' || command === 'sim' || command === 'demo') refuseArguments(command, args);
  switch (command) {
    case 'serve':
      await serve(process.env);
      return undefined;
    case 'sim':
      await sim(process.env, print);
      return undefined;
    case 'demo':
      await demo(process.env, print);
      return undefined;
    case 'openapi':
      print(JSON.stringify(buildOpenApiDocument(), null, 2));
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      print(USAGE);
      return 0;
    default:
      process.stderr.write(`polyv-token-broker: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`polyv-token-broker: ${message}\n`);
    process.exitCode = err instanceof ConfigError || err instanceof UsageError ? 2 : 1;
  },
);
