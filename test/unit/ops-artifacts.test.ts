import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { parser } from '@prometheus-io/lezer-promql';
import { expect } from 'chai';
import { Histogram } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { ServiceMetrics } from '../../src/observability/metrics';

/**
 * The operations artifacts of docs/deploy (alert rules, Grafana dashboard) are only useful if
 * Prometheus and Grafana accept them and they name metrics the service exports: Prometheus loads
 * a rule with a misspelt metric or label without complaint and it never fires. This checks what
 * `promtool check rules` checks (the rule file's structure, every expression through the
 * Prometheus project's own PromQL grammar), and what it cannot: that every metric and label
 * exists in src/observability/metrics.ts's registry.
 */

const DEPLOY = join(__dirname, '..', '..', 'docs', 'deploy');

type SyntaxNode = ReturnType<typeof parser.parse>['topNode'];

/** The labels Prometheus adds to every scraped series. */
const TARGET_LABELS = ['job', 'instance'];

/** Metric name -> its label names: the service's registry, histogram series, and `up`. */
async function knownMetrics(): Promise<Map<string, Set<string>>> {
  const { registry } = new ServiceMetrics(10);
  const known = new Map<string, Set<string>>([['up', new Set(TARGET_LABELS)]]);
  for (const m of await registry.getMetricsAsJSON()) {
    const metric = registry.getSingleMetric(m.name);
    // prom-client keeps each metric's label names on the object (its typings omit the field).
    const own = (metric as unknown as { labelNames?: readonly string[] } | undefined)?.labelNames ?? [];
    const labels = new Set([...own, ...TARGET_LABELS]);
    if (metric instanceof Histogram) {
      known.set(`${m.name}_bucket`, new Set([...labels, 'le']));
      known.set(`${m.name}_sum`, labels);
      known.set(`${m.name}_count`, labels);
    } else known.set(m.name, labels);
  }
  return known;
}

/** Functions whose (last) argument Prometheus requires to be a range vector. */
const RANGE_FUNCTIONS = /^(rate|irate|increase|delta|idelta|deriv|resets|changes|predict_linear|\w+_over_time)$/;

/** grpc_code values the service can export: grpc-js's status names (OK, INVALID_ARGUMENT, ...). */
const GRPC_CODES = new Set(Object.keys(status).filter((k) => Number.isNaN(Number(k))));

/**
 * Problems of one PromQL expression: syntax errors by the Prometheus grammar, range functions
 * given instant vectors (a parse error in Prometheus, not in the grammar), unknown metrics,
 * unknown labels in selectors and groupings, unknown grpc_code values, histogram_quantile
 * without `le` kept.
 */
function promqlProblems(expr: string, known: Map<string, Set<string>>): string[] {
  const problems: string[] = [];
  const tree = parser.parse(expr);
  const text = (n: SyntaxNode) => expr.slice(n.from, n.to);
  const childrenOf = (n: SyntaxNode) => {
    const out: SyntaxNode[] = [];
    for (let c = n.firstChild; c; c = c.nextSibling) out.push(c);
    return out;
  };
  const metricsUsed = new Set<string>();
  const groupings: string[] = [];
  tree.iterate({
    enter: (ref) => {
      const node = ref.node;
      if (ref.type.isError) {
        problems.push(`syntax error at ${ref.from}: "${expr.slice(Math.max(0, ref.from - 20), ref.from)}⚠${expr.slice(ref.from, ref.from + 20)}"`);
        return;
      }
      switch (ref.name) {
        case 'VectorSelector': {
          const name = node.getChild('Identifier');
          const metric = name ? text(name) : undefined;
          if (metric === undefined) {
            problems.push(`selector without a metric name: ${text(node)}`);
            return;
          }
          metricsUsed.add(metric);
          const labels = known.get(metric);
          if (!labels) problems.push(`unknown metric ${metric}`);
          for (const matcher of node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []) {
            const label = text(matcher.getChild('LabelName')!);
            const value = matcher.getChild('StringLiteral');
            if (labels && !labels.has(label)) problems.push(`${metric} has no label ${label}`);
            if (label === 'grpc_code' && value) {
              for (const code of JSON.parse(text(value) as string).split('|')) if (!GRPC_CODES.has(code)) problems.push(`grpc_code ${code} is no gRPC status name`);
            }
          }
          return;
        }
        case 'GroupingLabels':
          for (const l of node.getChildren('LabelName')) groupings.push(text(l));
          return;
        case 'FunctionCall': {
          const fn = text(node.getChild('FunctionIdentifier')!);
          const args = childrenOf(node.getChild('FunctionCallBody')!);
          if (RANGE_FUNCTIONS.test(fn)) {
            const last = args[args.length - 1];
            if (!last || !['MatrixSelector', 'SubqueryExpr'].includes(last.name)) problems.push(`${fn}() needs a range vector: ${text(node)}`);
          }
          if (fn === 'histogram_quantile') {
            const by = args[1]?.name === 'AggregateExpr' ? args[1].getChild('AggregateModifier') : null;
            if (by && (by.getChild('Without') || !by.getChild('GroupingLabels')?.getChildren('LabelName').some((l) => text(l) === 'le'))) {
              problems.push(`histogram_quantile() over an aggregation that drops le: ${text(node)}`);
            }
          }
          return;
        }
      }
    },
  });
  const labelsInExpr = new Set([...metricsUsed].flatMap((m) => [...(known.get(m) ?? [])]));
  for (const l of groupings) if (!labelsInExpr.has(l)) problems.push(`grouping by ${l}, a label none of ${[...metricsUsed].join(', ')} has`);
  return problems;
}

/** Expressions with problems, each named, for one readable assertion message. */
function reportOf(named: Array<[string, string]>, known: Map<string, Set<string>>): string[] {
  const out: string[] = [];
  for (const [name, expr] of named) for (const p of promqlProblems(expr, known)) out.push(`${name}: ${p}\n    ${expr.trim()}`);
  return out;
}

// ---- the rule file ----

interface Rule {
  alert?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
  [key: string]: unknown;
}
const RULE_KEYS = new Set(['alert', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations']);
const GROUP_KEYS = new Set(['name', 'interval', 'limit', 'query_offset', 'labels', 'rules']);
/** Prometheus' duration syntax (model.ParseDuration): units largest first, each at most once. */
const DURATION = /^(?!$)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$/;

function loadRules(): { groups: Array<{ name?: unknown; rules?: Rule[]; [key: string]: unknown }> } {
  return parseYaml(readFileSync(join(DEPLOY, 'alerts.yaml'), 'utf8'));
}

// ---- the dashboard ----

interface Panel {
  id?: unknown;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { x: number; y: number; w: number; h: number };
  targets?: Array<{ expr?: string; datasource?: { uid?: string } }>;
  panels?: Panel[];
}
interface Dashboard {
  schemaVersion?: number;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown; datasource?: { uid?: string }; definition?: string }> };
}

function loadDashboard(): { raw: string; dashboard: Dashboard } {
  const raw = readFileSync(join(DEPLOY, 'grafana-dashboard.json'), 'utf8');
  return { raw, dashboard: JSON.parse(raw) as Dashboard };
}

/** Every panel, those inside collapsed rows too. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Grafana's interval variables, as Grafana replaces them before sending the query. */
function interpolated(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m');
}

const DATASOURCE = '${datasource}';

describe('operations artifacts (docs/deploy)', function () {
  let known: Map<string, Set<string>>;
  before(async () => {
    known = await knownMetrics();
  });

  describe('alerts.yaml', function () {
    it('has the structure Prometheus requires of a rule file', function () {
      const { groups } = loadRules();
      expect(groups, 'groups').to.be.an('array').that.is.not.empty;
      const groupNames = new Set<string>();
      const alertNames = new Set<string>();
      for (const g of groups) {
        expect(g.name, 'group name').to.be.a('string').that.is.not.empty;
        expect(groupNames.has(g.name as string), `group name ${String(g.name)} repeated`).to.equal(false);
        groupNames.add(g.name as string);
        for (const k of Object.keys(g)) expect(GROUP_KEYS.has(k), `group ${String(g.name)}: unknown field ${k}`).to.equal(true);
        expect(g.rules, `rules of ${String(g.name)}`).to.be.an('array').that.is.not.empty;
        for (const r of g.rules!) {
          const name = String(r.alert);
          for (const k of Object.keys(r)) expect(RULE_KEYS.has(k), `${name}: unknown field ${k}`).to.equal(true);
          expect(r.alert, 'alert name').to.be.a('string').and.match(/^[A-Za-z_][A-Za-z0-9_]*$/);
          expect(alertNames.has(name), `alert ${name} repeated`).to.equal(false);
          alertNames.add(name);
          expect(r.expr, `${name}: expr`).to.be.a('string').that.is.not.empty;
          expect(r.for, `${name}: for`).to.be.a('string').and.match(DURATION);
          expect(r.labels?.severity, `${name}: labels.severity`).to.be.oneOf(['critical', 'warning', 'info']);
          for (const [k, v] of Object.entries({ ...r.labels, ...r.annotations })) expect(v, `${name}: ${k} must be a string`).to.be.a('string');
          expect(r.annotations?.summary, `${name}: annotations.summary`).to.be.a('string').that.is.not.empty;
          expect(r.annotations?.description, `${name}: annotations.description`).to.be.a('string').that.is.not.empty;
        }
      }
    });

    it('covers what the service needs alerting on', function () {
      const alerts = loadRules().groups.flatMap((g) => g.rules!.map((r) => r.alert));
      expect(alerts).to.include.members([
        'ConsentLedgerTargetDown',
        'ConsentLedgerHighErrorRate',
        'ConsentCheckLatencyHigh',
        'ConsentDecisionCacheStale',
        'ConsentWriteRaceRetriesHigh',
        'ConsentDatabasePoolWaiting',
        'ConsentSubjectRequestsOverdue',
        'ConsentSubjectRequestsDueSoon',
        'ConsentAuditCheckpointLate',
      ]);
    });

    it('every expression parses with the Prometheus grammar and names only exported metrics and labels', function () {
      const named = loadRules().groups.flatMap((g) => g.rules!.map((r): [string, string] => [String(r.alert), String(r.expr)]));
      expect(named.length).to.be.at.least(9);
      const problems = reportOf(named, known);
      expect(problems, problems.join('\n')).to.deep.equal([]);
    });
  });

  describe('grafana-dashboard.json', function () {
    it('every panel query parses with the Prometheus grammar and names only exported metrics and labels', function () {
      const { dashboard } = loadDashboard();
      const named = allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t, i): [string, string] => [`panel "${p.title}" target ${i}`, interpolated(t.expr ?? '')]));
      expect(named.length).to.be.at.least(30);
      const problems = reportOf(named, known);
      expect(problems, problems.join('\n')).to.deep.equal([]);
    });

    it('has the datasource, job, instance and tenant variables, their queries valid', function () {
      const { dashboard } = loadDashboard();
      const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
      expect(vars.get('datasource')).to.include({ type: 'datasource', query: 'prometheus' });
      const selectors: Array<[string, string]> = [];
      for (const name of ['job', 'instance', 'tenant']) {
        const v = vars.get(name);
        expect(v, name).to.include({ type: 'query' });
        expect(v!.datasource?.uid, `${name}: datasource`).to.equal(DATASOURCE);
        const m = /^label_values\((.+),\s*(\w+)\)$/.exec(String(v!.query));
        expect(m, `${name}: label_values(selector, label)`).to.not.equal(null);
        expect(m![2]).to.equal(name);
        selectors.push([`variable ${name}`, m![1]]);
        // The label it lists exists on the metric it reads.
        selectors.push([`variable ${name} label`, `count by (${m![2]}) (${m![1]})`]);
      }
      const problems = reportOf(selectors, known);
      expect(problems, problems.join('\n')).to.deep.equal([]);
    });

    it('has unique panel ids, every panel and query on the datasource variable, no overlapping panels, and nothing fetched from the network', function () {
      const { raw, dashboard } = loadDashboard();
      expect(dashboard.schemaVersion).to.be.a('number').and.at.least(36);
      const panels = allPanels(dashboard.panels);
      const ids = panels.map((p) => p.id);
      expect(ids.every((id) => Number.isInteger(id)), 'integer ids').to.equal(true);
      expect(new Set(ids).size, 'unique panel ids').to.equal(ids.length);
      for (const p of panels.filter((q) => q.type !== 'row')) {
        expect(p.datasource, `panel "${p.title}"`).to.deep.equal({ type: 'prometheus', uid: DATASOURCE });
        expect(p.targets, `panel "${p.title}" targets`).to.be.an('array').that.is.not.empty;
        for (const t of p.targets!) expect(t.datasource?.uid ?? DATASOURCE, `panel "${p.title}" target`).to.equal(DATASOURCE);
      }
      for (const [i, a] of dashboard.panels.entries()) {
        for (const b of dashboard.panels.slice(i + 1)) {
          const [g, h] = [a.gridPos!, b.gridPos!];
          const overlap = g.x < h.x + h.w && h.x < g.x + g.w && g.y < h.y + h.h && h.y < g.y + g.h;
          expect(overlap, `"${a.title}" and "${b.title}" overlap`).to.equal(false);
        }
      }
      expect(raw.match(/(https?:)?\/\/[\w.-]+/gi), 'URLs in the dashboard').to.equal(null);
    });
  });

  it('the checks find what they look for (a misspelt metric, a label typo, broken syntax, a bad grpc_code, rate of an instant vector)', function () {
    // Guards the guard: each of these is loaded by Prometheus or Grafana without complaint, or
    // fails only at evaluation, and must be caught here.
    const cases: Array<[string, RegExp]> = [
      ['sum(rate(consent_check_total[5m]))', /unknown metric consent_check_total/],
      ['sum by (tenat) (rate(consent_checks_total[5m]))', /grouping by tenat/],
      ['consent_checks_total{verdit="VERDICT_ALLOW"}', /has no label verdit/],
      ['sum(rate(consent_checks_total[5m])', /syntax error/],
      ['grpc_server_handled_total{grpc_code!~"OK|CANCELED"}', /grpc_code CANCELED/],
      ['rate(consent_checks_total)', /needs a range vector/],
      ['histogram_quantile(0.99, sum by (grpc_method) (rate(grpc_server_handling_seconds_bucket[5m])))', /drops le/],
    ];
    for (const [expr, expected] of cases) expect(promqlProblems(expr, known).join('; '), expr).to.match(expected);
    expect(promqlProblems('histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket{grpc_code="OK"}[5m])))', known).join('; ')).to.match(/has no label grpc_code/);
    expect(promqlProblems('sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket{job="x"}[5m]))', known)).to.deep.equal([]);
  });
});
