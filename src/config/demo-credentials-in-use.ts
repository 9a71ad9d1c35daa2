import { createHash } from 'node:crypto';
import { DEMO_API_KEY, DEMO_APP_ID } from '../domain/demo-credentials.js';
import type { ApiKey, PolyvAccount } from './config-file.js';

const DEMO_API_KEY_SHA256 = createHash('sha256').update(DEMO_API_KEY, 'utf8').digest('hex');

/**
 * Which of the configured accounts and consumers use the public demo credentials (the simulator's demo
 * account, the demo API key), each named as an operator would look for it; empty when none does.
 */
export function demoCredentialsInUse(config: { readonly accounts: readonly PolyvAccount[]; readonly apiKeys: readonly ApiKey[] }): string[] {
  return [
    ...config.accounts.filter((a) => a.appId === DEMO_APP_ID).map((a) => `account ${a.name} (appId ${a.appId})`),
    ...config.apiKeys
      .filter((k) => k.key === DEMO_API_KEY || k.keySha256?.toLowerCase() === DEMO_API_KEY_SHA256)
      .map((k) => `API key of consumer ${k.name}`),
  ];
}
