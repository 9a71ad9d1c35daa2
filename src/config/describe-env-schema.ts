import { z } from 'zod';
import { envSchema } from './env-schema.js';

/** One environment variable as the README's configuration table documents it, read from envSchema. */
export interface EnvVariableDoc {
  readonly name: string;
  /** What it means: the schema's `.describe()`. */
  readonly description: string;
  /** The value taken when the variable is unset or blank, written as in the environment; undefined: none. */
  readonly default: string | undefined;
  /** Smallest accepted value, for a whole-number variable. */
  readonly min?: number;
  /** Largest accepted value, for a whole-number variable. */
  readonly max?: number;
  /** Every accepted value, for a variable with a fixed set of them. */
  readonly values?: readonly string[];
}

type Rules = { -readonly [K in 'default' | 'min' | 'max' | 'values']?: EnvVariableDoc[K] };

/**
 * Walks one variable's schema (optionalString, then pipes, defaults, numbers, enums) and collects its rules. A
 * default is the first one met from the input side; a transform after it (REDIS_TLS: 'false' -> false) does
 * not change how the default is written in the environment.
 */
function collectRules(schema: unknown, rules: Rules): void {
  if (schema instanceof z.ZodPipe) {
    collectRules(schema.in, rules);
    collectRules(schema.out, rules);
  } else if (schema instanceof z.ZodDefault) {
    rules.default ??= String(schema.def.defaultValue);
    collectRules(schema.unwrap(), rules);
  } else if (schema instanceof z.ZodOptional) {
    collectRules(schema.unwrap(), rules);
  } else if (schema instanceof z.ZodNumber) {
    if (schema.minValue !== null && Number.isFinite(schema.minValue)) rules.min = schema.minValue;
    if (schema.maxValue !== null && Number.isFinite(schema.maxValue)) rules.max = schema.maxValue;
  } else if (schema instanceof z.ZodEnum) {
    rules.values = schema.options.map(String);
  }
}

/**
 * Every environment variable of `schema` (envSchema unless told) with its meaning, default, range and allowed
 * values, all read from the zod schema itself: the machine-readable form of the README's configuration table.
 */
export function describeEnvSchema(schema: z.ZodObject<Record<string, z.ZodType>> = envSchema): EnvVariableDoc[] {
  return Object.entries(schema.shape).map(([name, variable]) => {
    const rules: Rules = {};
    collectRules(variable, rules);
    return { name, description: variable.description ?? '', default: rules.default, ...rules };
  });
}
