import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';

/** The run's real Redis (see global-setup.ts). */
export function redisUrl(): string {
  return inject('redisUrl');
}

/** A key prefix no other test uses, so tests share one Redis without seeing each other. */
export function uniquePrefix(): string {
  return `t${randomBytes(5).toString('hex')}`;
}
