import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { computeSign, sendableParams, signParams, signaturePlaintext, type ParamValue } from './sign.js';

interface Vector {
  name: string;
  secret: string;
  params: Record<string, ParamValue>;
  algo: 'md5' | 'sha256';
  plain: string;
  sign: string;
}

// A verbatim copy of shared/polyv-api/sign-vectors.jsonl, so the test runs wherever the repository is cloned.
const vectorsPath = fileURLToPath(new URL('../../test/fixtures/sign-vectors.jsonl', import.meta.url));
const vectors: Vector[] = readFileSync(vectorsPath, 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '')
  .map((line) => JSON.parse(line) as Vector);

describe('PolyV signing (test/fixtures/sign-vectors.jsonl, from shared/polyv-api)', () => {
  it('has vectors to check', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(10);
  });

  it.each(vectors.map((v) => [v.name, v] as const))('reproduces %s', (_name, v) => {
    const sendable = sendableParams(v.params);
    expect(signaturePlaintext(sendable, v.secret)).toBe(v.plain);
    expect(computeSign(sendable, v.secret, v.algo)).toBe(v.sign);
  });

  it('signParams picks SHA-256 when signatureMethod=SHA256 is among the params', () => {
    const v = vectors.find((x) => x.params['signatureMethod'] === 'SHA256');
    expect(v).toBeDefined();
    expect(signParams(v!.params, v!.secret)['sign']).toBe(v!.sign);
  });

  it('never sends an empty, blank, null or undefined parameter, and never a stale sign', () => {
    const sent = signParams(
      { appId: 'a', timestamp: 1, channelId: '1', nickname: '', avatar: '   ', openid: null, actor: undefined, sign: 'OLD' },
      's',
    );
    expect(Object.keys(sent).sort()).toEqual(['appId', 'channelId', 'sign', 'timestamp']);
    expect(sent['sign']).not.toBe('OLD');
  });
});
