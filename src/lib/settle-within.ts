import type { Logger } from './logger.js';

/**
 * Waits for `work` at most `ms`: true if it settled (resolved or rejected) in time, false otherwise. A rejection
 * is never left unhandled, whenever it comes.
 */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([work.then(() => true, () => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Closes something that talks to Redis gracefully, for at most `graceMs`, then drops it: while Redis is
 * unreachable a graceful close (BullMQ's close(), QUIT) would wait for it forever.
 */
export async function closeOrDrop(
  what: string,
  close: () => Promise<unknown>,
  drop: () => unknown,
  graceMs: number,
  logger: Logger,
): Promise<void> {
  if (await settlesWithin(close(), graceMs)) return;
  logger.warn({ graceMs }, `${what} did not close in time (Redis unreachable?); dropping its connection`);
  await settlesWithin(Promise.resolve().then(drop), 1000);
}
