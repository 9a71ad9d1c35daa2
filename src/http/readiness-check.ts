import type { ReadinessCheck } from './routes/ops-routes.js';

/**
 * One dependency's state: 'ok', or a short reason it is not usable. A probe that throws (or rejects) reads
 * `unreachable: <message>`.
 */
export type DependencyProbe = () => string | Promise<string>;

/** The probe's state, or `unreachable: timeout` when it has not answered within `timeoutMs`. */
async function stateOf(probe: DependencyProbe, timeoutMs: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
  });
  try {
    return await Promise.race([Promise.resolve().then(probe), timedOut]);
  } catch (err) {
    return `unreachable: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The readiness behind `/readyz` (on the main listener and the admin one alike): every named probe at once,
 * each bounded by `timeoutMs`, so a hung dependency makes the answer "not ready" instead of no answer.
 */
export function readinessCheck(probes: Readonly<Record<string, DependencyProbe>>, timeoutMs: number): ReadinessCheck {
  const named = Object.entries(probes);
  return {
    async check() {
      const states = await Promise.all(named.map(async ([name, probe]) => [name, await stateOf(probe, timeoutMs)] as const));
      return Object.fromEntries(states);
    },
  };
}
