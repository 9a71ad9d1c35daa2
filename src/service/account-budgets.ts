import type { PolyvAccount } from '../config/config.js';
import { TOKEN_KIND_INFO, type TokenKind } from '../domain/token-kinds.js';

/** Calls per channel and rolling hour for each kind, unless an account's `budgets` say otherwise. */
export type BudgetDefaults = Readonly<Record<TokenKind, number>>;

/** The refresh reserve when none is set: 30 calls, or a fifteenth of a budget under 450 (a budget of 2 keeps none). */
export function defaultRefreshReserve(channelPerHour: number): number {
  return Math.min(DEFAULT_REFRESH_RESERVE_PER_HOUR, Math.floor(channelPerHour / 15));
}

const DEFAULT_REFRESH_RESERVE_PER_HOUR = 30;

/** The one place an account's per-channel budget of a token kind (and its refresh reserve) is resolved. */
export class AccountBudgets {
  constructor(
    private readonly defaults: BudgetDefaults,
    /** Of the channel-token budget, what only the proactive refresh may spend (BROKER_REFRESH_RESERVE_PER_HOUR). */
    private readonly refreshReservePerHour: number | undefined = undefined,
  ) {}

  /** The account's refresh reserve: its own, else the env one, else defaultRefreshReserve of its budget. */
  refreshReserve(account: PolyvAccount): number {
    return account.budgets?.refreshReservePerHour ?? this.refreshReservePerHour ?? defaultRefreshReserve(this.perHour(account, 'channel'));
  }

  perHour(account: PolyvAccount, kind: TokenKind): number {
    return account.budgets?.[TOKEN_KIND_INFO[kind].budgetSetting] ?? this.defaults[kind];
  }
}
