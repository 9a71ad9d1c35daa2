import { DEMO_APP_ID, DEMO_APP_SECRET } from '../domain/demo-credentials.js';
import type { SimAccount } from './sim-types.js';

/** The account `demo` and `sim` use by default. The secret is public on purpose: never use it against PolyV. */
export function defaultDemoAccount(): SimAccount {
  return {
    appId: DEMO_APP_ID,
    appSecret: DEMO_APP_SECRET,
    channels: ['1000001', '1000002', '1000003', '3151318'],
  };
}
