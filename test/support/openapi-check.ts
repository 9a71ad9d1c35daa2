import { Ajv2020 } from 'ajv/dist/2020.js';
import { buildOpenApiDocument } from '../../src/http/openapi.js';

/**
 * Checks HTTP answers against the broker's OpenAPI description: the harness's `api()` runs every response
 * of the HTTP tests through `responseProblem`, so the description cannot drift from what the code answers.
 */
const doc = buildOpenApiDocument() as {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }> }>>;
  components: { schemas: Record<string, unknown> };
};

const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema({ $id: 'openapi.json', components: doc.components });

/** Each documented path as a regex with its template (`/v1/channels/{channelId}/token`). */
const templates = Object.keys(doc.paths).map((template) => ({
  template,
  re: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`),
}));

const validators = new Map<string, ReturnType<typeof ajv.compile>>();
function validatorFor(ref: string) {
  let v = validators.get(ref);
  if (v === undefined) {
    v = ajv.compile({ $ref: `openapi.json${ref}` });
    validators.set(ref, v);
  }
  return v;
}

export let checkedResponses = 0;

/**
 * Why this answer breaks the description, or undefined when it keeps it (or the path is not a documented
 * one: ops routes, unknown routes).
 */
export function responseProblem(method: string, url: string, status: number, body: unknown): string | undefined {
  const path = new URL(url, 'http://x').pathname;
  const found = templates.find((t) => t.re.test(path));
  if (found === undefined) return undefined;
  const operation = doc.paths[found.template]?.[method.toLowerCase()];
  if (operation === undefined) return status === 404 || status === 405 ? undefined : `${method} ${found.template} is not documented`;
  const response = operation.responses[String(status)];
  if (response === undefined) return `${method} ${found.template} answered ${status}, which is not documented`;
  checkedResponses += 1;
  const ref = response.content?.['application/json']?.schema.$ref;
  if (ref === undefined) return body === undefined || body === '' ? undefined : `${method} ${found.template} ${status} has a body, but none is documented`;
  const validate = validatorFor(ref);
  if (validate(body)) return undefined;
  return `${method} ${found.template} ${status} does not match ${ref}: ${ajv.errorsText(validate.errors)}`;
}
