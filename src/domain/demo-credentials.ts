/**
 * The public demo credentials: the PolyV simulator's default account and the API key of `polyv-token-broker
 * demo` and the compose dev profile. They are published on purpose, so worthless as secrets: a broker
 * configured with them says so in its log (config/demo-credentials-in-use.ts).
 */

/** appId of the simulator's default account. */
export const DEMO_APP_ID = 'demoappid1';
/** appSecret of the simulator's default account. */
export const DEMO_APP_SECRET = 'demo-secret-not-for-production';
/** The demo consumer's API key (consumer name `demo`). */
export const DEMO_API_KEY = 'demo-key-0123456789abcdef';
