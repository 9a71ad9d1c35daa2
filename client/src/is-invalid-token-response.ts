/** PolyV's `{"code": 15, "status": "error", "message": "invalid token.", "data": null}`. */
export const POLYV_INVALID_TOKEN_CODE = 15;

/** Where HTTP libraries keep a failed response: `err.body`, `err.response` (`.body`, `.data`), `err.cause`. */
const NESTED_KEYS = ['body', 'response', 'data', 'cause'] as const;
const MAX_DEPTH = 4;
const MAX_JSON_TEXT_LENGTH = 64 * 1024;

/**
 * Whether `value` shows PolyV rejecting a channel token (`code 15, invalid token.`). Precisely:
 * - an object whose own `code` is a number is a PolyV envelope and decides alone: true iff `code === 15`
 *   (so `{code: 200, data: {code: 15}}` is false);
 * - a string that is a JSON object (at most 64 KiB) is parsed and judged the same way;
 * - any other object (an Error, an HTTP library's response) is judged by what it carries in `body`,
 *   `response`, `data` or `cause`, at most 4 levels deep: `err.body`, `err.response.body` (got),
 *   `err.response.data` (axios), `err.cause`.
 * Everything else is false. It never throws, whatever getters `value` has.
 */
export function isInvalidTokenResponse(value: unknown): boolean {
  return judge(value, 0, new Set<object>());
}

function judge(value: unknown, depth: number, seen: Set<object>): boolean {
  if (depth > MAX_DEPTH) return false;
  if (typeof value === 'string') {
    if (value.length > MAX_JSON_TEXT_LENGTH || !value.trimStart().startsWith('{')) return false;
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      return false;
    }
    return judge(parsed, depth + 1, seen);
  }
  if (typeof value !== 'object' || value === null || seen.has(value)) return false;
  seen.add(value);
  try {
    const record = value as Record<string, unknown>;
    const code = record['code'];
    if (typeof code === 'number') return code === POLYV_INVALID_TOKEN_CODE;
    return NESTED_KEYS.some((key) => judge(record[key], depth + 1, seen));
  } catch {
    return false;
  }
}
