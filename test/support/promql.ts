/**
 * The metric names a PromQL expression reads, without a PromQL parser: what is left once strings, comments,
 * label matchers `{...}`, range and subquery brackets `[5m]`, `by`/`without`/`on`/`ignoring`/`group_left`/
 * `group_right` label lists, Grafana variables (`$instance`, `${var}`), numbers and durations, function calls
 * and keywords are taken away. Good enough for the queries of this repository; promtool checks the syntax.
 *
 * A Grafana variable query such as `label_values(metric, label)` is not PromQL: its label comes back as a name.
 */

const KEYWORDS = new Set([
  // aggregation operators (also written `sum by (x) (...)`, so not always followed by a parenthesis)
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile',
  'limitk', 'limit_ratio',
  // binary operators and modifiers
  'and', 'or', 'unless', 'atan2', 'bool', 'on', 'ignoring', 'group_left', 'group_right', 'by', 'without', 'offset',
  // number literals
  'inf', 'nan',
]);

export function metricNames(expr: string): Set<string> {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ') // strings
    .replace(/#[^\n]*/g, ' ') // comments (after strings: a # inside a string is not one)
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges, subqueries
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ') // label lists
    .replace(/\$\{[^}]*\}|\$\w+/g, ' '); // Grafana variables
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[A-Za-z_:][\w:]*|\d[\w.]*(?:[eE][+-]?\d+)?|\S/g)) {
    const token = m[0];
    if (!/^[A-Za-z_:]/.test(token) || KEYWORDS.has(token.toLowerCase())) continue; // numbers, durations, operators
    if (/^\s*\(/.test(stripped.slice(m.index + token.length))) continue; // a function call
    names.add(token);
  }
  return names;
}
