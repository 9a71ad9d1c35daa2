import { createHash } from 'node:crypto';
import { dirname, extname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { TOKEN_KINDS } from '../domain/token-kinds.js';
import { CHANNEL_ID_RE, KEY_NAME_RE, MIN_API_KEY_LENGTH } from './env-schema.js';
import { readSecret, type ReadFile } from './read-secret.js';

const FILE_VAR = 'BROKER_CONFIG_FILE';
const ACCOUNT_NAME_RE = /^[a-z0-9_-]{1,32}$/;
const APP_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const SHA256_HEX_RE = /^[0-9a-fA-F]{64}$/;
const MAX_CHANNEL_TOKEN_BUDGET_PER_HOUR = 500;
const MAX_RATE_LIMIT = 1_000_000;

/** A string field: "is required" when absent, "must be a string" for any other type (the value is never echoed). */
function text(rule: string) {
  return z.string({ error: (iss) => (iss.input === undefined ? `is required (${rule})` : `must be a string (${rule})`) });
}

function list<T extends z.ZodType>(item: T, what: string) {
  return z
    .array(item, { error: `must be a list of ${what}` })
    .min(1, `must list at least one of ${what} (leave it out to allow all)`);
}

/** A per-channel hourly budget of one of the other token kinds (PolyV documents no per-channel limit for them). */
function kindBudget() {
  return z
    .int({ error: 'must be a whole number from 1 to 100000' })
    .min(1, 'must be at least 1')
    .max(100_000, 'must be at most 100000')
    .optional();
}

const channelIdSchema = z
  .string({ error: 'must be a channel ID written as a string of 1-20 digits (quote it: "3151318")' })
  .regex(CHANNEL_ID_RE, 'must be a channel ID of 1-20 digits');

const accountSchema = z
  .strictObject({
    name: text('1-32 of a-z, 0-9, _ or -').regex(ACCOUNT_NAME_RE, 'must be 1-32 of a-z, 0-9, _ or -'),
    appId: text('the PolyV appId').regex(APP_ID_RE, 'must be 1-64 letters, digits, _ or -'),
    appSecretEnv: z
      .string({ error: 'must be the name of an environment variable' })
      .regex(ENV_NAME_RE, 'must be the name of an environment variable')
      .optional(),
    appSecretFile: z.string({ error: 'must be a file path' }).trim().min(1, 'must be a file path').optional(),
    appSecret: z
      .never({
        error: 'must not be written in the file: give appSecretEnv (an environment variable) or appSecretFile (a file) instead',
      })
      .optional(),
    channels: z.array(channelIdSchema, { error: 'must be a list of channel IDs' }).optional(),
    budgets: z
      .strictObject(
        {
          channelTokenPerHour: z
            .int({ error: `must be a whole number from 1 to ${MAX_CHANNEL_TOKEN_BUDGET_PER_HOUR}` })
            .min(1, 'must be at least 1')
            .max(MAX_CHANNEL_TOKEN_BUDGET_PER_HOUR, `must be at most ${MAX_CHANNEL_TOKEN_BUDGET_PER_HOUR}`)
            .optional(),
          watchTokenPerHour: kindBudget(),
          commonTokenPerHour: kindBudget(),
          watchUrlPerHour: kindBudget(),
          refreshReservePerHour: z
            .int({ error: `must be a whole number from 0 to ${MAX_CHANNEL_TOKEN_BUDGET_PER_HOUR - 1}` })
            .min(0, 'must be at least 0')
            .max(MAX_CHANNEL_TOKEN_BUDGET_PER_HOUR - 1, `must be at most ${MAX_CHANNEL_TOKEN_BUDGET_PER_HOUR - 1}`)
            .optional(),
        },
        { error: 'must be a mapping such as { channelTokenPerHour: 450 }' },
      )
      .optional(),
  }, { error: 'must be a mapping with name, appId, appSecretEnv or appSecretFile, channels and budgets' })
  .superRefine(
    (a, ctx) => {
      const env = (a as { appSecretEnv?: unknown }).appSecretEnv;
      const file = (a as { appSecretFile?: unknown }).appSecretFile;
      if (env !== undefined && file !== undefined) {
        ctx.addIssue({ code: 'custom', path: [], message: 'appSecretEnv and appSecretFile are both set: give exactly one' });
      } else if (env === undefined && file === undefined && (a as { appSecret?: unknown }).appSecret === undefined) {
        ctx.addIssue({ code: 'custom', path: [], message: 'needs appSecretEnv or appSecretFile (where its appSecret comes from)' });
      }
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  );

const consumerSchema = z
  .strictObject({
    name: text('1-64 letters, digits, _ . or -').regex(KEY_NAME_RE, 'must be 1-64 letters, digits, _ . or -'),
    key: z
      .string({ error: 'must be a string' })
      .min(MIN_API_KEY_LENGTH, `must be at least ${MIN_API_KEY_LENGTH} characters long`)
      .optional(),
    keySha256: z
      .string({ error: 'must be 64 hex digits (the SHA-256 of the key)' })
      .regex(SHA256_HEX_RE, 'must be 64 hex digits (the SHA-256 of the key)')
      .optional(),
    accounts: list(text('an account name'), 'account names').optional(),
    channels: list(channelIdSchema, 'channel IDs').optional(),
    // A disposable channel token counts as `channel`.
    kinds: list(z.enum(TOKEN_KINDS, { error: `must be one of ${TOKEN_KINDS.join(', ')}` }), 'token kinds').optional(),
    rateLimit: z
      .strictObject(
        {
          perSecond: z
            .int({ error: `must be a whole number from 0 to ${MAX_RATE_LIMIT} (0: no limit for this consumer)` })
            .min(0, 'must be at least 0')
            .max(MAX_RATE_LIMIT, `must be at most ${MAX_RATE_LIMIT}`),
          burst: z
            .int({ error: `must be a whole number from 1 to ${MAX_RATE_LIMIT}` })
            .min(1, 'must be at least 1')
            .max(MAX_RATE_LIMIT, `must be at most ${MAX_RATE_LIMIT}`)
            .optional(),
        },
        { error: 'must be a mapping such as { perSecond: 50, burst: 100 }' },
      )
      .optional(),
    upstreamPerHour: z
      .int({ error: 'must be a whole number from 0 to 100000 (0: no quota for this consumer)' })
      .min(0, 'must be at least 0')
      .max(100_000, 'must be at most 100000')
      .optional(),
  }, { error: 'must be a mapping with name, key or keySha256, and optionally accounts, channels, kinds and rateLimit' })
  .superRefine(
    (c, ctx) => {
      const key = (c as { key?: unknown }).key;
      const hashed = (c as { keySha256?: unknown }).keySha256;
      if (key !== undefined && hashed !== undefined) {
        ctx.addIssue({ code: 'custom', path: [], message: 'key and keySha256 are both set: give exactly one' });
      } else if (key === undefined && hashed === undefined) {
        ctx.addIssue({ code: 'custom', path: [], message: 'needs key or keySha256 (the SHA-256 of the key, in hex)' });
      }
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  );

/** What BROKER_CONFIG_FILE may hold (YAML or JSON). The README's example follows this schema. */
export const configFileSchema = z
  .strictObject(
    {
      accounts: z.array(accountSchema, { error: 'must be a list of accounts' }).optional(),
      consumers: z.array(consumerSchema, { error: 'must be a list of consumers' }).optional(),
    },
    { error: 'must be a mapping with accounts and/or consumers' },
  )
  .superRefine((f, ctx) => {
    if ((f.accounts ?? []).length === 0 && (f.consumers ?? []).length === 0) {
      ctx.addIssue({ code: 'custom', path: [], message: 'declares neither accounts nor consumers' });
    }
  });

export type ConfigFile = z.output<typeof configFileSchema>;
type FileAccount = z.output<typeof accountSchema>;
type FileConsumer = z.output<typeof consumerSchema>;

/**
 * A PolyV account as the broker uses it: an entry of `accounts` (or POLYV_APP_ID, named `default`) with its
 * appSecret resolved. `name` is used in routes and logs; `budgets` absent: the env budgets apply.
 */
export type PolyvAccount = Readonly<Pick<FileAccount, 'name' | 'appId' | 'budgets'>> & {
  readonly appSecret: string;
  /** Channels kept warm from start-up. */
  readonly channels: readonly string[];
};

/** What a consumer may read; an absent dimension allows everything. */
export type ConsumerScope = Readonly<Pick<FileConsumer, 'accounts' | 'channels' | 'kinds'>>;

/** A request rate limit of one consumer (token bucket): `perSecond` 0 means no limit; `burst` is at least 1. */
export type RateLimit = Readonly<Required<NonNullable<FileConsumer['rateLimit']>>>;

/**
 * A consumer's key, as plain text or as its SHA-256 digest (hex); no scope: it may read everything; no
 * `rateLimit`: the env one (BROKER_RATE_LIMIT_PER_SECOND).
 */
export type ApiKey = Readonly<Pick<FileConsumer, 'name'>> & {
  readonly scope?: ConsumerScope;
  readonly rateLimit?: RateLimit;
  /** PolyV calls this consumer may cause per channel and endpoint and rolling hour; absent: BROKER_CONSUMER_UPSTREAM_PER_HOUR. */
  readonly upstreamPerHour?: number;
} & (
  | { readonly key: string; readonly keySha256?: undefined }
  | { readonly keySha256: string; readonly key?: undefined }
);

/** `['accounts', 1, 'appSecretEnv']` → `accounts[1].appSecretEnv`. */
function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

function at(path: readonly PropertyKey[], message: string): string {
  return path.length === 0 ? `${FILE_VAR} ${message}` : `${FILE_VAR} ${formatPath(path)}: ${message}`;
}

/** Line and column of a character offset, both from 1. */
function lineAndColumn(source: string, offset: number): string {
  const before = source.slice(0, offset);
  const line = before.split('\n').length;
  return `line ${line}, column ${offset - before.lastIndexOf('\n')}`;
}

/**
 * Parses the file by its extension. Messages give the place of a syntax error, never the text around it: the
 * file may hold plain-text consumer keys.
 */
function parseFile(path: string, source: string, problems: string[]): { value: unknown } | undefined {
  const ext = extname(path).toLowerCase();
  if (ext === '.json') {
    try {
      return { value: JSON.parse(source) as unknown };
    } catch (err) {
      const pos = err instanceof Error ? /at position (\d+)/.exec(err.message)?.[1] : undefined;
      problems.push(`${FILE_VAR} is not valid JSON${pos === undefined ? '' : ` (at ${lineAndColumn(source, Number(pos))})`}: ${path}`);
      return undefined;
    }
  }
  if (ext === '.yaml' || ext === '.yml') {
    const doc = parseDocument(source, { uniqueKeys: true });
    const first = doc.errors[0];
    if (first !== undefined) {
      const where = first.linePos === undefined ? '' : ` at line ${first.linePos[0].line}, column ${first.linePos[0].col}`;
      problems.push(`${FILE_VAR} is not valid YAML (${first.code.toLowerCase().replaceAll('_', ' ')}${where}): ${path}`);
      return undefined;
    }
    return { value: doc.toJS() as unknown };
  }
  problems.push(`${FILE_VAR} must end in .yaml, .yml or .json: ${path}`);
  return undefined;
}

/** Reads and validates BROKER_CONFIG_FILE; undefined (with every problem listed) when it is unusable. */
export function readConfigFile(path: string, readFile: ReadFile, problems: string[]): ConfigFile | undefined {
  const source = readSecret(
    { name: FILE_VAR, file: path, content: 'text', fileProblem: (rule) => `${FILE_VAR} ${rule}` },
    readFile,
    problems,
  );
  if (source === undefined) return undefined;
  const raw = parseFile(path, source, problems);
  if (raw === undefined) return undefined;
  const parsed = configFileSchema.safeParse(raw.value);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const names = issue.keys.map((k) => `"${k}"`).join(', ');
      problems.push(at(issue.path, `unknown field${issue.keys.length > 1 ? 's' : ''} ${names}`));
    } else if (issue.path.length === 0 && issue.code !== 'custom') {
      problems.push(`${FILE_VAR} must be a mapping with accounts and/or consumers: ${path}`);
    } else {
      problems.push(at(issue.path, issue.message));
    }
  }
  return undefined;
}

export interface AccountsAndConsumersInput {
  /** BROKER_CONFIG_FILE, when set. */
  configFile: string | undefined;
  /** The environment, for `appSecretEnv`. */
  env: Readonly<Record<string, string | undefined>>;
  readFile: ReadFile;
  problems: string[];
  /** The account of POLYV_APP_ID, named `default`; undefined when POLYV_APP_ID is unset. */
  envAccount: PolyvAccount | undefined;
  /** BROKER_CHANNELS: kept warm in the default account. */
  envChannels: readonly string[];
  /** The keys of BROKER_API_KEYS or BROKER_API_KEYS_FILE (none when neither is set). */
  envApiKeys: readonly ApiKey[];
}

export interface AccountsAndConsumers {
  /** The default account first: the env account if there is one, else the file's first account. */
  readonly accounts: readonly PolyvAccount[];
  readonly apiKeys: readonly ApiKey[];
}

function accountSecret(
  a: NonNullable<ConfigFile['accounts']>[number],
  index: number,
  configFile: string,
  input: AccountsAndConsumersInput,
): string | undefined {
  const { env, problems } = input;
  if (a.appSecretEnv !== undefined) {
    const value = env[a.appSecretEnv]?.trim() ?? '';
    if (value === '') problems.push(at(['accounts', index, 'appSecretEnv'], `environment variable ${a.appSecretEnv} is not set`));
    return value;
  }
  if (a.appSecretFile === undefined) return undefined;
  const file = resolve(dirname(configFile), a.appSecretFile);
  const fileProblem = (rule: string) => at(['accounts', index, 'appSecretFile'], rule);
  return readSecret({ name: `accounts[${index}].appSecret`, file, fileProblem }, input.readFile, problems);
}

const digestOf = (k: ApiKey): string =>
  k.keySha256 !== undefined ? k.keySha256.toLowerCase() : createHash('sha256').update(k.key, 'utf8').digest('hex');

/**
 * Combines the env account and keys with those of BROKER_CONFIG_FILE and checks the whole: at least one
 * account and one consumer, unique account names and appIds, unique consumer names and keys, and consumer
 * scopes that name existing accounts. Every problem goes to `problems`.
 */
export function resolveAccountsAndConsumers(input: AccountsAndConsumersInput): AccountsAndConsumers {
  const { configFile, envAccount, envApiKeys, problems } = input;
  const file = configFile === undefined ? undefined : readConfigFile(configFile, input.readFile, problems);
  const fileUsable = configFile === undefined || file !== undefined;

  const accounts: PolyvAccount[] = envAccount === undefined ? [] : [envAccount];
  (file?.accounts ?? []).forEach((a, index) => {
    const sameName = accounts.find((b) => b.name === a.name);
    if (sameName !== undefined) {
      problems.push(
        at(
          ['accounts', index, 'name'],
          sameName === envAccount ? `"${a.name}" is the name of the account of POLYV_APP_ID` : `"${a.name}" appears twice`,
        ),
      );
    }
    const sameApp = accounts.find((b) => b.appId === a.appId);
    if (sameApp !== undefined) problems.push(at(['accounts', index, 'appId'], `"${a.appId}" is already the appId of account "${sameApp.name}"`));
    const budgets = Object.fromEntries(Object.entries(a.budgets ?? {}).filter(([, v]) => v !== undefined));
    accounts.push({
      name: a.name,
      appId: a.appId,
      appSecret: accountSecret(a, index, configFile ?? '', input) ?? '',
      channels: [...new Set(a.channels ?? [])],
      ...(Object.keys(budgets).length === 0 ? {} : { budgets }),
    });
  });
  const first = accounts[0];
  if (first !== undefined && input.envChannels.length > 0) {
    accounts[0] = { ...first, channels: [...new Set([...first.channels, ...input.envChannels])] };
  }
  if (accounts.length === 0 && fileUsable) {
    problems.push(`POLYV_APP_ID is required, or declare accounts in ${FILE_VAR}`);
  }

  const apiKeys: ApiKey[] = [...envApiKeys];
  const byDigest = new Map(envApiKeys.map((k) => [digestOf(k), k.name]));
  (file?.consumers ?? []).forEach((c, index) => {
    if (apiKeys.some((k) => k.name === c.name)) {
      const inEnv = envApiKeys.some((k) => k.name === c.name);
      problems.push(at(['consumers', index, 'name'], inEnv ? `"${c.name}" is already a consumer of BROKER_API_KEYS` : `"${c.name}" appears twice`));
    }
    (c.accounts ?? []).forEach((name, i) => {
      if (!accounts.some((a) => a.name === name)) {
        problems.push(at(['consumers', index, 'accounts', i], `unknown account "${name}" (accounts: ${accounts.map((a) => a.name).join(', ')})`));
      }
    });
    const scope: ConsumerScope = {
      ...(c.accounts === undefined ? {} : { accounts: [...new Set(c.accounts)] }),
      ...(c.channels === undefined ? {} : { channels: [...new Set(c.channels)] }),
      ...(c.kinds === undefined ? {} : { kinds: [...new Set(c.kinds)] }),
    };
    const scoped = {
      ...(Object.keys(scope).length === 0 ? {} : { scope }),
      ...(c.rateLimit === undefined
        ? {}
        : { rateLimit: { perSecond: c.rateLimit.perSecond, burst: c.rateLimit.burst ?? Math.max(1, c.rateLimit.perSecond) } }),
      ...(c.upstreamPerHour === undefined ? {} : { upstreamPerHour: c.upstreamPerHour }),
    };
    const key: ApiKey =
      c.keySha256 !== undefined
        ? { name: c.name, keySha256: c.keySha256.toLowerCase(), ...scoped }
        : { name: c.name, key: c.key ?? '', ...scoped };
    const digest = digestOf(key);
    const sameKey = byDigest.get(digest);
    if (sameKey !== undefined) {
      problems.push(at(['consumers', index, c.keySha256 !== undefined ? 'keySha256' : 'key'], `is the same key as consumer "${sameKey}"`));
    }
    byDigest.set(digest, c.name);
    apiKeys.push(key);
  });
  if (apiKeys.length === 0 && fileUsable && !problems.some((p) => p.startsWith('BROKER_API_KEYS'))) {
    problems.push(`BROKER_API_KEYS is required (comma-separated name:key pairs), or give BROKER_API_KEYS_FILE, or declare consumers in ${FILE_VAR}`);
  }
  return { accounts, apiKeys };
}
