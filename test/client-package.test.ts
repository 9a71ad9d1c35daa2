import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/**
 * The consumer client is its own package (client/, `polyv-token-broker-client`), with ESM and CommonJS
 * builds, and `polyv-token-broker/client` keeps working for existing users. These run the built files the
 * way a consumer's Node would load them (`npm run build` first).
 */
const built = existsSync('client/dist/esm/broker-client.js') && existsSync('client/dist/cjs/broker-client.js');

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { encoding: 'utf8' }).trim();
}

describe('the client package', () => {
  it('is built (npm run build builds the workspace first)', () => {
    expect(built, 'client/dist missing: run npm run build').toBe(true);
  });

  it('when imported as ESM, by its own name and as polyv-token-broker/client, then it exports the client', () => {
    for (const name of ['polyv-token-broker-client', 'polyv-token-broker/client']) {
      const out = node(['--input-type=module', '-e', `import * as m from '${name}'; console.log(typeof m.BrokerClient, typeof m.BrokerClientError, m.POLYV_INVALID_TOKEN_CODE)`]);
      expect(out, name).toBe('function function 15');
    }
  });

  it('when required from CommonJS, by its own name and as polyv-token-broker/client, then it exports the same', () => {
    for (const name of ['polyv-token-broker-client', 'polyv-token-broker/client']) {
      const out = node(['-e', `const m = require('${name}'); console.log(typeof m.BrokerClient, typeof m.BrokerClientError, m.POLYV_INVALID_TOKEN_CODE)`]);
      expect(out, name).toBe('function function 15');
    }
  });

  it('has no runtime dependency but undici, a license, its own README, and the root CHANGELOG names its release', () => {
    const manifest = JSON.parse(readFileSync('client/package.json', 'utf8')) as { dependencies: Record<string, string>; license?: string; version: string };
    expect(Object.keys(manifest.dependencies)).toEqual(['undici']);
    expect(manifest.license).toBeTruthy();
    expect(readFileSync('client/README.md', 'utf8')).toContain('polyv-token-broker-client');
    expect(readFileSync('CHANGELOG.md', 'utf8')).toContain(`polyv-token-broker-client ${manifest.version}`);
  });
});
