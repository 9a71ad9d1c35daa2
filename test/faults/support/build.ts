import { execFileSync } from 'node:child_process';

/** Builds dist/ once before the suite: the fault suite runs the CLI as real processes. */
export default function setup(): void {
  if (process.env['FAULTS_SKIP_BUILD'] === '1') return;
  const started = Date.now();
  execFileSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
  process.stderr.write(`[faults] built dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}
