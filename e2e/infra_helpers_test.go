package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This file runs the real peers picket works with: Prometheus (from the Debian package) and
// an OpenTelemetry Collector built from Go modules by otelcol/build.sh. Each start* helper
// returns once the peer serves, and stops it when the test ends.

// peer is one running program that is not picket.
type peer struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error // receives the exit error once; the reader puts it back
}

// startPeer runs path with args in dir. At test end the program gets SIGTERM, then SIGKILL
// after 10 s; its output is logged when the test failed.
func startPeer(t *testing.T, name, dir, path string, args ...string) *peer {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s (%s): %v", name, path, err)
	}
	p := &peer{name: name, cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-p.done:
			p.done <- err
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return p
}

// exited returns an error naming the peer's exit when it is no longer running, else nil.
func (p *peer) exited() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited (%v):\n%s", p.name, err, p.out.String())
	default:
		return nil
	}
}

// waitPeer polls ready until it returns nil, failing the test at once when the peer exits
// and after d otherwise.
func waitPeer(t *testing.T, p *peer, d time.Duration, what string, ready func() error) {
	t.Helper()
	eventually(t, d, what, func() error {
		if err := p.exited(); err != nil {
			t.Fatal(err)
		}
		return ready()
	})
}

// dialable reports whether something accepts TCP connections on addr.
func dialable(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// --- Prometheus -------------------------------------------------------------------------

// promServer is a Prometheus scraping picket agents every second.
type promServer struct {
	base string // http://127.0.0.1:PORT
	p    *peer
}

// promConfig is the scrape configuration startPrometheus writes: one job, every target
// scraped each second.
const promConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: picket
    static_configs:
      - targets: [%s]
`

// startPrometheus runs Prometheus scraping the given host:port targets (their /metrics) every
// second, and returns once it is ready. Without the prometheus binary the test is skipped,
// or fails when required().
func startPrometheus(t *testing.T, targets ...string) *promServer {
	t.Helper()
	bin := needTool(t, "prometheus")
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, promConfig, strings.Join(quoted, ", ")), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startPeer(t, "prometheus", dir, bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	s := &promServer{base: "http://" + addr, p: p}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitPeer(t, p, 30*time.Second, "prometheus ready", func() error {
		code, body, err := get(ctx, s.base+"/-/ready")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("GET /-/ready: %d %s", code, body)
		}
		return err
	})
	return s
}

// promSample is one series of an instant query's result, with its value as text (Prometheus
// writes numbers as strings: "1", "NaN", "+Inf").
type promSample struct {
	Metric map[string]string
	Value  string
}

// errPromQuery marks a query Prometheus refused (bad syntax, wrong types), as opposed to
// one it could not be asked.
var errPromQuery = errors.New("prometheus refused the query")

// query runs an instant query and returns its series; a scalar or string result is one
// sample without labels. A query Prometheus refuses wraps errPromQuery.
func (s *promServer) query(ctx context.Context, expr string) ([]promSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/v1/query",
		strings.NewReader(url.Values{"query": {expr}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("query %q: read answer: %w", expr, err)
	}
	var ans struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("query %q: %d %s: %w", expr, resp.StatusCode, body, err)
	}
	if ans.Status != "success" {
		if ans.ErrorType == "bad_data" || ans.ErrorType == "execution" {
			return nil, fmt.Errorf("%w %q: %s: %s", errPromQuery, expr, ans.ErrorType, ans.Error)
		}
		return nil, fmt.Errorf("query %q: %d %s: %s", expr, resp.StatusCode, ans.ErrorType, ans.Error)
	}
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(ans.Data, &data); err != nil {
		return nil, fmt.Errorf("query %q: decode data: %w", expr, err)
	}
	switch data.ResultType {
	case "vector":
		var v []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, fmt.Errorf("query %q: decode vector: %w", expr, err)
		}
		out := make([]promSample, len(v))
		for i, e := range v {
			out[i] = promSample{Metric: e.Metric, Value: fmt.Sprint(e.Value[1])}
		}
		return out, nil
	case "scalar", "string":
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, fmt.Errorf("query %q: decode %s: %w", expr, data.ResultType, err)
		}
		return []promSample{{Value: fmt.Sprint(v[1])}}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %q is not an instant result", expr, data.ResultType)
	}
}

// hasData runs expr and reports whether it returned at least one sample.
func (s *promServer) hasData(ctx context.Context, expr string) (bool, error) {
	v, err := s.query(ctx, expr)
	return len(v) > 0, err
}

// targetsUp returns nil once every active scrape target's last scrape succeeded.
func (s *promServer) targetsUp(ctx context.Context) error {
	code, body, err := get(ctx, s.base+"/api/v1/targets?state=active")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET /api/v1/targets: %d %s", code, body)
	}
	var ans struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Errorf("decode targets: %w", err)
	}
	if len(ans.Data.ActiveTargets) == 0 {
		return errors.New("no active targets yet")
	}
	for _, tg := range ans.Data.ActiveTargets {
		if tg.Health != "up" {
			return fmt.Errorf("target %s is %q: %s", tg.ScrapeURL, tg.Health, tg.LastError)
		}
	}
	return nil
}

// --- OpenTelemetry Collector ------------------------------------------------------------

// otelcolBinary returns the collector built by otelcol/build.sh (or PICKET_OTELCOL). When it
// is missing the test is skipped, or fails when required().
func otelcolBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("PICKET_OTELCOL")
	if p == "" {
		abs, err := filepath.Abs(filepath.Join("otelcol", "otelcol-picket"))
		if err != nil {
			t.Fatal(err)
		}
		p = abs
	}
	if _, err := os.Stat(p); err != nil {
		if required() {
			t.Fatalf("OTel Collector %s is required (PICKET_E2E_REQUIRE/CI set) but missing: run e2e/otelcol/build.sh or set PICKET_OTELCOL", p)
		}
		t.Skipf("OTel Collector %s missing: run e2e/otelcol/build.sh (or set PICKET_OTELCOL), or set PICKET_E2E_REQUIRE=1 to fail instead", p)
	}
	return p
}

// collector is a running OTel Collector that writes every metric and log record it receives
// over OTLP to a file, one OTLP JSON document per line.
type collector struct {
	grpc, http  string // host:port of the OTLP gRPC and HTTP receivers
	metricsFile string
	logsFile    string
	p           *peer
}

// collectorConfig receives OTLP over gRPC and HTTP and writes metrics and logs to two files.
const collectorConfig = `receivers:
  otlp:
    protocols:
      grpc: {endpoint: "%s"}
      http: {endpoint: "%s"}
exporters:
  file/metrics: {path: "%s", flush_interval: 100ms}
  file/logs: {path: "%s", flush_interval: 100ms}
service:
  telemetry:
    metrics: {level: none}
  pipelines:
    metrics: {receivers: [otlp], exporters: [file/metrics]}
    logs: {receivers: [otlp], exporters: [file/logs]}
`

// startCollector runs the collector on free loopback ports and returns once both receivers
// accept connections.
func startCollector(t *testing.T) *collector {
	t.Helper()
	bin := otelcolBinary(t)
	dir := t.TempDir()
	c := &collector{
		grpc:        fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		http:        fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		metricsFile: filepath.Join(dir, "metrics.jsonl"),
		logsFile:    filepath.Join(dir, "logs.jsonl"),
	}
	cfg := filepath.Join(dir, "otelcol.yaml")
	body := fmt.Sprintf(collectorConfig, c.grpc, c.http, c.metricsFile, c.logsFile)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c.p = startPeer(t, "otelcol", dir, bin, "--config="+cfg)
	waitPeer(t, c.p, 30*time.Second, "collector receivers listen", func() error {
		if err := dialable(c.grpc); err != nil {
			return err
		}
		return dialable(c.http)
	})
	return c
}

// otlpMetric is one metric of one resource and scope, as the collector wrote it.
type otlpMetric struct {
	Name     string
	Scope    string
	Resource map[string]string
	Points   []otlpPoint
}

// otlpPoint is one data point: its attributes and its value (for histograms, the count).
type otlpPoint struct {
	Attrs map[string]string
	Value float64
}

// otlpLog is one log record, with its resource's attributes.
type otlpLog struct {
	Resource map[string]string
	Scope    string
	Time     time.Time
	Severity string
	Body     string
	Attrs    map[string]string
}

// otlpKeyValue and otlpAnyValue follow the OTLP JSON encoding (proto3 JSON mapping:
// 64-bit integers are strings).
type otlpKeyValue struct {
	Key   string       `json:"key"`
	Value otlpAnyValue `json:"value"`
}

type otlpAnyValue struct {
	String *string          `json:"stringValue"`
	Int    *json.Number     `json:"intValue"`
	Double *float64         `json:"doubleValue"`
	Bool   *bool            `json:"boolValue"`
	Array  *json.RawMessage `json:"arrayValue"`
	KVList *json.RawMessage `json:"kvlistValue"`
	Bytes  *string          `json:"bytesValue"`
}

// text renders a value the way a test compares it: strings as is, others in Go syntax,
// arrays and maps as their JSON.
func (v otlpAnyValue) text() string {
	switch {
	case v.String != nil:
		return *v.String
	case v.Int != nil:
		return v.Int.String()
	case v.Double != nil:
		return strconv.FormatFloat(*v.Double, 'g', -1, 64)
	case v.Bool != nil:
		return strconv.FormatBool(*v.Bool)
	case v.Array != nil:
		return string(*v.Array)
	case v.KVList != nil:
		return string(*v.KVList)
	case v.Bytes != nil:
		return *v.Bytes
	}
	return ""
}

func attrMap(kvs []otlpKeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.text()
	}
	return m
}

type otlpNumberPoint struct {
	Attributes []otlpKeyValue `json:"attributes"`
	AsDouble   *float64       `json:"asDouble"`
	AsInt      *json.Number   `json:"asInt"`
	Count      *json.Number   `json:"count"` // histograms and summaries
}

type otlpPoints struct {
	DataPoints []otlpNumberPoint `json:"dataPoints"`
}

type otlpMetricsDoc struct {
	ResourceMetrics []struct {
		Resource struct {
			Attributes []otlpKeyValue `json:"attributes"`
		} `json:"resource"`
		ScopeMetrics []struct {
			Scope struct {
				Name string `json:"name"`
			} `json:"scope"`
			Metrics []struct {
				Name                 string      `json:"name"`
				Gauge                *otlpPoints `json:"gauge"`
				Sum                  *otlpPoints `json:"sum"`
				Histogram            *otlpPoints `json:"histogram"`
				ExponentialHistogram *otlpPoints `json:"exponentialHistogram"`
				Summary              *otlpPoints `json:"summary"`
			} `json:"metrics"`
		} `json:"scopeMetrics"`
	} `json:"resourceMetrics"`
}

type otlpLogsDoc struct {
	ResourceLogs []struct {
		Resource struct {
			Attributes []otlpKeyValue `json:"attributes"`
		} `json:"resource"`
		ScopeLogs []struct {
			Scope struct {
				Name string `json:"name"`
			} `json:"scope"`
			LogRecords []struct {
				TimeUnixNano   json.Number    `json:"timeUnixNano"`
				SeverityText   string         `json:"severityText"`
				SeverityNumber int            `json:"severityNumber"`
				Body           otlpAnyValue   `json:"body"`
				Attributes     []otlpKeyValue `json:"attributes"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

// readJSONLines decodes each complete JSON document of path in turn with each. A missing
// file is no documents yet; a last document the collector is still writing is left for the
// next read.
func readJSONLines[T any](path string, each func(T)) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	for {
		var doc T
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("decode %s at byte %d: %w", path, dec.InputOffset(), err)
		}
		each(doc)
	}
}

// metrics returns every metric the collector has written so far, in order of arrival.
func (c *collector) metrics() ([]otlpMetric, error) {
	var out []otlpMetric
	err := readJSONLines(c.metricsFile, func(doc otlpMetricsDoc) {
		for _, rm := range doc.ResourceMetrics {
			res := attrMap(rm.Resource.Attributes)
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					om := otlpMetric{Name: m.Name, Scope: sm.Scope.Name, Resource: res}
					for _, pts := range []*otlpPoints{m.Gauge, m.Sum, m.Histogram, m.ExponentialHistogram, m.Summary} {
						if pts == nil {
							continue
						}
						for _, dp := range pts.DataPoints {
							om.Points = append(om.Points, otlpPoint{Attrs: attrMap(dp.Attributes), Value: dp.value()})
						}
					}
					out = append(out, om)
				}
			}
		}
	})
	return out, err
}

func (p otlpNumberPoint) value() float64 {
	var n json.Number
	switch {
	case p.AsDouble != nil:
		return *p.AsDouble
	case p.AsInt != nil:
		n = *p.AsInt
	case p.Count != nil:
		n = *p.Count
	default:
		return 0
	}
	f, _ := n.Float64()
	return f
}

// logs returns every log record the collector has written so far, in order of arrival.
func (c *collector) logs() ([]otlpLog, error) {
	var out []otlpLog
	err := readJSONLines(c.logsFile, func(doc otlpLogsDoc) {
		for _, rl := range doc.ResourceLogs {
			res := attrMap(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, r := range sl.LogRecords {
					ns, _ := r.TimeUnixNano.Int64()
					out = append(out, otlpLog{
						Resource: res, Scope: sl.Scope.Name, Time: time.Unix(0, ns),
						Severity: r.SeverityText, Body: r.Body.text(), Attrs: attrMap(r.Attributes),
					})
				}
			}
		}
	})
	return out, err
}

// hasAll reports whether m holds every key of want with the same value.
func hasAll(m, want map[string]string) bool {
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// findMetrics returns the metrics called name whose resource has every attribute of resource.
func findMetrics(ms []otlpMetric, name string, resource map[string]string) []otlpMetric {
	var out []otlpMetric
	for _, m := range ms {
		if m.Name == name && hasAll(m.Resource, resource) {
			out = append(out, m)
		}
	}
	return out
}

// findPoints returns the data points, among ms, whose attributes include every one of attrs.
func findPoints(ms []otlpMetric, attrs map[string]string) []otlpPoint {
	var out []otlpPoint
	for _, m := range ms {
		for _, p := range m.Points {
			if hasAll(p.Attrs, attrs) {
				out = append(out, p)
			}
		}
	}
	return out
}

// findLogs returns the records whose body contains body and whose attributes include attrs.
func findLogs(ls []otlpLog, body string, attrs map[string]string) []otlpLog {
	var out []otlpLog
	for _, l := range ls {
		if strings.Contains(l.Body, body) && hasAll(l.Attrs, attrs) {
			out = append(out, l)
		}
	}
	return out
}
