import { defineConfig } from 'vitest/config';

/**
 * `npm run test:faults`: the fault suite against real processes (see the README's Guarantees). Files run one at
 * a time in one worker: each starts its own fleet (redis-server, simulator, 3 API replicas, 2 workers) and
 * needs the machine's cores for itself.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    globalSetup: ['test/faults/support/build.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
  },
});
