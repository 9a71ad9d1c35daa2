import type { PolyvAccount } from '../config/config.js';
import { TOKEN_KIND_INFO, type TokenKind } from '../domain/token-kinds.js';

/** Calls per channel and rolling hour for each kind, unless an account's `budgets` say otherwise. */
export type BudgetDefaults = Readonly<Record<TokenKind, number>>;

/** The one place an account's per-channel budget of a token kind is resolved. */
export class AccountBudgets {
  constructor(private readonly defaults: BudgetDefaults) {}

  perHour(account: PolyvAccount, kind: TokenKind): number {
    return account.budgets?.[TOKEN_KIND_INFO[kind].budgetSetting] ?? this.defaults[kind];
  }
}
