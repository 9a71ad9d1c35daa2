import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { buildOpenApiDocument } from '../src/http/openapi.js';
import { ERROR_TABLE } from '../src/errors/broker-error.js';
import { responseProblem } from './support/openapi-check.js';
import { api, testConfig, useSimulator } from './support/harness.js';

const fx = useSimulator();

describe('the OpenAPI 3.1 description', () => {
  it('when validated by an OpenAPI validator, then it is a valid 3.1 document describing every /v1 route of both account forms', async () => {
    const doc = buildOpenApiDocument();
    const result = await new Validator().validate(doc);
    expect(result).toEqual({ valid: true });
    const paths = Object.keys(doc['paths'] as object);
    expect(paths).toContain('/v1/channels/{channelId}/token');
    expect(paths).toContain('/v1/accounts/{account}/channels/{channelId}/watch-tokens');
    expect(paths).toContain('/v1/channels/{channelId}/token/stream');
    expect(paths).toContain('/v1/accounts/{account}/token-stream');
    expect(paths).toHaveLength(20);
    // The error code enum is the broker's closed set.
    const error = JSON.stringify((doc['components'] as { schemas: Record<string, unknown> }).schemas['Error']);
    for (const code of Object.keys(ERROR_TABLE)) expect(error).toContain(`"${code}"`);
  });

  it('when `npm run build` has run, then openapi.json at the repository root is this document', () => {
    expect(JSON.parse(readFileSync('openapi.json', 'utf8'))).toEqual(buildOpenApiDocument());
  });

  it('when GET /openapi.json is asked without a key, then the broker serves the same document', async () => {
    const b = await fx.broker(testConfig(fx.sim.url, { BROKER_ROLE: 'api' }));
    const res = await api(b.url, '/openapi.json', { key: null });
    expect(res.status).toBe(200);
    expect(res.body).toEqual(buildOpenApiDocument());
  });

  it('the check every HTTP test runs can fail: a body of the wrong shape, or an undocumented status, is reported', () => {
    expect(responseProblem('GET', '/v1/channels/1/token', 200, { channelId: '1', channelToken: 't', expireTime: 1 })).toBeUndefined();
    expect(responseProblem('GET', '/v1/channels/1/token', 200, { channelId: '1', token: 't' })).toMatch(/does not match/);
    expect(responseProblem('GET', '/v1/channels/1/token', 418, {})).toMatch(/not documented/);
    expect(responseProblem('GET', '/v1/channels/1/token', 503, { error: { code: 'no_such_code', message: 'x' } })).toMatch(/does not match/);
  });
});
