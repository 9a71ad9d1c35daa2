import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { demoCredentialsInUse } from '../src/config/demo-credentials-in-use.js';
import { DEMO_API_KEY, DEMO_APP_ID, DEMO_APP_SECRET } from '../src/domain/demo-credentials.js';
import { defaultDemoAccount } from '../src/sim/polyv-simulator.js';
import { configProblems, testConfig } from './support/harness.js';

describe('public demo credentials', () => {
  it('when the simulator runs with its default account, then it is the published demo account', () => {
    expect(defaultDemoAccount()).toMatchObject({ appId: DEMO_APP_ID, appSecret: DEMO_APP_SECRET });
    expect(configProblems({ POLYV_APP_ID: DEMO_APP_ID, POLYV_APP_SECRET: DEMO_APP_SECRET, BROKER_API_KEYS: `demo:${DEMO_API_KEY}` })).toEqual([]);
  });

  it('when a broker is configured with the demo account or the demo key (plain or as its SHA-256), then each use is named', () => {
    const demo = testConfig('http://127.0.0.1:1', {
      POLYV_APP_ID: DEMO_APP_ID,
      POLYV_APP_SECRET: DEMO_APP_SECRET,
      BROKER_API_KEYS: `demo:${DEMO_API_KEY},ops:ops-key-0123456789abcdef`,
    });
    expect(demoCredentialsInUse(demo)).toEqual(['account default (appId demoappid1)', 'API key of consumer demo']);
    const hashed = createHash('sha256').update(DEMO_API_KEY).digest('hex').toUpperCase();
    expect(demoCredentialsInUse({ accounts: [], apiKeys: [{ name: 'hashed', keySha256: hashed }] })).toEqual(['API key of consumer hashed']);
  });

  it('when a broker has its own credentials, then nothing is named', () => {
    expect(demoCredentialsInUse(testConfig('http://127.0.0.1:1'))).toEqual([]);
  });
});
