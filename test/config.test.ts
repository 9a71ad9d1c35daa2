import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { configProblems } from './support/harness.js';

const base = {
  POLYV_APP_ID: 'app1',
  POLYV_APP_SECRET: 'secret-value',
  BROKER_API_KEYS: 'svc:0123456789abcdef',
};

const problemsOf = (env: Record<string, string | undefined>, readFile?: (p: string) => string): string[] =>
  configProblems(env, readFile === undefined ? {} : { readFile });

describe('configuration from environment variables', () => {
  it('when only the required variables are set, then the documented defaults apply', () => {
    const c = loadConfig(base);
    expect(c.redisUrl).toBeUndefined();
    expect(c.http.port).toBe(8080);
    expect(c.polyv.baseUrl).toBe('https://api.polyv.net');
    expect(c.tokens).toMatchObject({ expireSeconds: 3600, refreshBeforeSeconds: 300, minTtlSeconds: 60 });
    expect(c.budget.channelPerHour).toBe(450);
    expect(c.role).toBe('all');
    expect(c.logLevel).toBe('info');
    expect(c.accounts).toEqual([{ name: 'default', appId: 'app1', appSecret: 'secret-value', channels: [] }]);
    expect(c.apiKeys).toEqual([{ name: 'svc', key: '0123456789abcdef' }]);
  });

  it('when everything is missing, then every required variable is named at once', () => {
    const problems = problemsOf({});
    expect(problems.some((p) => p.startsWith('POLYV_APP_ID'))).toBe(true);
    expect(problems.some((p) => p.startsWith('BROKER_API_KEYS'))).toBe(true);
  });

  it('when the secret is missing, then the message names both ways to give it', () => {
    expect(problemsOf({ ...base, POLYV_APP_SECRET: undefined })).toEqual([
      'POLYV_APP_SECRET (or POLYV_APP_SECRET_FILE) is required',
    ]);
  });

  it('reads the secret from POLYV_APP_SECRET_FILE, trimmed, and rejects giving both', () => {
    const c = loadConfig(
      { ...base, POLYV_APP_SECRET: undefined, POLYV_APP_SECRET_FILE: '/run/secrets/polyv' },
      { readFile: (p) => (p === '/run/secrets/polyv' ? 'from-file\n' : '') },
    );
    expect(c.accounts[0]?.appSecret).toBe('from-file');
    expect(problemsOf({ ...base, POLYV_APP_SECRET_FILE: '/x' }, () => 'y')).toEqual([
      'POLYV_APP_SECRET and POLYV_APP_SECRET_FILE are both set: give exactly one',
    ]);
  });

  it.each([
    ['PORT', 'eighty', 'PORT must be a whole number'],
    ['PORT', '70000', 'PORT must be at most 65535'],
    ['BROKER_TOKEN_EXPIRE_SECONDS', '0', 'BROKER_TOKEN_EXPIRE_SECONDS must be at least 1'],
    ['BROKER_TOKEN_EXPIRE_SECONDS', '3601', 'BROKER_TOKEN_EXPIRE_SECONDS must be at most 3600'],
    ['BROKER_CHANNEL_BUDGET_PER_HOUR', '501', 'BROKER_CHANNEL_BUDGET_PER_HOUR must be at most 500'],
    ['BROKER_ROLE', 'both', 'BROKER_ROLE must be one of all, api, worker'],
    ['LOG_LEVEL', 'loud', 'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent'],
    ['REDIS_URL', 'http://localhost:6379', 'REDIS_URL must start with redis:// or rediss://'],
    ['POLYV_BASE_URL', 'not a url', 'POLYV_BASE_URL must be an http(s) URL'],
  ])('when %s=%s, then start-up stops with "%s"', (name, value, message) => {
    expect(problemsOf({ ...base, [name]: value })).toContain(message);
  });

  it('rejects a refresh window that would let a served token fall under the minimum TTL', () => {
    expect(problemsOf({ ...base, BROKER_REFRESH_BEFORE_SECONDS: '3550' })).toEqual([
      'BROKER_REFRESH_BEFORE_SECONDS must be less than BROKER_TOKEN_EXPIRE_SECONDS - BROKER_MIN_TTL_SECONDS (3600 - 60 = 3540), got 3550',
    ]);
    expect(loadConfig({ ...base, BROKER_REFRESH_BEFORE_SECONDS: '3539' }).tokens.refreshBeforeSeconds).toBe(3539);
  });

  it('validates channel IDs and API keys', () => {
    expect(problemsOf({ ...base, BROKER_CHANNELS: '123, abc ,456' })).toEqual([
      'BROKER_CHANNELS entry "abc" must be a channel ID of 1-20 digits',
    ]);
    expect(loadConfig({ ...base, BROKER_CHANNELS: '123, 456,123' }).accounts[0]?.channels).toEqual(['123', '456']);
    expect(problemsOf({ ...base, BROKER_API_KEYS: 'svc:short' })).toEqual([
      'BROKER_API_KEYS key "svc" must be at least 16 characters long',
    ]);
    expect(problemsOf({ ...base, BROKER_API_KEYS: 'nokey' })[0]).toMatch(/^BROKER_API_KEYS entry 1 must be name:key/);
    expect(problemsOf({ ...base, BROKER_API_KEYS: 'a:0123456789abcdef,a:0123456789abcdeg' })).toEqual([
      'BROKER_API_KEYS names must be unique: "a" appears twice',
    ]);
  });

  it('never puts a secret value in an error message', () => {
    const problems = problemsOf({ ...base, POLYV_APP_SECRET_FILE: '/x', BROKER_API_KEYS: 'svc:tooshort-secret' });
    expect(problems.join('\n')).not.toContain('secret-value');
    expect(problems.join('\n')).not.toContain('tooshort-secret');
  });
});
