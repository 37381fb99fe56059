package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run one picket agent with the real parts around it: Prometheus scraping its
// /metrics, an OpenTelemetry Collector receiving its OTLP export, and every query of the
// shipped Grafana dashboard evaluated by that Prometheus.

// infraAgentConfig is a single agent on free loopback ports: host metrics and a self check
// every second, so the peers have data within a few seconds. The last %s adds top-level keys.
const infraAgentConfig = `node_name: %s
data_dir: %s
log: {level: debug, format: json}
http: {listen: "127.0.0.1:%d"}
cluster:
  name: infra
  bind: "127.0.0.1:%d"
  rpc: "127.0.0.1:%d"
  profile: fast
  raft: {voters: 1, bootstrap_expect: 1}
collectors: {interval: 1s}
checks:
  - name: self
    type: http
    interval: 1s
    timeout: 1s
    http: {url: "http://127.0.0.1:%d/healthz"}
%s`

// infraAgent is one picket agent started by startInfraAgent.
type infraAgent struct {
	name string
	addr string // host:port of its HTTP API and /metrics
	base string // http://addr
	p    *proc
}

// startInfraAgent runs an agent named name from infraAgentConfig plus extra, and returns
// once its self check passes.
func startInfraAgent(t *testing.T, name, extra string) *infraAgent {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	a := &infraAgent{name: name, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	a.base = "http://" + a.addr
	cfg := filepath.Join(dir, "picket.yaml")
	body := fmt.Sprintf(infraAgentConfig, name, filepath.Join(dir, "data"), port, freePort(t), freePort(t), port, extra)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	a.p = start(t, nil, "agent", "-c", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eventually(t, 30*time.Second, name+" self check passing", func() error {
		select {
		case err := <-a.p.done:
			a.p.done <- err
			t.Fatalf("agent %s exited: %v\n%s", name, err, a.p.out.String())
		default:
		}
		cs, err := getChecks(ctx, a.base)
		if err != nil {
			return err
		}
		if c, ok := findCheck(cs, "self"); !ok || c.Status != "passing" {
			return fmt.Errorf("checks: %+v", cs)
		}
		return nil
	})
	return a
}

// TestPrometheusScrapesAgent has a real Prometheus scrape one agent every second and finds
// the agent's check, host and build series through the query API.
func TestPrometheusScrapesAgent(t *testing.T) {
	needTool(t, "prometheus")
	a := startInfraAgent(t, "prom-1", "")
	prom := startPrometheus(t, a.addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eventually(t, 20*time.Second, "scrape target up", func() error { return prom.targetsUp(ctx) })

	for _, tc := range []struct {
		expr string
		want string // value every returned sample must have; "" for any
	}{
		{`up{job="picket"}`, "1"},
		{`picket_check_up{check="self", node="prom-1"}`, "1"},
		{`sum by (cpu_mode) (system_cpu_time_seconds_total)`, ""},
		{`picket_build_info`, "1"},
		{`target_info{service_name="picket", picket_node="prom-1"}`, "1"},
	} {
		eventually(t, 15*time.Second, tc.expr+" has data", func() error {
			v, err := prom.query(ctx, tc.expr)
			if errors.Is(err, errPromQuery) {
				t.Fatal(err)
			}
			if err != nil {
				return err
			}
			if len(v) == 0 {
				return errors.New("no samples")
			}
			for _, s := range v {
				if tc.want != "" && s.Value != tc.want {
					return fmt.Errorf("sample %v = %s, want %s", s.Metric, s.Value, tc.want)
				}
			}
			return nil
		})
	}
	if err := a.p.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("agent exit after SIGTERM: %v", err)
	}
}

// TestOTLPMetricsToCollector has an agent export its metrics over OTLP, once over gRPC and
// once over HTTP, to a real OpenTelemetry Collector, and finds picket's check and host
// metrics in what the collector wrote, under the agent's resource.
func TestOTLPMetricsToCollector(t *testing.T) {
	col := startCollector(t)
	for _, tc := range []struct {
		protocol string
		endpoint string
	}{
		{"grpc", col.grpc},
		{"http", col.http},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			node := "otlp-" + tc.protocol
			extra := fmt.Sprintf("exporters:\n  otlp: {endpoint: %q, protocol: %s, insecure: true, interval: 1s, timeout: 2s}\n",
				tc.endpoint, tc.protocol)
			a := startInfraAgent(t, node, extra)
			resource := map[string]string{"service.name": "picket", "picket.node": node}
			var last []string
			eventually(t, 20*time.Second, "collector has "+node+"'s metrics", func() error {
				ms, err := col.metrics()
				if err != nil {
					t.Fatal(err)
				}
				last = last[:0]
				for _, m := range ms {
					last = append(last, fmt.Sprintf("%s %v", m.Name, m.Resource))
				}
				for _, want := range []struct {
					name  string
					attrs map[string]string
				}{
					{"picket.check.duration", map[string]string{"check": "self", "node": node}},
					{"picket.check.up", map[string]string{"check": "self", "node": node}},
					{"picket.check.runs", map[string]string{"check": "self"}},
					{"picket.build.info", nil},
					{"system.cpu.time", nil},
					{"system.memory.usage", nil},
				} {
					pts := findPoints(findMetrics(ms, want.name, resource), want.attrs)
					if len(pts) == 0 {
						return fmt.Errorf("no %s point with %v under resource %v", want.name, want.attrs, resource)
					}
					if want.name == "picket.check.duration" && !slices.ContainsFunc(pts, func(p otlpPoint) bool { return p.Value > 0 }) {
						return fmt.Errorf("%s has only empty histograms: %+v", want.name, pts)
					}
				}
				return nil
			})
			if t.Failed() {
				slices.Sort(last)
				t.Logf("collector metrics:\n%s", strings.Join(slices.Compact(last), "\n"))
			}
			if err := a.p.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
				t.Errorf("agent exit after SIGTERM: %v", err)
			}
		})
	}
}

// TestOTLPLogsToCollector posts a record to a lone agent, its own aggregator, and finds it
// in the cluster log the agent exports over OTLP to a real collector.
func TestOTLPLogsToCollector(t *testing.T) {
	col := startCollector(t)
	const node = "otlp-logs"
	extra := fmt.Sprintf("exporters:\n  otlp: {endpoint: %q, protocol: grpc, insecure: true, interval: 1s, timeout: 2s, logs: true}\n", col.grpc)
	a := startInfraAgent(t, node, extra)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	marker := fmt.Sprintf("infra-log-%d", time.Now().UnixNano())
	body := fmt.Sprintf(`[{"level":"error","message":%q,"attrs":{"disk":"/dev/sda1"}}]`, marker)
	var code int
	var answer []byte
	eventually(t, 20*time.Second, "POST /v1/logs accepted", func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/v1/logs", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", marker)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		answer, _ = io.ReadAll(resp.Body)
		code = resp.StatusCode
		if code != http.StatusOK {
			return fmt.Errorf("POST /v1/logs: %d %s", code, answer)
		}
		return nil
	})
	eventually(t, 20*time.Second, "collector has the record", func() error {
		ls, err := col.logs()
		if err != nil {
			t.Fatal(err)
		}
		found := findLogs(ls, marker, map[string]string{"disk": "/dev/sda1"})
		if len(found) == 0 {
			return fmt.Errorf("no record %q with disk=/dev/sda1 among %d records", marker, len(ls))
		}
		if len(found) > 1 {
			t.Fatalf("record %q exported %d times: %+v", marker, len(found), found)
		}
		if found[0].Resource["service.name"] != "picket" {
			t.Errorf("record resource %v, want service.name=picket", found[0].Resource)
		}
		return nil
	})
}

// TestDashboardQueries evaluates every query of configs/grafana/picket.json against a real
// Prometheus scraping one agent. No query may be refused; a query whose metrics the agent
// exposes must return data (with $node set to the agent, so the node filter is exercised);
// the others wait for the cluster parts and are logged.
func TestDashboardQueries(t *testing.T) {
	needTool(t, "prometheus")
	queries, err := dashboardExprs(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := dashboardVariables(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	const node = "dash-1"
	a := startInfraAgent(t, node, "")
	prom := startPrometheus(t, a.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	eventually(t, 20*time.Second, "scrape target up", func() error { return prom.targetsUp(ctx) })
	_, exposition, err := get(ctx, a.base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposed := exposedNames(exposition)
	values := map[string]string{"node": node, "__rate_interval": "15s", "__interval": "5s", "__range": "1m"}

	for _, v := range vars {
		expr, label, ok := labelValuesQuery(grafanaExpand(v.Expr, values))
		if !ok {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Panel, v.Expr)
			continue
		}
		eventually(t, 15*time.Second, "variable "+v.Panel+" lists "+node, func() error {
			got, err := prom.query(ctx, expr)
			if errors.Is(err, errPromQuery) {
				t.Fatal(err)
			}
			if err != nil {
				return err
			}
			for _, s := range got {
				if s.Metric[label] == node {
					return nil
				}
			}
			return fmt.Errorf("%s: no %s=%q in %+v", expr, label, node, got)
		})
	}

	// Wait until rates have two samples in their window, then give each query a share of
	// one deadline.
	deadline := time.Now().Add(30 * time.Second)
	var waiting []string
	for _, q := range queries {
		expr := grafanaExpand(q.Expr, values)
		var missing []string
		for _, name := range promMetricNames(expr) {
			if !exposed[name] {
				missing = append(missing, name)
			}
		}
		what := fmt.Sprintf("panel %q %s", q.Panel, q.RefID)
		for {
			got, err := prom.query(ctx, expr)
			if err != nil {
				if errors.Is(err, errPromQuery) {
					t.Errorf("%s: %v", what, err)
					break
				}
				t.Fatalf("%s: %v", what, err)
			}
			if len(got) > 0 {
				break
			}
			if len(missing) > 0 && time.Now().After(deadline) {
				waiting = append(waiting, fmt.Sprintf("%s needs %s", what, strings.Join(missing, ", ")))
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: no data though the agent exposes every metric it uses: %s", what, expr)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	if len(queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	if len(waiting) > 0 {
		t.Errorf("%d of %d queries use metrics the agent does not expose:\n%s",
			len(waiting), len(queries), strings.Join(waiting, "\n"))
	}
	t.Logf("%d dashboard queries evaluated against Prometheus, every one with data", len(queries))
}

// TestDashboardHelpers pins the helpers that read PromQL out of the dashboard.
func TestDashboardHelpers(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`max by (state) (picket_cluster_members)`, []string{"picket_cluster_members"}},
		{`histogram_quantile(0.95, sum by (le, check) (rate(picket_check_duration_seconds_bucket{node=~"a|b", x="by (y)"}[5m])))`,
			[]string{"picket_check_duration_seconds_bucket"}},
		{`1 - avg by (picket_node) (rate(system_cpu_time_seconds_total{cpu_mode="idle"}[1m]) * on (job, instance) group_left (picket_node) target_info{service_name="picket"})`,
			[]string{"system_cpu_time_seconds_total", "target_info"}},
		{`count(max by (check) (picket_check_flapping) == 1) or vector(0)`, []string{"picket_check_flapping"}},
		{`sum(a) by (x) / ignoring(y) b offset 5m and bool c`, []string{"a", "b", "c"}},
	} {
		if got := promMetricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("promMetricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
	vars := map[string]string{"node": "n1", "__rate_interval": "15s"}
	for in, want := range map[string]string{
		`x{node=~"$node"}[$__rate_interval]`: `x{node=~"n1"}[15s]`,
		`x{node=~"${node}"}`:                 `x{node=~"n1"}`,
		`x{node=~"${node:regex}"}`:           `x{node=~"n1"}`,
		`x{a="$unknown"}`:                    `x{a="$unknown"}`,
	} {
		if got := grafanaExpand(in, vars); got != want {
			t.Errorf("grafanaExpand(%q) = %q, want %q", in, got, want)
		}
	}
	if expr, label, ok := labelValuesQuery(`label_values(target_info{a="b,c"}, picket_node)`); !ok ||
		expr != `count by (picket_node) (target_info{a="b,c"})` || label != "picket_node" {
		t.Errorf("labelValuesQuery = %q %q %v", expr, label, ok)
	}
	if _, _, ok := labelValuesQuery(`query_result(up)`); ok {
		t.Errorf("labelValuesQuery accepted query_result")
	}
}
