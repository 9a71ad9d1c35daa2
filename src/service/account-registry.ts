import type { PolyvAccount } from '../config/config.js';

/** The PolyV accounts the broker serves, by route name and by appId. */
export class AccountRegistry {
  private readonly byName = new Map<string, PolyvAccount>();
  private readonly byApp = new Map<string, PolyvAccount>();
  readonly defaultAccount: PolyvAccount;

  constructor(accounts: readonly PolyvAccount[]) {
    const first = accounts[0];
    if (first === undefined) throw new Error('at least one PolyV account is required');
    this.defaultAccount = first;
    for (const a of accounts) {
      this.byName.set(a.name, a);
      this.byApp.set(a.appId, a);
    }
  }

  get all(): readonly PolyvAccount[] {
    return [...this.byName.values()];
  }

  named(name: string): PolyvAccount | undefined {
    return this.byName.get(name);
  }

  byAppId(appId: string): PolyvAccount | undefined {
    return this.byApp.get(appId);
  }
}
