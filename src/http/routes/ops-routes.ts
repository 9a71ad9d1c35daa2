import { Router } from 'express';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  /** Each dependency's state: 'ok' or a short reason. */
  check(): Promise<Record<string, string>>;
}

/**
 * `/healthz` (the process is alive), `/readyz` (its dependencies are), `/metrics` (Prometheus text; left out
 * with `metrics: false`, when the admin port serves it).
 */
export function opsRoutes(deps: { readiness: ReadinessCheck; registry: Registry; metrics?: boolean }): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const checks = await deps.readiness.check();
    const ready = Object.values(checks).every((v) => v === 'ok');
    // Like every 503 of the broker, it says when to look again.
    if (!ready) res.setHeader('Retry-After', '1');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not_ready', checks });
  });
  if (deps.metrics !== false) {
    router.get('/metrics', async (_req, res) => {
      res.setHeader('Content-Type', deps.registry.contentType);
      res.send(await deps.registry.metrics());
    });
  }
  return router;
}
