import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { configProblems } from './support/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'ptb-config-file-'));
mkdirSync(join(dir, 'secrets'));
writeFileSync(join(dir, 'secrets', 'partner.txt'), '  partner-secret-value\n');
writeFileSync(join(dir, 'secrets', 'empty.txt'), ' \n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
/** Writes `content` to a new file with this extension and returns its path. */
function file(ext: string, content: string): string {
  fileCount += 1;
  const path = join(dir, `broker-${fileCount}${ext}`);
  writeFileSync(path, content);
  return path;
}

const SVC_KEY = 'svc-a-plain-key-0123456789';
const HASHED_KEY = 'svc-b-hashed-key-0123456789';
const HASHED_KEY_SHA = createHash('sha256').update(HASHED_KEY).digest('hex');
const MAIN_SECRET = 'main-secret-value';
const envAccount = { POLYV_APP_ID: 'envapp1', POLYV_APP_SECRET: 'env-secret-value' };

const EXAMPLE = {
  accounts: [
    {
      name: 'main',
      appId: 'abc123',
      appSecretEnv: 'POLYV_MAIN_SECRET',
      channels: ['3151318', '3151319', '3151318'],
      budgets: { channelTokenPerHour: 120 },
    },
    { name: 'partner', appId: 'partner9', appSecretFile: 'secrets/partner.txt' },
  ],
  consumers: [
    { name: 'svc-a', key: SVC_KEY, accounts: ['main'], channels: ['3151318'], kinds: ['channel', 'watch_api'] },
    { name: 'svc-b', keySha256: HASHED_KEY_SHA.toUpperCase() },
  ],
};

const EXAMPLE_YAML = `
accounts:
  - name: main            # route name
    appId: abc123
    appSecretEnv: POLYV_MAIN_SECRET
    channels: ["3151318", "3151319", "3151318"]
    budgets: { channelTokenPerHour: 120 }
  - name: partner
    appId: partner9
    appSecretFile: secrets/partner.txt   # relative to this file
consumers:
  - name: svc-a
    key: "${SVC_KEY}"
    accounts: [main]
    channels: ["3151318"]
    kinds: [channel, watch_api]
  - name: svc-b
    keySha256: "${HASHED_KEY_SHA.toUpperCase()}"
`;

function example(ext: '.yaml' | '.yml' | '.json'): string {
  return file(ext, ext === '.json' ? JSON.stringify(EXAMPLE, null, 2) : EXAMPLE_YAML);
}

describe('BROKER_CONFIG_FILE: accounts and consumers', () => {
  it.each(['.yaml', '.yml', '.json'] as const)(
    'when a %s file declares accounts and consumers and POLYV_APP_ID is unset, then they are loaded and the first file account is the default',
    (ext) => {
      const c = loadConfig({ BROKER_CONFIG_FILE: example(ext), POLYV_MAIN_SECRET: ` ${MAIN_SECRET} ` });
      expect(c.accounts).toEqual([
        { name: 'main', appId: 'abc123', appSecret: MAIN_SECRET, channels: ['3151318', '3151319'], budgets: { channelTokenPerHour: 120 } },
        { name: 'partner', appId: 'partner9', appSecret: 'partner-secret-value', channels: [] },
      ]);
      expect(c.apiKeys).toEqual([
        { name: 'svc-a', key: SVC_KEY, scope: { accounts: ['main'], channels: ['3151318'], kinds: ['channel', 'watch_api'] } },
        { name: 'svc-b', keySha256: HASHED_KEY_SHA },
      ]);
    },
  );

  it('when POLYV_APP_ID is set too, then the env account is `default` and first, with the env budgets', () => {
    const c = loadConfig({ ...envAccount, BROKER_CHANNELS: '1000001', BROKER_CONFIG_FILE: example('.yaml'), POLYV_MAIN_SECRET: MAIN_SECRET });
    expect(c.accounts.map((a) => [a.name, a.appId, a.appSecret, a.channels])).toEqual([
      ['default', 'envapp1', 'env-secret-value', ['1000001']],
      ['main', 'abc123', MAIN_SECRET, ['3151318', '3151319']],
      ['partner', 'partner9', 'partner-secret-value', []],
    ]);
    expect(c.accounts[0]?.budgets).toBeUndefined();
    expect(c.budget.channelPerHour).toBe(450);
  });

  it('when there is no env account, then BROKER_CHANNELS go to the default (first file) account', () => {
    const c = loadConfig({ BROKER_CHANNELS: '1000001,3151318', BROKER_CONFIG_FILE: example('.yaml'), POLYV_MAIN_SECRET: MAIN_SECRET });
    expect(c.accounts.map((a) => a.channels)).toEqual([['3151318', '3151319', '1000001'], []]);
  });

  it('when BROKER_API_KEYS is set too, then its keys and the file consumers combine, env keys first', () => {
    const c = loadConfig({
      BROKER_API_KEYS: 'ops:ops-key-0123456789abcdef',
      BROKER_CONFIG_FILE: example('.json'),
      POLYV_MAIN_SECRET: MAIN_SECRET,
    });
    expect(c.apiKeys.map((k) => k.name)).toEqual(['ops', 'svc-a', 'svc-b']);
    expect(c.apiKeys[0]).toEqual({ name: 'ops', key: 'ops-key-0123456789abcdef' });
  });

  it('when the file declares only consumers, then the env account is the only account and BROKER_API_KEYS is optional', () => {
    const path = file('.yaml', `consumers:\n  - name: only\n    key: "${SVC_KEY}"\n    accounts: [default]\n`);
    const c = loadConfig({ ...envAccount, BROKER_CONFIG_FILE: path });
    expect(c.accounts).toEqual([{ name: 'default', appId: 'envapp1', appSecret: 'env-secret-value', channels: [] }]);
    expect(c.apiKeys).toEqual([{ name: 'only', key: SVC_KEY, scope: { accounts: ['default'] } }]);
  });

  it('when a secret file is given as an absolute path, then it is read from there', () => {
    const path = file('.yaml', `accounts:\n  - name: abs\n    appId: absapp\n    appSecretFile: ${join(dir, 'secrets', 'partner.txt')}\n`);
    const c = loadConfig({ BROKER_CONFIG_FILE: path, BROKER_API_KEYS: `a:${SVC_KEY}` });
    expect(c.accounts).toEqual([{ name: 'abs', appId: 'absapp', appSecret: 'partner-secret-value', channels: [] }]);
  });
});

describe('BROKER_CONFIG_FILE: the README example', () => {
  it('when the example of the README is loaded, then it is valid and means what the README says', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('### Config file'));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    expect(yaml).toBeDefined();
    const path = file('.yaml', yaml!);
    const c = loadConfig(
      { BROKER_CONFIG_FILE: path, POLYV_MAIN_SECRET: MAIN_SECRET },
      { readFile: (p) => (p === '/run/secrets/partner' ? 'partner-secret\n' : readFileSync(p, 'utf8')) },
    );
    expect(c.accounts.map((a) => [a.name, a.appId, a.appSecret, a.channels, a.budgets])).toEqual([
      ['main', 'abc123', MAIN_SECRET, ['3151318'], { channelTokenPerHour: 450 }],
      ['partner', 'def456', 'partner-secret', [], undefined],
    ]);
    expect(c.apiKeys.map((k) => [k.name, k.scope])).toEqual([
      ['svc-a', { accounts: ['main'], channels: ['3151318'], kinds: ['channel', 'watch_api', 'common', 'watch_url'] }],
      ['dashboards', { kinds: ['channel'] }],
    ]);
  });
});

describe('BROKER_CONFIG_FILE: the default account and required settings', () => {
  it('when neither POLYV_APP_ID nor file accounts exist, then start-up names both ways', () => {
    const path = file('.yaml', `consumers:\n  - name: only\n    key: "${SVC_KEY}"\n`);
    expect(configProblems({ BROKER_CONFIG_FILE: path })).toEqual(['POLYV_APP_ID is required, or declare accounts in BROKER_CONFIG_FILE']);
  });

  it('when neither BROKER_API_KEYS nor file consumers exist, then start-up names all three ways', () => {
    const path = file('.yaml', `accounts:\n  - name: main\n    appId: abc123\n    appSecretEnv: POLYV_MAIN_SECRET\n`);
    expect(configProblems({ BROKER_CONFIG_FILE: path, POLYV_MAIN_SECRET: MAIN_SECRET })).toEqual([
      'BROKER_API_KEYS is required (comma-separated name:key pairs), or give BROKER_API_KEYS_FILE, or declare consumers in BROKER_CONFIG_FILE',
    ]);
  });

  it('when POLYV_APP_SECRET is set without POLYV_APP_ID, then start-up says the appId is missing', () => {
    expect(configProblems({ BROKER_CONFIG_FILE: example('.yaml'), POLYV_MAIN_SECRET: MAIN_SECRET, POLYV_APP_SECRET: 'x' })).toEqual([
      'POLYV_APP_ID is required when POLYV_APP_SECRET or POLYV_APP_SECRET_FILE is set',
    ]);
  });

  it('when there is no config file, then POLYV_APP_ID and BROKER_API_KEYS stay required as before', () => {
    expect(configProblems({ POLYV_APP_SECRET: 'x' })).toEqual([
      'POLYV_APP_ID is required',
      'BROKER_API_KEYS is required (comma-separated name:key pairs), or give BROKER_API_KEYS_FILE',
    ]);
  });

  it('when a file account is called `default` beside POLYV_APP_ID, or names or appIds repeat, then each clash is named', () => {
    const path = file(
      '.yaml',
      [
        'accounts:',
        '  - { name: default, appId: other1, appSecretEnv: S }',
        '  - { name: main, appId: envapp1, appSecretEnv: S }',
        '  - { name: main, appId: other1, appSecretEnv: S }',
      ].join('\n'),
    );
    expect(configProblems({ ...envAccount, BROKER_API_KEYS: `a:${SVC_KEY}`, BROKER_CONFIG_FILE: path, S: 'secret' })).toEqual([
      'BROKER_CONFIG_FILE accounts[0].name: "default" is the name of the account of POLYV_APP_ID',
      'BROKER_CONFIG_FILE accounts[1].appId: "envapp1" is already the appId of account "default"',
      'BROKER_CONFIG_FILE accounts[2].name: "main" appears twice',
      'BROKER_CONFIG_FILE accounts[2].appId: "other1" is already the appId of account "default"',
    ]);
  });

  it('when consumer names or keys repeat across the env and the file, or a scope names an unknown account, then each is named', () => {
    const path = file(
      '.yaml',
      [
        'consumers:',
        `  - { name: ops, key: "${SVC_KEY}" }`,
        `  - { name: twin, keySha256: "${createHash('sha256').update('ops-key-0123456789abcdef').digest('hex')}" }`,
        `  - { name: scoped, key: "${HASHED_KEY}", accounts: [default, nope] }`,
        `  - { name: scoped, key: "another-key-0123456789" }`,
      ].join('\n'),
    );
    const problems = configProblems({ ...envAccount, BROKER_API_KEYS: 'ops:ops-key-0123456789abcdef', BROKER_CONFIG_FILE: path });
    expect(problems).toEqual([
      'BROKER_CONFIG_FILE consumers[0].name: "ops" is already a consumer of BROKER_API_KEYS',
      'BROKER_CONFIG_FILE consumers[1].keySha256: is the same key as consumer "ops"',
      'BROKER_CONFIG_FILE consumers[2].accounts[1]: unknown account "nope" (accounts: default)',
      'BROKER_CONFIG_FILE consumers[3].name: "scoped" appears twice',
    ]);
    expect(problems.join('\n')).not.toContain('ops-key-0123456789abcdef');
  });
});

describe('BROKER_CONFIG_FILE: validation lists every problem at once', () => {
  const BROKEN = {
    accounts: [
      { name: 'Main!', appId: 'abc 123', appSecretEnv: 'POLYV_MAIN_SECRET', channels: ['12a', 3151318], budgets: { channelTokenPerHour: 501 } },
      { name: 'partner', appId: 'partner9', appSecretEnv: 'PARTNER_SECRET' },
      { name: 'inline', appId: 'inline1', appSecret: 'inline-secret-do-not-echo' },
      { name: 'both', appId: 'both1', appSecretEnv: 'A', appSecretFile: '/a' },
      { name: 'none', appId: 'none1', budgets: { perHour: 1 } },
      { name: 'unreadable', appId: 'unreadable1', appSecretFile: 'secrets/missing.txt' },
      { name: 'empty', appId: 'empty1', appSecretFile: 'secrets/empty.txt' },
      { appId: 7, appSecretEnv: 'lower-case-dash', chanels: [] },
    ],
    consumers: [
      { name: 'short', key: 'short-no-echo' },
      { name: 'badhash', keySha256: 'abc' },
      { name: 'both', key: SVC_KEY, keySha256: HASHED_KEY_SHA },
      { name: 'nokey' },
      { name: 'scopes', key: 'scopes-key-0123456789', accounts: [], channels: ['x'], kinds: ['channel', 'viewer'] },
      'not-a-mapping',
    ],
    extra: true,
  };
  const EXPECTED = [
    'BROKER_CONFIG_FILE accounts[0].name: must be 1-32 of a-z, 0-9, _ or -',
    'BROKER_CONFIG_FILE accounts[0].appId: must be 1-64 letters, digits, _ or -',
    'BROKER_CONFIG_FILE accounts[0].channels[0]: must be a channel ID of 1-20 digits',
    'BROKER_CONFIG_FILE accounts[0].channels[1]: must be a channel ID written as a string of 1-20 digits (quote it: "3151318")',
    'BROKER_CONFIG_FILE accounts[0].budgets.channelTokenPerHour: must be at most 500',
    'BROKER_CONFIG_FILE accounts[2].appSecret: must not be written in the file: give appSecretEnv (an environment variable) or appSecretFile (a file) instead',
    'BROKER_CONFIG_FILE accounts[3]: appSecretEnv and appSecretFile are both set: give exactly one',
    'BROKER_CONFIG_FILE accounts[4].budgets: unknown field "perHour"',
    'BROKER_CONFIG_FILE accounts[4]: needs appSecretEnv or appSecretFile (where its appSecret comes from)',
    'BROKER_CONFIG_FILE accounts[7]: unknown field "chanels"',
    'BROKER_CONFIG_FILE accounts[7].name: is required (1-32 of a-z, 0-9, _ or -)',
    'BROKER_CONFIG_FILE accounts[7].appId: must be a string (the PolyV appId)',
    'BROKER_CONFIG_FILE accounts[7].appSecretEnv: must be the name of an environment variable',
    'BROKER_CONFIG_FILE consumers[0].key: must be at least 16 characters long',
    'BROKER_CONFIG_FILE consumers[1].keySha256: must be 64 hex digits (the SHA-256 of the key)',
    'BROKER_CONFIG_FILE consumers[2]: key and keySha256 are both set: give exactly one',
    'BROKER_CONFIG_FILE consumers[3]: needs key or keySha256 (the SHA-256 of the key, in hex)',
    'BROKER_CONFIG_FILE consumers[4].accounts: must list at least one of account names (leave it out to allow all)',
    'BROKER_CONFIG_FILE consumers[4].channels[0]: must be a channel ID of 1-20 digits',
    'BROKER_CONFIG_FILE consumers[4].kinds[1]: must be one of channel, watch_api, common, watch_url',
    'BROKER_CONFIG_FILE consumers[5]: must be a mapping with name, key or keySha256, and optionally accounts, channels, kinds and rateLimit',
    'BROKER_CONFIG_FILE unknown field "extra"',
  ];

  /** Problems are compared as a set: zod reports the schema's issues in its own order. */
  function expectProblems(problems: string[]) {
    expect([...problems].sort()).toEqual([...EXPECTED].sort());
    const all = problems.join('\n');
    for (const secret of ['inline-secret-do-not-echo', 'short-no-echo', SVC_KEY]) expect(all).not.toContain(secret);
  }

  it('when a JSON file breaks every rule, then each problem is listed with its path, and no secret is echoed', () => {
    expectProblems(configProblems({ BROKER_CONFIG_FILE: file('.json', JSON.stringify(BROKEN)) }));
  });

  it('when the same content as block-style YAML breaks every rule, then the same problems are listed', () => {
    expectProblems(configProblems({ BROKER_CONFIG_FILE: file('.yaml', toBlockYaml(BROKEN)) }));
  });

  it('when the secrets resolve, then missing env vars and unreadable or empty files are named by account and path', () => {
    const path = file(
      '.yaml',
      [
        'accounts:',
        '  - { name: main, appId: abc123, appSecretEnv: POLYV_MAIN_SECRET }',
        '  - { name: partner, appId: partner9, appSecretEnv: PARTNER_SECRET }',
        '  - { name: unreadable, appId: unreadable1, appSecretFile: secrets/missing.txt }',
        '  - { name: empty, appId: empty1, appSecretFile: secrets/empty.txt }',
        'consumers:',
        `  - { name: a, key: "${SVC_KEY}" }`,
      ].join('\n'),
    );
    expect(configProblems({ BROKER_CONFIG_FILE: path, POLYV_MAIN_SECRET: MAIN_SECRET, PARTNER_SECRET: '  ' })).toEqual([
      'BROKER_CONFIG_FILE accounts[1].appSecretEnv: environment variable PARTNER_SECRET is not set',
      `BROKER_CONFIG_FILE accounts[2].appSecretFile: cannot be read (ENOENT): ${join(dir, 'secrets', 'missing.txt')}`,
      `BROKER_CONFIG_FILE accounts[3].appSecretFile: is empty: ${join(dir, 'secrets', 'empty.txt')}`,
    ]);
  });

  it('when the file is YAML with a syntax error, then the place is given but not the text around it', () => {
    const path = file('.yaml', `consumers:\n  - name: a\n    key: "${SVC_KEY}"\n    key: "${SVC_KEY}"\n`);
    const problems = configProblems({ ...envAccount, BROKER_CONFIG_FILE: path });
    expect(problems).toEqual([`BROKER_CONFIG_FILE is not valid YAML (duplicate key at line 4, column 5): ${path}`]);
    expect(problems.join('\n')).not.toContain(SVC_KEY);
  });

  it('when the file is JSON with a syntax error, then the place is given when known, never the text', () => {
    const trailingComma = file('.json', `{"consumers": [{"name": "a", "key": "${SVC_KEY}",}]}`);
    expect(configProblems({ ...envAccount, BROKER_CONFIG_FILE: trailingComma })).toEqual([
      `BROKER_CONFIG_FILE is not valid JSON (at line 1, column ${`{"consumers": [{"name": "a", "key": "${SVC_KEY}",`.length + 1}): ${trailingComma}`,
    ]);
    const bareWord = file('.json', `{"consumers": [{"name": "a", "key": ${SVC_KEY.replaceAll('-', '')}}]}`);
    const problems = configProblems({ ...envAccount, BROKER_CONFIG_FILE: bareWord });
    expect(problems).toEqual([`BROKER_CONFIG_FILE is not valid JSON: ${bareWord}`]);
    expect(problems.join('\n')).not.toContain(SVC_KEY.replaceAll('-', ''));
  });

  it.each([
    ['.toml', 'accounts = []', (p: string) => `BROKER_CONFIG_FILE must end in .yaml, .yml or .json: ${p}`],
    ['.yaml', '', (p: string) => `BROKER_CONFIG_FILE must be a mapping with accounts and/or consumers: ${p}`],
    ['.json', '[1, 2]', (p: string) => `BROKER_CONFIG_FILE must be a mapping with accounts and/or consumers: ${p}`],
    ['.yaml', 'accounts: []\nconsumers: []\n', () => 'BROKER_CONFIG_FILE declares neither accounts nor consumers'],
    ['.yaml', 'accounts: main\n', () => 'BROKER_CONFIG_FILE accounts: must be a list of accounts'],
  ])('when a %s file holds %j, then start-up stops with one clear line', (ext, content, message) => {
    const path = file(ext, content);
    expect(configProblems({ ...envAccount, BROKER_API_KEYS: `a:${SVC_KEY}`, BROKER_CONFIG_FILE: path })).toEqual([message(path)]);
  });

  it('when the file cannot be read, then the problem names the path and the reason, beside the env problems', () => {
    const path = join(dir, 'does-not-exist.yaml');
    expect(configProblems({ ...envAccount, BROKER_CONFIG_FILE: path, BROKER_CHANNELS: 'abc' })).toEqual([
      'BROKER_CHANNELS entry "abc" must be a channel ID of 1-20 digits',
      `BROKER_CONFIG_FILE cannot be read (ENOENT): ${path}`,
    ]);
  });
});

/** Writes a JSON-like value as block-style YAML (mappings and sequences on their own lines). */
function toBlockYaml(value: unknown, indent = ''): string {
  if (Array.isArray(value)) {
    return value
      .map((item) => {
        if (typeof item === 'object' && item !== null) {
          const inner = toBlockYaml(item, `${indent}  `);
          return `${indent}- ${inner.trimStart()}`;
        }
        return `${indent}- ${JSON.stringify(item)}`;
      })
      .join('\n');
  }
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => {
        if (Array.isArray(v) && v.length === 0) return `${indent}${k}: []`;
        if (typeof v === 'object' && v !== null) return `${indent}${k}:\n${toBlockYaml(v, `${indent}  `)}`;
        return `${indent}${k}: ${JSON.stringify(v)}`;
      })
      .join('\n');
  }
  return `${indent}${JSON.stringify(value)}`;
}

describe('per-account budgets of every token kind', () => {
  const withBudgets = (budgets: Record<string, number>) =>
    file(
      '.json',
      JSON.stringify({
        accounts: [{ name: 'main', appId: 'app1', appSecretEnv: 'MAIN_SECRET', budgets }],
        consumers: [{ name: 'svc', key: SVC_KEY }],
      }),
    );

  it('reads watchTokenPerHour, commonTokenPerHour and watchUrlPerHour beside channelTokenPerHour', () => {
    const budgets = { channelTokenPerHour: 100, watchTokenPerHour: 7, commonTokenPerHour: 8, watchUrlPerHour: 9 };
    const config = loadConfig({ BROKER_CONFIG_FILE: withBudgets(budgets), MAIN_SECRET });
    expect(config.accounts[0]?.budgets).toEqual(budgets);
  });

  it('rejects a budget below 1, naming its path', () => {
    expect(configProblems({ BROKER_CONFIG_FILE: withBudgets({ watchUrlPerHour: 0 }), MAIN_SECRET }).join('\n')).toMatch(
      /accounts\[0\]\.budgets\.watchUrlPerHour: must be at least 1/,
    );
  });
});
