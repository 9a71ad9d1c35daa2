/** Reads a file; injectable, so tests give files without touching the disk. */
export type ReadFile = (path: string) => string;

/** A value the configuration takes directly (`NAME`) or from a file (`NAME_FILE`, container secrets). */
export interface SecretSource {
  /** The variable, e.g. `POLYV_APP_SECRET`; its file twin is `${name}_FILE`. */
  readonly name: string;
  /** The variable's own value; undefined: unset. */
  readonly value?: string | undefined;
  /** The path of the file twin; undefined: unset. */
  readonly file: string | undefined;
  /** Giving neither is a problem (`NAME (or NAME_FILE) is required`); default: undefined, silently. */
  readonly required?: boolean;
  /**
   * `secret` (default): the file is trimmed and an empty one is a problem. `text`: the file as it is (a PEM
   * bundle, the config file), for the caller to check.
   */
  readonly content?: 'secret' | 'text';
  /** Words a problem with the file from its rule (`is empty: /run/x`); default: `NAME_FILE <rule>`. */
  readonly fileProblem?: (rule: string) => string;
}

/**
 * The one reader of `NAME` / `NAME_FILE` pairs and of every other file the configuration names: at most one
 * of the two, the file read whole. Problems name the variable, the path and the reason (ENOENT, EACCES),
 * never the content: it is a secret, or may hold one.
 */
export function readSecret(source: SecretSource, readFile: ReadFile, problems: string[]): string | undefined {
  const { name, value, file } = source;
  const fileProblem = source.fileProblem ?? ((rule: string) => `${name}_FILE ${rule}`);
  if (value !== undefined && file !== undefined) {
    problems.push(`${name} and ${name}_FILE are both set: give exactly one`);
    return undefined;
  }
  if (file === undefined) {
    if (value === undefined && source.required === true) problems.push(`${name} (or ${name}_FILE) is required`);
    return value;
  }
  let content: string;
  try {
    content = readFile(file);
  } catch (err) {
    const reason = err instanceof Error && 'code' in err ? String(err.code) : 'unreadable';
    problems.push(fileProblem(`cannot be read (${reason}): ${file}`));
    return undefined;
  }
  if (source.content === 'text') return content;
  content = content.trim();
  if (content === '') {
    problems.push(fileProblem(`is empty: ${file}`));
    return undefined;
  }
  return content;
}
