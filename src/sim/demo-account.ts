import type { SimAccount } from './sim-types.js';

/** The account `demo` and `sim` use by default. The secret is public on purpose: never use it against PolyV. */
export function defaultDemoAccount(): SimAccount {
  return {
    appId: 'demoappid1',
    appSecret: 'demo-secret-not-for-production',
    channels: ['1000001', '1000002', '1000003', '3151318'],
  };
}
