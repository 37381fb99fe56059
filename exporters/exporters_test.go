package exporters

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/goleak"

	"github.com/picket-dev/picket/collectors"
	"github.com/picket-dev/picket/internal/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newTelemetry(t testing.TB, cfg config.Exporters, logs io.Writer) *Telemetry {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	res, err := NewResource("n1", "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	tel, err := New(context.Background(), Options{
		Config:   cfg,
		Resource: res,
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
		Version:  "1.2.3",
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
	})
	return tel
}

// scrape GETs /metrics and returns the body.
func scrape(t testing.TB, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func parse(t testing.TB, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, body)
	}
	return fams
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestPrometheusNamesTypesAndHelp(t *testing.T) {
	tel := newTelemetry(t, config.Exporters{Prometheus: config.Prometheus{Enabled: true}}, nil)
	m := tel.MeterProvider().Meter("github.com/picket-dev/picket/checks")
	ctx := context.Background()

	dur, err := m.Float64Histogram("picket.check.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of check runs."),
		metric.WithExplicitBucketBoundaries(0.01, 0.1, 1, 10))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := m.Int64Counter("picket.check.runs", metric.WithUnit("{run}"), metric.WithDescription("Check runs."))
	if err != nil {
		t.Fatal(err)
	}
	up, err := m.Int64Gauge("picket.check.up", metric.WithDescription("1 when the check passes."))
	if err != nil {
		t.Fatal(err)
	}
	bytesIn, err := m.Int64Counter("picket.api.received", metric.WithUnit("By"), metric.WithDescription("Bytes received."))
	if err != nil {
		t.Fatal(err)
	}
	attrs := metric.WithAttributes(attribute.String("check", "api"), attribute.String("node", "n1"))
	dur.Record(ctx, 0.05, attrs)
	runs.Add(ctx, 2, metric.WithAttributes(attribute.String("check", "api"), attribute.String("result", "passing")))
	up.Record(ctx, 1, attrs)
	bytesIn.Add(ctx, 10)

	fams := parse(t, scrape(t, tel.Handler()))
	cases := []struct {
		name string
		typ  dto.MetricType
		help string
	}{
		{"picket_check_duration_seconds", dto.MetricType_HISTOGRAM, "Duration of check runs."},
		{"picket_check_runs_total", dto.MetricType_COUNTER, "Check runs."},
		{"picket_check_up", dto.MetricType_GAUGE, "1 when the check passes."},
		{"picket_api_received_bytes_total", dto.MetricType_COUNTER, "Bytes received."},
		{"picket_build_info", dto.MetricType_GAUGE, ""},
		{"target_info", dto.MetricType_GAUGE, "Target metadata"},
		{"go_goroutines", dto.MetricType_GAUGE, ""},
		{"process_cpu_seconds_total", dto.MetricType_COUNTER, ""},
		{"promhttp_metric_handler_requests_total", dto.MetricType_COUNTER, ""},
	}
	for _, c := range cases {
		f, ok := fams[c.name]
		if !ok {
			t.Errorf("no %s in exposition", c.name)
			continue
		}
		if f.GetType() != c.typ {
			t.Errorf("%s: type %v, want %v", c.name, f.GetType(), c.typ)
		}
		if c.help != "" && f.GetHelp() != c.help {
			t.Errorf("%s: HELP %q, want %q", c.name, f.GetHelp(), c.help)
		}
	}
	for name := range fams {
		if strings.Contains(name, "otel_scope") {
			t.Errorf("scope info metric %s present", name)
		}
	}
	if got := fams["picket_check_runs_total"].GetMetric()[0]; label(got, "check") != "api" || label(got, "otel_scope_name") != "" {
		t.Errorf("picket_check_runs_total labels = %v", got.GetLabel())
	}
	if h := fams["picket_check_duration_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 1 || len(h.GetBucket()) != 5 {
		t.Errorf("histogram = %v", h)
	}

	bi := fams["picket_build_info"].GetMetric()
	if len(bi) != 1 || bi[0].GetGauge().GetValue() != 1 || label(bi[0], "version") != "1.2.3" ||
		!strings.HasPrefix(label(bi[0], "goversion"), "go") || label(bi[0], "revision") == "" {
		t.Errorf("picket_build_info = %v", bi)
	}
	ti := fams["target_info"].GetMetric()
	if len(ti) != 1 || label(ti[0], "service_name") != "picket" || label(ti[0], "picket_node") != "n1" ||
		label(ti[0], "service_instance_id") != "n1" || label(ti[0], "service_version") != "1.2.3" {
		t.Errorf("target_info = %v", ti)
	}
	if _, ok := fams["picket_exporter_export_failures_total"]; ok {
		t.Error("export failures reported without OTLP")
	}
}

func TestPrometheusDisabled(t *testing.T) {
	tel := newTelemetry(t, config.Exporters{}, nil)
	if tel.Handler() != nil {
		t.Error("Handler() != nil with prometheus disabled")
	}
	if tel.MeterProvider() == nil {
		t.Error("no MeterProvider")
	}
}

func TestCardinalityLimitOverflow(t *testing.T) {
	tel := newTelemetry(t, config.Exporters{Prometheus: config.Prometheus{Enabled: true}}, nil)
	c, err := tel.MeterProvider().Meter("t").Int64Counter("picket.test.events")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range CardinalityLimit + 50 {
		c.Add(ctx, 1, metric.WithAttributes(attribute.Int("i", i)))
	}
	f := parse(t, scrape(t, tel.Handler()))["picket_test_events_total"]
	if f == nil {
		t.Fatal("no picket_test_events_total")
	}
	var total float64
	overflow := 0
	for _, m := range f.GetMetric() {
		total += m.GetCounter().GetValue()
		if label(m, "otel_metric_overflow") == "true" {
			overflow++
		}
	}
	if len(f.GetMetric()) != CardinalityLimit || overflow != 1 || total != CardinalityLimit+50 {
		t.Errorf("series = %d, overflow series = %d, total = %v; want %d, 1, %d", len(f.GetMetric()), overflow, total, CardinalityLimit, CardinalityLimit+50)
	}
}

func TestShutdownIdempotent(t *testing.T) {
	tel := newTelemetry(t, config.Exporters{Prometheus: config.Prometheus{Enabled: true}}, nil)
	ctx := context.Background()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("first Shutdown: %v", err)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestNewResource(t *testing.T) {
	res, err := NewResource("web-1", "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range res.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	host, _ := os.Hostname()
	for k, want := range map[string]string{
		"service.name": "picket", "service.version": "0.1.0", "service.instance.id": "web-1",
		"picket.node": "web-1", "host.name": host, "telemetry.sdk.language": "go",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	if _, err := NewResource("", "1"); err == nil || !strings.Contains(err.Error(), "node_name") {
		t.Errorf("empty node: err = %v", err)
	}
}

// fullSetup wires collectors into the Prometheus exporter, as the agent does, and
// collects once.
func fullSetup(t testing.TB) (*Telemetry, int) {
	t.Helper()
	tel := newTelemetry(t, config.Exporters{Prometheus: config.Prometheus{Enabled: true}}, nil)
	set, err := collectors.New(config.Collectors{Interval: config.Duration(time.Hour), HostRoot: "/"},
		tel.MeterProvider().Meter("github.com/picket-dev/picket/collectors"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- set.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// Run collects at once; wait until the first snapshot is visible.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(scrape(t, tel.Handler()), "system_uptime_seconds") {
		if time.Now().After(deadline) {
			t.Fatal("no host metrics within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	series := 0
	for _, line := range strings.Split(scrape(t, tel.Handler()), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			series++
		}
	}
	return tel, series
}

func TestHostMetricNames(t *testing.T) {
	tel, _ := fullSetup(t)
	fams := parse(t, scrape(t, tel.Handler()))
	for name, typ := range map[string]dto.MetricType{
		"system_cpu_time_seconds_total":            dto.MetricType_COUNTER,
		"system_cpu_logical_cpus":                  dto.MetricType_GAUGE,
		"system_cpu_load_average_1m":               dto.MetricType_GAUGE,
		"system_memory_usage_bytes":                dto.MetricType_GAUGE,
		"system_memory_utilization_ratio":          dto.MetricType_GAUGE,
		"system_memory_limit_bytes":                dto.MetricType_GAUGE,
		"system_paging_usage_bytes":                dto.MetricType_GAUGE,
		"system_filesystem_usage_bytes":            dto.MetricType_GAUGE,
		"system_filesystem_utilization_ratio":      dto.MetricType_GAUGE,
		"system_disk_io_bytes_total":               dto.MetricType_COUNTER,
		"system_disk_operations_total":             dto.MetricType_COUNTER,
		"system_disk_io_time_seconds_total":        dto.MetricType_COUNTER,
		"system_network_io_bytes_total":            dto.MetricType_COUNTER,
		"system_network_packet_count_total":        dto.MetricType_COUNTER,
		"system_network_errors_total":              dto.MetricType_COUNTER,
		"system_network_packet_dropped_total":      dto.MetricType_COUNTER,
		"system_uptime_seconds":                    dto.MetricType_GAUGE,
		"picket_node_load":                         dto.MetricType_GAUGE,
		"picket_collector_duration_seconds":        dto.MetricType_GAUGE,
		"picket_collector_errors_total":            dto.MetricType_COUNTER,
		"picket_build_info":                        dto.MetricType_GAUGE,
		"system_disk_operation_time_seconds_total": dto.MetricType_COUNTER,
	} {
		f, ok := fams[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s: type %v, want %v", name, f.GetType(), typ)
		}
	}
	cpu := fams["system_cpu_time_seconds_total"].GetMetric()[0]
	if label(cpu, "cpu_mode") == "" || label(cpu, "cpu_logical_number") == "" {
		t.Errorf("system_cpu_time_seconds_total labels = %v", cpu.GetLabel())
	}
}

// TestPromtoolCheckMetrics lints the whole /metrics output of collectors plus exporters.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool not on PATH, and CI is set: %v", err)
		}
		t.Skip("promtool not on PATH")
	}
	tel, _ := fullSetup(t)
	body := scrape(t, tel.Handler())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		path := filepath.Join(t.TempDir(), "metrics.txt")
		_ = os.WriteFile(path, []byte(body), 0o644)
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	if out.Len() != 0 {
		t.Errorf("promtool check metrics reported:\n%s", out.String())
	}
}

// BenchmarkScrape measures one GET /metrics with every collector registered.
func BenchmarkScrape(b *testing.B) {
	tel, series := fullSetup(b)
	h := tel.Handler()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
	b.ReportMetric(float64(series), "series")
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// counterValue returns the value of the series of name carrying label k=v in body.
func counterValue(t testing.TB, body, name, k, v string) (float64, bool) {
	t.Helper()
	f := parse(t, body)[name]
	for _, m := range f.GetMetric() {
		if label(m, k) == v {
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// BenchmarkScrapePrometheus measures a scrape as Prometheus sends it: its Accept header and
// Accept-Encoding: gzip.
func BenchmarkScrapePrometheus(b *testing.B) {
	tel, series := fullSetup(b)
	h := tel.Handler()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", prometheusAccept)
	req.Header.Set("Accept-Encoding", "gzip")
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
	b.ReportMetric(float64(series), "series")
}
