package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/picket-dev/picket/internal/config"
)

// promSeries is one exported sample: its family's name and type, its labels without the
// otel_scope_* ones, and its value (the sample count for histograms).
type promSeries struct {
	family, typ string
	labels      map[string]string
	value       float64
	buckets     []float64
}

// gatherChecks gathers reg and returns the picket_check_* series, the families' HELP texts
// and the lint problems of the whole exposition.
func gatherChecks(t *testing.T, reg *prometheus.Registry) ([]promSeries, map[string]string, []string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	var lint []string
	for _, p := range problems {
		lint = append(lint, p.Metric+": "+p.Text)
	}
	var out []promSeries
	help := map[string]string{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "picket_check_") {
			continue
		}
		help[mf.GetName()] = mf.GetHelp()
		for _, m := range mf.GetMetric() {
			s := promSeries{family: mf.GetName(), typ: strings.ToLower(mf.GetType().String()), labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				if !strings.HasPrefix(lp.GetName(), "otel_scope_") {
					s.labels[lp.GetName()] = lp.GetValue()
				}
			}
			switch {
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
				for _, b := range m.GetHistogram().GetBucket() {
					s.buckets = append(s.buckets, b.GetUpperBound())
				}
			}
			out = append(out, s)
		}
	}
	return out, help, lint
}

// labelKeys returns "family{k1,k2} type" for each family, from the series seen.
func labelKeys(series []promSeries) []string {
	seen := map[string]bool{}
	for _, s := range series {
		keys := make([]string, 0, len(s.labels))
		for k := range s.labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		seen[fmt.Sprintf("%s{%s} %s", s.family, strings.Join(keys, ","), s.typ)] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// find returns the value of the series of family whose labels include all of want.
func find(series []promSeries, family string, want map[string]string) (promSeries, bool) {
next:
	for _, s := range series {
		if s.family != family {
			continue
		}
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		return s, true
	}
	return promSeries{}, false
}

func TestMetricsPrometheusNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	defer func() { _ = mp.Shutdown(context.Background()) }()

	expiry := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	probe := func(_ context.Context, c *config.Check) Result {
		if c.Name == "db" {
			return Result{Status: Passing, Output: "ok", Duration: 3 * time.Millisecond}
		}
		return Result{
			Status: Warning, Reason: ReasonCertExpiry, Output: "certificate expires in 20 days",
			Duration: 40 * time.Millisecond, CertExpiry: expiry,
			Phases: []Phase{{"dns", time.Millisecond}, {"connect", 2 * time.Millisecond}, {"tls", 5 * time.Millisecond}},
		}
	}
	s, err := NewScheduler(Options{
		Node: "n1", Probers: map[string]Prober{"fake": probe},
		Meter: mp.Meter("github.com/picket-dev/picket/checks"),
		Rand:  func(int64) int64 { return 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Set([]config.Check{
		schedCheck("web", 10*time.Millisecond, 5*time.Millisecond),
		schedCheck("db", 10*time.Millisecond, 5*time.Millisecond),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	deadline := time.Now().Add(3 * time.Second)
	for {
		snap := s.Snapshot()
		if snap[0].Status != Unknown && snap[1].Status != Unknown {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checks got no state within 3s: %+v", snap)
		}
		time.Sleep(5 * time.Millisecond)
	}

	series, help, lint := gatherChecks(t, reg)
	got := labelKeys(series)
	t.Logf("exported (otel_scope_* labels omitted):\n%s", strings.Join(got, "\n"))
	want := []string{
		"picket_check_cert_expiry_seconds{check} gauge",
		"picket_check_duration_seconds{check,node} histogram",
		"picket_check_flapping{check,node} gauge",
		"picket_check_phase_duration_seconds{check,node,phase} gauge",
		"picket_check_runs_total{check,node,reason,result} counter",
		"picket_check_state{check,node,state} gauge",
		"picket_check_up{check,node} gauge",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("exported families:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for name, h := range help {
		if h == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	for _, p := range lint {
		if strings.HasPrefix(p, "picket_check_") {
			t.Errorf("lint: %s", p)
		}
	}

	checkValue := func(family string, labels map[string]string, want float64) {
		t.Helper()
		s, ok := find(series, family, labels)
		if !ok {
			t.Errorf("no %s%v", family, labels)
			return
		}
		if s.value != want {
			t.Errorf("%s%v = %v, want %v", family, labels, s.value, want)
		}
	}
	web, db := map[string]string{"check": "web", "node": "n1"}, map[string]string{"check": "db", "node": "n1"}
	checkValue("picket_check_up", web, 0)
	checkValue("picket_check_up", db, 1)
	checkValue("picket_check_flapping", web, 0)
	for _, st := range []string{"unknown", "passing", "warning", "critical"} {
		want := 0.0
		if st == "warning" {
			want = 1
		}
		checkValue("picket_check_state", map[string]string{"check": "web", "node": "n1", "state": st}, want)
	}
	checkValue("picket_check_phase_duration_seconds", map[string]string{"check": "web", "node": "n1", "phase": "tls"}, 0.005)
	checkValue("picket_check_cert_expiry_seconds", map[string]string{"check": "web"}, float64(expiry.Unix()))
	if _, ok := find(series, "picket_check_cert_expiry_seconds", map[string]string{"check": "db"}); ok {
		t.Error("cert expiry series for a check that saw no certificate")
	}
	if r, ok := find(series, "picket_check_runs_total",
		map[string]string{"check": "web", "node": "n1", "result": "warning", "reason": "cert_expiry"}); !ok || r.value < 1 {
		t.Errorf("runs_total for web warning/cert_expiry: %+v %v", r, ok)
	}
	if h, ok := find(series, "picket_check_duration_seconds", db); !ok || h.value < 1 ||
		fmt.Sprint(h.buckets) != fmt.Sprint(durationBuckets) {
		t.Errorf("duration histogram for db: %+v, want buckets %v", h, durationBuckets)
	}

	// Removing web removes its gauge series; the cumulative counters and histogram keep theirs.
	s.Set([]config.Check{schedCheck("db", 10*time.Millisecond, 5*time.Millisecond)})
	series, _, _ = gatherChecks(t, reg)
	for _, fam := range []string{"picket_check_up", "picket_check_state", "picket_check_flapping",
		"picket_check_phase_duration_seconds", "picket_check_cert_expiry_seconds"} {
		if _, ok := find(series, fam, map[string]string{"check": "web"}); ok {
			t.Errorf("%s still has a series for the removed check", fam)
		}
	}
	if _, ok := find(series, "picket_check_up", db); !ok {
		t.Error("picket_check_up lost the remaining check's series")
	}
}

// TestMetricsSkippedName checks the skipped counter's exported name, which only appears once a
// run has been skipped.
func TestMetricsSkippedName(t *testing.T) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	cm, err := newCheckMetrics(mp.Meter("github.com/picket-dev/picket/checks"), func() []gaugeSample { return nil })
	if err != nil {
		t.Fatal(err)
	}
	s := &Scheduler{node: "n1"}
	e := s.newEntry(schedCheck("web", time.Second, time.Second), time.Now())
	cm.recordSkip(context.Background(), e.attrs, 2)
	series, help, _ := gatherChecks(t, reg)
	if got := labelKeys(series); fmt.Sprint(got) != "[picket_check_skipped_total{check,node} counter]" {
		t.Errorf("exported %v", got)
	}
	if sk, ok := find(series, "picket_check_skipped_total", map[string]string{"check": "web", "node": "n1"}); !ok || sk.value != 2 {
		t.Errorf("skipped = %+v", sk)
	}
	if help["picket_check_skipped_total"] == "" {
		t.Error("no HELP for picket_check_skipped_total")
	}
}
