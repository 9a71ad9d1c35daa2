/** Figures a fault file measures, printed together when it ends (and kept for the closing report). */
export class Figures {
  private readonly lines: string[] = [];

  constructor(private readonly title: string) {}

  add(line: string): void {
    this.lines.push(line);
    console.log(`[faults] ${line}`);
  }

  print(): void {
    console.log(`\n==== ${this.title} ====\n${this.lines.map((l) => `  ${l}`).join('\n')}\n`);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; resolves with the time it took (ms), or throws after `timeoutMs`. */
export async function timeUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 100): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}
