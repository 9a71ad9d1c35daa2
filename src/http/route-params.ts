import type { Request } from 'express';
import type { PolyvAccount } from '../config/config.js';
import { BrokerError, RequestError } from '../errors/broker-error.js';
import type { AccountRegistry } from '../service/account-registry.js';
import { channelIdParam } from './api-schemas.js';

/** The `:channelId` route parameter, validated (1-20 digits) before any other work. */
export function channelIdOf(req: Request): string {
  const id = req.params['channelId'];
  if (!channelIdParam.safeParse(id).success) {
    throw new RequestError('invalid_channel_id', 'channelId must be 1-20 digits');
  }
  return id as string;
}

/** The `:account` route parameter's account, or the default account on `/v1/channels/...`. */
export function accountOf(req: Request, accounts: AccountRegistry): PolyvAccount {
  const name = req.params['account'];
  if (name === undefined) return accounts.defaultAccount;
  const account = typeof name === 'string' ? accounts.named(name) : undefined;
  if (account === undefined) throw new BrokerError('not_found', `unknown account: ${String(name).slice(0, 64)}`);
  return account;
}
