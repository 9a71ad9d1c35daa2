import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeEnvSchema } from '../src/config/describe-env-schema.js';

/** One row of a markdown table, its cells keyed by the header's column names. */
type Row = Readonly<Record<string, string>>;

/** The cells of a `| a | b |` line; `\|` inside a cell is a literal pipe. */
function cellsOf(line: string): string[] {
  return line
    .trim()
    .replace(/^\||\|$/g, '')
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim().replaceAll('\\|', '|'));
}

/** The first table under the `## <heading>` section of a markdown document (up to the next `##` heading). */
function tableUnder(markdown: string, heading: string): Row[] {
  const lines = markdown.split('\n');
  const start = lines.indexOf(`## ${heading}`);
  if (start < 0) return [];
  const end = lines.findIndex((line, i) => i > start && /^##? /.test(line));
  const section = lines.slice(start + 1, end < 0 ? undefined : end);
  const first = section.findIndex((line) => line.startsWith('|'));
  if (first < 0) return [];
  const after = section.slice(first).findIndex((line) => !line.startsWith('|'));
  const [header, separator, ...body] = section.slice(first, after < 0 ? undefined : first + after);
  if (header === undefined || separator === undefined || !/^\|[\s|:-]+\|$/.test(separator)) return [];
  const columns = cellsOf(header);
  return body.map((line) => Object.fromEntries(cellsOf(line).map((cell, i) => [columns[i] ?? `column ${i + 1}`, cell])));
}

/** The text of each `code` span of a cell. */
const codeSpans = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const table = new Map(tableUnder(readme, 'Configuration').map((row) => [codeSpans(row['variable'] ?? '')[0] ?? '', row]));
const variables = describeEnvSchema();

describe("the README's configuration table, checked against the env schema", () => {
  it('has the table and the schema this test reads (a parser that finds nothing would pass everything)', () => {
    expect(table.size).toBeGreaterThan(40);
    expect(variables.length).toBeGreaterThan(40);
    expect(variables.filter((v) => v.min !== undefined).length).toBeGreaterThan(20);
    expect(variables.filter((v) => v.values !== undefined).map((v) => v.name)).toEqual(['BROKER_ROLE', 'REDIS_TLS', 'LOG_LEVEL']);
    expect(variables.find((v) => v.name === 'PORT')).toMatchObject({ default: '8080', min: 0, max: 65535 });
    expect(variables.every((v) => v.description !== '')).toBe(true);
  });

  it('when the schema reads a variable, then the table lists it, and it lists no variable the schema lacks', () => {
    expect([...table.keys()].sort()).toEqual(variables.map((v) => v.name).sort());
  });

  it('when the schema has a default, then the default column starts with it in code; otherwise it says what unset means', () => {
    const wrong = variables.flatMap((v) => {
      const cell = table.get(v.name)?.['default'] ?? '';
      const ok = v.default === undefined ? cell !== '' && !cell.startsWith('`') : cell.startsWith(`\`${v.default}\``);
      return ok ? [] : [`${v.name}: schema default ${v.default ?? '(none)'}, README "${cell}"`];
    });
    expect(wrong).toEqual([]);
  });

  it('when the schema has a range or a set of values, then the values column gives exactly that', () => {
    const wrong = variables.flatMap((v) => {
      const cell = table.get(v.name)?.['values'] ?? '';
      let ok: boolean;
      if (v.values !== undefined) ok = codeSpans(cell).join(',') === v.values.join(',');
      else if (v.min !== undefined || v.max !== undefined) ok = cell === `${v.min ?? ''}..${v.max ?? ''}`;
      else ok = cell !== '' && !/\d\.\.\d/.test(cell);
      const rule = v.values?.join(', ') ?? (v.min !== undefined || v.max !== undefined ? `${v.min}..${v.max}` : '(free text)');
      return ok ? [] : [`${v.name}: schema ${rule}, README "${cell}"`];
    });
    expect(wrong).toEqual([]);
  });
});
