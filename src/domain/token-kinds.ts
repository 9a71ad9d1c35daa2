/**
 * The domain words every layer shares: the four PolyV token kinds, the PolyV endpoint behind each, and the
 * budget each endpoint draws from. Config, store, service, HTTP and metrics import them from here.
 */

/** A kind of token the broker serves (also the `kind` label of metrics and a consumer scope's `kinds`). */
export const TOKEN_KINDS = ['channel', 'watch_api', 'common', 'watch_url'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** The per-channel rolling-hour budget a PolyV call draws from (also part of its Redis key). */
export type BudgetEndpoint = 'channel-token' | 'watch-api-token' | 'common-token' | 'watch-url';

/** PolyV's name of each endpoint (the `endpoint` label of the PolyV call metrics). */
export type PolyvEndpoint = 'get-channel-token' | 'get-watch-api-token' | 'common-get-token' | 'get-token-watch-url';

export interface TokenKindInfo {
  readonly kind: TokenKind;
  readonly budget: BudgetEndpoint;
  readonly endpoint: PolyvEndpoint;
  /** The key of an account's `budgets` in the config file that overrides this kind's per-channel budget. */
  readonly budgetSetting: 'channelTokenPerHour' | 'watchTokenPerHour' | 'commonTokenPerHour' | 'watchUrlPerHour';
}

export const TOKEN_KIND_INFO: Readonly<Record<TokenKind, TokenKindInfo>> = {
  channel: { kind: 'channel', budget: 'channel-token', endpoint: 'get-channel-token', budgetSetting: 'channelTokenPerHour' },
  watch_api: { kind: 'watch_api', budget: 'watch-api-token', endpoint: 'get-watch-api-token', budgetSetting: 'watchTokenPerHour' },
  common: { kind: 'common', budget: 'common-token', endpoint: 'common-get-token', budgetSetting: 'commonTokenPerHour' },
  watch_url: { kind: 'watch_url', budget: 'watch-url', endpoint: 'get-token-watch-url', budgetSetting: 'watchUrlPerHour' },
};

/** Why a PolyV call was made (the `trigger` label of refresh metrics). */
export type RefreshTrigger = 'miss' | 'rejected' | 'scheduled' | 'manual';
