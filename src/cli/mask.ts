/** Shows enough of a token to tell two apart, never enough to use it: `6502…a7f2 (32 chars)`. */
export function maskToken(token: string): string {
  if (token.length <= 12) return `**** (${token.length} chars)`;
  return `${token.slice(0, 4)}…${token.slice(-4)} (${token.length} chars)`;
}
