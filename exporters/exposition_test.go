package exporters

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"
)

// twinReaders builds one MeterProvider feeding both the OTel Prometheus exporter (configured
// as picket used it before the renderer: UnderscoreEscapingWithSuffixes, WithoutScopeInfo)
// on its own registry, and a renderer. picket.test.exp is an exponential histogram.
func twinReaders(t *testing.T) (*sdkmetric.MeterProvider, *prometheus.Registry, *renderer) {
	t.Helper()
	res, err := NewResource("n1", "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		t.Fatal(err)
	}
	mine := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(exp),
		sdkmetric.WithReader(mine),
		sdkmetric.WithView(sdkmetric.NewView(sdkmetric.Instrument{Name: "picket.test.exp"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}})),
	)
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp, reg, newRenderer(mine)
}

// recordEverything records on every kind of instrument, with attributes that need
// sanitizing, joining and escaping, and a few series the exporter must drop.
func recordEverything(t *testing.T, mp metric.MeterProvider) {
	t.Helper()
	ctx := context.Background()
	m := mp.Meter("github.com/picket-dev/picket/a")
	m2 := mp.Meter("github.com/picket-dev/picket/b")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	str, integer := attribute.String, attribute.Int

	c, err := m.Int64Counter("picket.test.requests", metric.WithUnit("{request}"), metric.WithDescription("Requests,\nby \\ kind."))
	must(err)
	c.Add(ctx, 3, metric.WithAttributes(str("http.method", "GET"), str("a-b", `quo"te`), str("1st", "x")))
	c.Add(ctx, 5, metric.WithAttributes(str("http.method", "POST"), str("a-b", "back\\slash"), str("1st", "new\nline")))
	c.Add(ctx, 7, metric.WithAttributes(str("a.b", "x"), str("a_b", "y"), str("ünï", "ç")))
	c.Add(ctx, 1, metric.WithAttributes(str("bad", "\xff")))                                      // not UTF-8: dropped
	c.Add(ctx, 2, metric.WithAttributes(integer("n", 1)))                                         // these two render alike:
	c.Add(ctx, 2, metric.WithAttributes(str("n", "1")))                                           // one is dropped
	c.Add(ctx, 4, metric.WithAttributes(attribute.Bool("ok", true), attribute.Float64("f", 0.5))) // non-string values
	c.Add(ctx, 9)

	fc, err := m.Float64Counter("picket.test.busy", metric.WithUnit("s"), metric.WithDescription(""))
	must(err)
	fc.Add(ctx, 1.25, metric.WithAttributes(str("check", "api")))
	fc.Add(ctx, 1e21, metric.WithAttributes(str("check", "big")))

	ud, err := m.Int64UpDownCounter("picket.test.queue", metric.WithUnit("By"), metric.WithDescription("Queued bytes."))
	must(err)
	ud.Add(ctx, -12, metric.WithAttributes(str("q", "x")))

	g, err := m.Float64Gauge("picket.test.ratio", metric.WithUnit("1"), metric.WithDescription("A ratio."))
	must(err)
	g.Record(ctx, 0.125)
	g.Record(ctx, -1, metric.WithAttributes(str("k", "neg")))

	og, err := m.Int64ObservableGauge("picket.test.observed", metric.WithDescription("Observed."))
	must(err)
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(og, 42, metric.WithAttributes(str("z", "last")))
		o.ObserveInt64(og, 41, metric.WithAttributes(str("z", "first")))
		return nil
	}, og)
	must(err)

	h, err := m.Float64Histogram("picket.test.duration", metric.WithUnit("s"), metric.WithDescription("Durations."),
		metric.WithExplicitBucketBoundaries(0.01, 0.1, 1, 10))
	must(err)
	for _, v := range []float64{0.005, 0.05, 0.5, 5, 50} {
		h.Record(ctx, v, metric.WithAttributes(str("check", "api")))
	}
	h.Record(ctx, 0.2)
	ih, err := m.Int64Histogram("picket.test.size", metric.WithUnit("By"), metric.WithDescription("Sizes."))
	must(err)
	ih.Record(ctx, 300)

	eh, err := m.Float64Histogram("picket.test.exp", metric.WithUnit("s"), metric.WithDescription("Exponential."))
	must(err)
	for _, v := range []float64{0, 0.001, 0.3, 2, 2.5, 700} {
		eh.Record(ctx, v, metric.WithAttributes(str("kind", "e")))
	}

	// The same Prometheus name from two instruments of one scope: one family, the first HELP.
	d1, err := m.Int64Counter("picket.test.merged", metric.WithDescription("First."))
	must(err)
	d1.Add(ctx, 1, metric.WithAttributes(str("from", "first")))
	d2, err := m.Int64Counter("picket.test.merged", metric.WithDescription("Second."))
	must(err)
	d2.Add(ctx, 2, metric.WithAttributes(str("from", "second")))

	// A second scope with its own names.
	oc, err := m2.Int64Counter("picket.test.other", metric.WithDescription("Other scope."))
	must(err)
	oc.Add(ctx, 6)
}

// TestRendererMatchesOTelExporter pins the renderer to the OTel Prometheus exporter it
// replaces: for the same SDK data, the text of every family is byte for byte what the
// exporter's families encode to, the protobuf families are equal, and both report errors
// for the series they drop. Two collections check the caches.
func TestRendererMatchesOTelExporter(t *testing.T) {
	mp, reg, rnd := twinReaders(t)
	recordEverything(t, mp)
	for round := range 2 {
		want, wantErr := reg.Gather()
		if wantErr == nil {
			t.Fatal("the exporter reported no error; the test data must include dropped series")
		}
		var wantText bytes.Buffer
		for _, mf := range want {
			if _, err := expfmt.MetricFamilyToText(&wantText, mf); err != nil {
				t.Fatal(err)
			}
		}

		rnd.mu.Lock()
		fams, err := rnd.collect(context.Background())
		if err == nil {
			t.Error("renderer reported no error for the dropped series")
		}
		var gotText bytes.Buffer
		var gotDTO []*dto.MetricFamily
		for _, f := range fams {
			f.writeText(&gotText)
			mf, err := f.toDTO()
			if err != nil {
				t.Errorf("toDTO %s: %v", f.name, err)
			}
			gotDTO = append(gotDTO, mf)
		}
		rnd.mu.Unlock()

		if gotText.String() != wantText.String() {
			t.Fatalf("round %d: text differs\n--- renderer:\n%s\n--- exporter:\n%s", round, gotText.String(), wantText.String())
		}
		if len(gotDTO) != len(want) {
			t.Fatalf("round %d: %d protobuf families, exporter %d", round, len(gotDTO), len(want))
		}
		for i := range want {
			clearCreated(want[i])
			clearCreated(gotDTO[i])
			if !proto.Equal(gotDTO[i], want[i]) {
				t.Errorf("round %d: family %s differs\n renderer: %v\n exporter: %v", round, want[i].GetName(), gotDTO[i], want[i])
			}
		}
	}
	if !strings.Contains(rendered(t, rnd), `picket_test_exp_seconds_bucket{kind="e",le="+Inf"} 6`) {
		t.Error("exponential histogram lacks its +Inf bucket")
	}
}

// clearCreated removes created timestamps, which differ between the two readers' pipelines.
func clearCreated(mf *dto.MetricFamily) {
	for _, m := range mf.Metric {
		if m.Histogram != nil {
			m.Histogram.CreatedTimestamp = nil
		}
		if m.Counter != nil {
			m.Counter.CreatedTimestamp = nil
		}
	}
}

// rendered collects rnd and returns its text.
func rendered(t *testing.T, rnd *renderer) string {
	t.Helper()
	rnd.mu.Lock()
	defer rnd.mu.Unlock()
	fams, _ := rnd.collect(context.Background())
	var b bytes.Buffer
	for _, f := range fams {
		f.writeText(&b)
	}
	return b.String()
}

func TestRendererTypeConflictKeepsFirst(t *testing.T) {
	mp, _, rnd := twinReaders(t)
	m := mp.Meter("t")
	ctx := context.Background()
	g, err := m.Int64Gauge("picket.test.clash", metric.WithDescription("gauge"))
	if err != nil {
		t.Fatal(err)
	}
	g.Record(ctx, 1)
	h, err := m.Int64Histogram("picket.test.clash", metric.WithDescription("histogram"))
	if err != nil {
		t.Fatal(err)
	}
	h.Record(ctx, 1)

	rnd.mu.Lock()
	fams, err := rnd.collect(ctx)
	rnd.mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "picket_test_clash is already a gauge") {
		t.Errorf("err = %v, want the histogram dropped as a type conflict", err)
	}
	for _, f := range fams {
		if f.name == "picket_test_clash" && (f.typ != dto.MetricType_GAUGE || len(f.points) != 1) {
			t.Errorf("picket_test_clash: type %v with %d series, want the gauge alone", f.typ, len(f.points))
		}
	}
}

// TestRendererForgetsUnusedLabelSets checks that the label cache does not grow with series
// that come and go (check names, devices).
func TestRendererForgetsUnusedLabelSets(t *testing.T) {
	mp, _, rnd := twinReaders(t)
	m := mp.Meter("t")
	var id int
	g, err := m.Int64ObservableGauge("picket.test.churn")
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, 1, metric.WithAttributes(attribute.Int("id", id)))
		return nil
	}, g)
	if err != nil {
		t.Fatal(err)
	}
	for id = range 500 {
		if !strings.Contains(rendered(t, rnd), `picket_test_churn{id="`) {
			t.Fatal("no picket_test_churn series")
		}
	}
	rnd.mu.Lock()
	n := len(rnd.labels)
	rnd.mu.Unlock()
	if n > 100 {
		t.Errorf("label cache holds %d sets after 500 collections of 1 live series", n)
	}
}

// TestSortKeyOrdersLikeMetricSorter checks sortKey against client_golang's MetricSorter rule:
// fewer labels first, then the values pairwise.
func TestSortKeyOrdersLikeMetricSorter(t *testing.T) {
	sign := func(c int) int { return min(max(c, -1), 1) }
	sorter := func(a, b []string) int {
		if len(a) != len(b) {
			return sign(len(a) - len(b))
		}
		for i := range a {
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
		return 0
	}
	value := rapid.StringMatching(`[a-z\x01é"]{0,3}`)
	rapid.Check(t, func(t *rapid.T) {
		a := rapid.SliceOfN(value, 0, 3).Draw(t, "a")
		b := rapid.SliceOfN(value, 0, 3).Draw(t, "b")
		if got, want := sign(strings.Compare(sortKey(a), sortKey(b))), sorter(a, b); got != want {
			t.Fatalf("sortKey order of %q and %q is %d, MetricSorter %d", a, b, got, want)
		}
	})
}
