import type { Response } from 'express';
import type { PolyvAccount } from '../config/config.js';
import { BrokerError } from '../errors/broker-error.js';
import type { TokenKind } from '../domain/token-kinds.js';
import type { Consumer } from './api-key-auth.js';

/** What a request wants to read: a kind of token of one channel, or (no `channelId`) of an account as a whole. */
export interface AccessTarget {
  readonly account: PolyvAccount;
  readonly channelId?: string;
  readonly kind: TokenKind;
}

/** The authenticated consumer; only reachable behind the auth middleware, so a missing one is a bug. */
export function consumerOf(res: Response): Consumer {
  const consumer = res.locals['consumer'] as Consumer | undefined;
  if (consumer === undefined) throw new BrokerError('unauthorized', 'missing Authorization header: send Authorization: Bearer <key>');
  return consumer;
}

/** Whether the consumer's scope covers the target; without `channelId`, only the account and the kind count. */
export function mayRead(consumer: Consumer, target: AccessTarget): boolean {
  const scope = consumer.scope;
  if (scope === undefined) return true;
  if (scope.accounts !== undefined && !scope.accounts.has(target.account.name)) return false;
  if (scope.kinds !== undefined && !scope.kinds.has(target.kind)) return false;
  return target.channelId === undefined || scope.channels === undefined || scope.channels.has(target.channelId);
}

/** `mayRead` for the consumer the auth middleware authenticated. */
export function mayAccess(res: Response, target: AccessTarget): boolean {
  return mayRead(consumerOf(res), target);
}

/**
 * Throws 403 `forbidden` unless the consumer may read `kind` tokens of the channel (or, without `channelId`,
 * of the account). Runs after authentication; unknown keys were answered 401 before. The message names the
 * consumer, never its key.
 */
export function authorize(res: Response, target: AccessTarget): void {
  const consumer = consumerOf(res);
  // For the access log and polyv_broker_requests_total: what kind of token the request is about.
  res.locals['kind'] = target.kind;
  if (mayRead(consumer, target)) return;
  const channel = target.channelId === undefined ? '' : ` of channel ${target.channelId}`;
  throw new BrokerError(
    'forbidden',
    `consumer ${consumer.name} may not read ${target.kind} tokens${channel} in account ${target.account.name}`,
  );
}
