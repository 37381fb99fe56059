package exporters

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// bridgeScopeName is the scope of the OpenCensus/Prometheus bridge, whose metrics the OTel
// Prometheus exporter refuses (they would come back to Prometheus twice).
const bridgeScopeName = "go.opentelemetry.io/contrib/bridges/prometheus"

// renderer turns the SDK's metrics into Prometheus metric families exactly as the OTel
// Prometheus exporter (go.opentelemetry.io/otel/exporters/prometheus) does with the
// UnderscoreEscapingWithSuffixes strategy and WithoutScopeInfo: the same names, HELP, TYPE,
// labels (sanitized, duplicates joined with ";", sorted), target_info, series order and
// error rules. What it avoids is the exporter's per-scrape work: a client_golang Desc and
// const metric per series, the registry's consistency checks and the protobuf structures
// the text encoder reads. Names and rendered label sets are cached between scrapes (label
// sets by attribute.Distinct, dropped once unused), and the SDK's ResourceMetrics is reused.
//
// The exporter's golden rules it keeps: the first type and HELP seen for a name win (a later
// instrument of another type under that name is dropped and counted as an error); a series
// whose attributes cannot be turned into labels, or that repeats another's labels, is dropped
// and counted. Exemplars are not rendered: the text format has no place for them.
//
// A renderer is not safe for concurrent use: its owner holds mu around collect and around
// every use of the families collect returns, which point into the renderer's own memory.
type renderer struct {
	reader      *sdkmetric.ManualReader
	metricNamer otlptranslator.MetricNamer
	labelNamer  otlptranslator.LabelNamer

	mu sync.Mutex // guards everything below, and the families collect returns

	rm           metricdata.ResourceMetrics // reused: the SDK keeps its slices between collections
	names        map[nameKey]nameResult
	families     map[string]*family // by Prometheus name; holds each name's first type and HELP
	labels       map[attribute.Distinct]*labelSet
	gen          uint64 // collections so far
	used         int    // label sets used by the current collection
	out          []*family
	target       *family // target_info; nil before the first collection or when it cannot be built
	targetLabels *labelSet
	targetOK     bool // target_info was tried
	bridged      bool // the bridge-scope error was reported
}

func newRenderer(reader *sdkmetric.ManualReader) *renderer {
	strategy := otlptranslator.UnderscoreEscapingWithSuffixes
	return &renderer{
		reader:      reader,
		metricNamer: otlptranslator.NewMetricNamer("", strategy),
		labelNamer:  otlptranslator.LabelNamer{UTF8Allowed: !strategy.ShouldEscape()},
		names:       make(map[nameKey]nameResult),
		families:    make(map[string]*family),
		labels:      make(map[attribute.Distinct]*labelSet),
	}
}

type nameKey struct {
	name, unit string
	typ        otlptranslator.MetricType
}

type nameResult struct {
	name string
	err  error
}

// labelSet is one attribute set rendered as Prometheus labels. It never changes once built.
type labelSet struct {
	names, values []string // sorted by name
	inner         string   // `a="x",b="y"`: what goes between the braces of a sample line
	order         string   // sorts as client_golang's MetricSorter (see sortKey)
	err           error    // the set cannot be turned into labels; its series are dropped
	gen           uint64   // last collection that used it; owned by the renderer
}

// family is one Prometheus metric family of the current collection.
type family struct {
	name     string
	help     string // as given; the text path writes helpText
	helpText string // help escaped for a HELP line
	typ      dto.MetricType

	gen    uint64 // collection whose points these are
	listed bool   // already in renderer.out for gen
	points []point
}

// point is one series: a counter or gauge value, or a histogram.
type point struct {
	ls    *labelSet
	value float64 // counter or gauge value; histogram sum

	// Histograms only.
	count  uint64
	bounds []float64 // explicit bucket bounds (owned by the renderer's ResourceMetrics)
	counts []uint64  // per-bucket counts, len(bounds)+1
	native *nativeHist
}

// nativeHist is an exponential histogram point, kept for the protobuf path; the text format
// shows it as its +Inf bucket, sum and count, as the exporter's output does.
type nativeHist struct {
	scale         int32
	zeroCount     uint64
	zeroThreshold float64
	pos, neg      metricdata.ExponentialBucket
	start         time.Time
}

// collect reads the SDK and returns the families that have series, sorted by name, each
// with its series sorted as client_golang's registry sorts them. The error joins every
// metric or series dropped; the families are still usable. The caller holds r.mu until it
// is done with the families.
func (r *renderer) collect(ctx context.Context) ([]*family, error) {
	r.gen++
	r.used = 0
	r.out = r.out[:0]
	var errs []error
	if err := r.reader.Collect(ctx, &r.rm); err != nil {
		if errors.Is(err, sdkmetric.ErrReaderShutdown) {
			return nil, nil
		}
		errs = append(errs, fmt.Errorf("collect OpenTelemetry metrics: %w", err))
		if errors.Is(err, sdkmetric.ErrReaderNotRegistered) {
			return nil, errors.Join(errs...)
		}
	}
	r.addTargetInfo(&errs)
	for i := range r.rm.ScopeMetrics {
		sm := &r.rm.ScopeMetrics[i]
		if sm.Scope.Name == bridgeScopeName {
			if !r.bridged {
				r.bridged = true
				errs = append(errs, errors.New("metrics of the Prometheus bridge scope are not exported to Prometheus"))
			}
			continue
		}
		for j := range sm.Metrics {
			r.addMetric(&sm.Metrics[j], &errs)
		}
	}
	for _, f := range r.out {
		f.finish(&errs)
	}
	slices.SortFunc(r.out, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	r.sweepLabels()
	return r.out, errors.Join(errs...)
}

// addTargetInfo adds target_info, built from the resource on the first collection; if the
// resource's attributes cannot be labels, target_info is left out for good, as the exporter does.
func (r *renderer) addTargetInfo(errs *[]error) {
	if !r.targetOK {
		r.targetOK = true
		res := r.rm.Resource
		if res == nil {
			return
		}
		ls := r.buildLabels(*res.Set())
		if ls.err != nil {
			*errs = append(*errs, fmt.Errorf("target_info left out: %w", ls.err))
			return
		}
		f := r.familyFor(otlptranslator.TargetInfoMetricName, "Target metadata", dto.MetricType_GAUGE)
		r.target = f
		r.targetLabels = ls
	}
	if r.target == nil {
		return
	}
	r.touch(r.target)
	r.target.points = append(r.target.points, point{ls: r.targetLabels, value: 1})
}

// familyFor returns the family named name, creating it with typ and help when new.
func (r *renderer) familyFor(name, help string, typ dto.MetricType) *family {
	f := r.families[name]
	if f == nil {
		f = &family{name: name, help: help, helpText: helpEscaper.Replace(help), typ: typ}
		r.families[name] = f
	}
	return f
}

// touch readies f for points of the current collection.
func (r *renderer) touch(f *family) {
	if f.gen != r.gen {
		f.gen = r.gen
		f.points = f.points[:0]
		f.listed = false
	}
	if !f.listed {
		f.listed = true
		r.out = append(r.out, f)
	}
}

func (r *renderer) addMetric(m *metricdata.Metrics, errs *[]error) {
	typ, naming, ok := typesOf(m.Data)
	if !ok {
		*errs = append(*errs, fmt.Errorf("metric %s: data of type %T cannot be exported to Prometheus", m.Name, m.Data))
		return
	}
	name, err := r.promName(m.Name, m.Unit, naming)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("metric %s: %w", m.Name, err))
		return
	}
	f := r.familyFor(name, m.Description, typ)
	if f.typ != typ {
		*errs = append(*errs, fmt.Errorf("metric %s: dropped: %s is already a %s", m.Name, name, strings.ToLower(f.typ.String())))
		return
	}
	if f == r.target {
		*errs = append(*errs, fmt.Errorf("metric %s: dropped: %s is reserved for the resource", m.Name, name))
		return
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for i := range d.DataPoints {
			r.addValue(f, d.DataPoints[i].Attributes, float64(d.DataPoints[i].Value), errs)
		}
	case metricdata.Sum[float64]:
		for i := range d.DataPoints {
			r.addValue(f, d.DataPoints[i].Attributes, d.DataPoints[i].Value, errs)
		}
	case metricdata.Gauge[int64]:
		for i := range d.DataPoints {
			r.addValue(f, d.DataPoints[i].Attributes, float64(d.DataPoints[i].Value), errs)
		}
	case metricdata.Gauge[float64]:
		for i := range d.DataPoints {
			r.addValue(f, d.DataPoints[i].Attributes, d.DataPoints[i].Value, errs)
		}
	case metricdata.Histogram[int64]:
		addHistogram(r, f, d, errs)
	case metricdata.Histogram[float64]:
		addHistogram(r, f, d, errs)
	case metricdata.ExponentialHistogram[int64]:
		addExponential(r, f, d, errs)
	case metricdata.ExponentialHistogram[float64]:
		addExponential(r, f, d, errs)
	}
}

func (r *renderer) addValue(f *family, attrs attribute.Set, v float64, errs *[]error) {
	ls, ok := r.labelsFor(f, attrs, errs)
	if !ok {
		return
	}
	r.touch(f)
	f.points = append(f.points, point{ls: ls, value: v})
}

func addHistogram[N int64 | float64](r *renderer, f *family, h metricdata.Histogram[N], errs *[]error) {
	for i := range h.DataPoints {
		dp := &h.DataPoints[i]
		ls, ok := r.labelsFor(f, dp.Attributes, errs)
		if !ok {
			continue
		}
		r.touch(f)
		f.points = append(f.points, point{ls: ls, value: float64(dp.Sum), count: dp.Count, bounds: dp.Bounds, counts: dp.BucketCounts})
	}
}

func addExponential[N int64 | float64](r *renderer, f *family, h metricdata.ExponentialHistogram[N], errs *[]error) {
	for i := range h.DataPoints {
		dp := &h.DataPoints[i]
		ls, ok := r.labelsFor(f, dp.Attributes, errs)
		if !ok {
			continue
		}
		r.touch(f)
		f.points = append(f.points, point{ls: ls, value: float64(dp.Sum), count: dp.Count, native: &nativeHist{
			scale: dp.Scale, zeroCount: dp.ZeroCount, zeroThreshold: dp.ZeroThreshold,
			pos: dp.PositiveBucket, neg: dp.NegativeBucket, start: dp.StartTime,
		}})
	}
}

// typesOf returns the Prometheus type of an aggregation and its type for naming.
func typesOf(data metricdata.Aggregation) (dto.MetricType, otlptranslator.MetricType, bool) {
	switch d := data.(type) {
	case metricdata.Sum[int64]:
		return sumTypes(d.IsMonotonic)
	case metricdata.Sum[float64]:
		return sumTypes(d.IsMonotonic)
	case metricdata.Gauge[int64], metricdata.Gauge[float64]:
		return dto.MetricType_GAUGE, otlptranslator.MetricTypeGauge, true
	case metricdata.Histogram[int64], metricdata.Histogram[float64],
		metricdata.ExponentialHistogram[int64], metricdata.ExponentialHistogram[float64]:
		return dto.MetricType_HISTOGRAM, otlptranslator.MetricTypeHistogram, true
	}
	return 0, otlptranslator.MetricTypeUnknown, false
}

func sumTypes(monotonic bool) (dto.MetricType, otlptranslator.MetricType, bool) {
	if monotonic {
		return dto.MetricType_COUNTER, otlptranslator.MetricTypeMonotonicCounter, true
	}
	return dto.MetricType_GAUGE, otlptranslator.MetricTypeNonMonotonicCounter, true
}

// promName returns the Prometheus name of an instrument, with promRenames applied.
func (r *renderer) promName(name, unit string, typ otlptranslator.MetricType) (string, error) {
	k := nameKey{name: name, unit: unit, typ: typ}
	if res, ok := r.names[k]; ok {
		return res.name, res.err
	}
	n, err := r.metricNamer.Build(otlptranslator.Metric{Name: name, Unit: unit, Type: typ})
	if err == nil && !model.LegacyValidation.IsValidMetricName(n) {
		err = fmt.Errorf("%q is not a valid Prometheus metric name", n)
	}
	if to, ok := promRenames(n); ok {
		n = to
	}
	r.names[k] = nameResult{name: n, err: err}
	return n, err
}

// labelsFor returns the labels of attrs, or reports why a series of f is dropped.
func (r *renderer) labelsFor(f *family, attrs attribute.Set, errs *[]error) (*labelSet, bool) {
	k := attrs.Equivalent()
	ls := r.labels[k]
	if ls == nil {
		ls = r.buildLabels(attrs)
		r.labels[k] = ls
	}
	if ls.gen != r.gen {
		ls.gen = r.gen
		r.used++
	}
	if ls.err != nil {
		*errs = append(*errs, fmt.Errorf("series of %s dropped: %w", f.name, ls.err))
		return nil, false
	}
	return ls, true
}

// buildLabels turns an attribute set into labels as the exporter's getAttrs and
// client_golang's NewDesc and NewConstMetric do: names sanitized, values of names that
// collide joined with ";" in sorted order, names sorted; a name starting with "__" or a value
// that is not UTF-8 makes the set unusable.
func (r *renderer) buildLabels(attrs attribute.Set) *labelSet {
	ls := &labelSet{}
	n := attrs.Len()
	if n == 0 {
		return ls
	}
	ls.names = make([]string, 0, n)
	ls.values = make([]string, 0, n)
	var joined map[string][]string // sanitized name → values, only when names collide
	for it := attrs.Iter(); it.Next(); {
		kv := it.Attribute()
		name, err := r.labelNamer.Build(string(kv.Key))
		if err != nil {
			ls.err = err
			return ls
		}
		v := kv.Value.String()
		if i := slices.Index(ls.names, name); i >= 0 {
			if joined == nil {
				joined = make(map[string][]string)
			}
			if joined[name] == nil {
				joined[name] = []string{ls.values[i]}
			}
			joined[name] = append(joined[name], v)
			continue
		}
		ls.names = append(ls.names, name)
		ls.values = append(ls.values, v)
	}
	for i, name := range ls.names {
		if vs := joined[name]; vs != nil {
			slices.Sort(vs)
			ls.values[i] = strings.Join(vs, ";")
		}
	}
	idx := make([]int, len(ls.names))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(ls.names[a], ls.names[b]) })
	names, values := make([]string, len(idx)), make([]string, len(idx))
	for i, j := range idx {
		names[i], values[i] = ls.names[j], ls.values[j]
	}
	ls.names, ls.values = names, values

	var b strings.Builder
	for i, name := range ls.names {
		if strings.HasPrefix(name, model.ReservedLabelPrefix) {
			ls.err = fmt.Errorf("%q is not a valid label name (the %q prefix is reserved)", name, model.ReservedLabelPrefix)
			return ls
		}
		if !utf8.ValidString(ls.values[i]) {
			ls.err = fmt.Errorf("value of label %q is not valid UTF-8: %q", name, ls.values[i])
			return ls
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(valueEscaper.Replace(ls.values[i]))
		b.WriteByte('"')
	}
	ls.inner = b.String()
	ls.order = sortKey(ls.values)
	return ls
}

// sortKey encodes values so that comparing keys orders label sets as client_golang's
// MetricSorter does (fewer labels first, then values in label-name order) with one string
// comparison: the count, then each value followed by a 0 byte, which sorts below every other
// byte (a value holding a 0 byte may sort differently; the order is cosmetic).
func sortKey(values []string) string {
	n := 1
	for _, v := range values {
		n += len(v) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, byte(min(len(values), 255)))
	for _, v := range values {
		b = append(b, v...)
		b = append(b, 0)
	}
	return string(b)
}

// sweepLabels forgets label sets no collection has used lately, once they outnumber the
// ones in use.
func (r *renderer) sweepLabels() {
	if len(r.labels) <= 2*r.used+64 {
		return
	}
	for k, ls := range r.labels {
		if ls.gen != r.gen {
			delete(r.labels, k)
		}
	}
}

// finish sorts f's series as client_golang's registry does (by label values in label-name
// order) and drops each series that repeats another's labels.
func (f *family) finish(errs *[]error) {
	slices.SortFunc(f.points, func(a, b point) int {
		if c := strings.Compare(a.ls.order, b.ls.order); c != 0 {
			return c
		}
		return strings.Compare(a.ls.inner, b.ls.inner) // equal values: names break the tie
	})
	kept := f.points[:0]
	for i := range f.points {
		if len(kept) > 0 && kept[len(kept)-1].ls.inner == f.points[i].ls.inner {
			*errs = append(*errs, fmt.Errorf("series %s{%s} dropped: it was collected before with the same labels", f.name, f.points[i].ls.inner))
			continue
		}
		kept = append(kept, f.points[i])
	}
	clear(f.points[len(kept):])
	f.points = kept
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	valueEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// writeText writes f in the Prometheus text format, byte for byte what
// expfmt.MetricFamilyToText writes for the family the exporter would produce.
func (f *family) writeText(b *bytes.Buffer) {
	b.WriteString("# HELP ")
	b.WriteString(f.name)
	b.WriteByte(' ')
	b.WriteString(f.helpText)
	b.WriteString("\n# TYPE ")
	b.WriteString(f.name)
	switch f.typ {
	case dto.MetricType_COUNTER:
		b.WriteString(" counter\n")
	case dto.MetricType_HISTOGRAM:
		b.WriteString(" histogram\n")
	default:
		b.WriteString(" gauge\n")
	}
	for i := range f.points {
		p := &f.points[i]
		if f.typ != dto.MetricType_HISTOGRAM {
			writeSample(b, f.name, "", p.ls.inner, false, 0, p.value)
			continue
		}
		var cum uint64
		infSeen := false
		for j, bound := range p.bounds {
			if j < len(p.counts) {
				cum += p.counts[j]
			}
			writeSample(b, f.name, "_bucket", p.ls.inner, true, bound, float64(cum))
			infSeen = infSeen || math.IsInf(bound, +1)
		}
		if !infSeen {
			writeSample(b, f.name, "_bucket", p.ls.inner, true, math.Inf(+1), float64(p.count))
		}
		writeSample(b, f.name, "_sum", p.ls.inner, false, 0, p.value)
		writeSample(b, f.name, "_count", p.ls.inner, false, 0, float64(p.count))
	}
}

// writeSample writes one sample line; le adds the bucket label after the others.
func writeSample(b *bytes.Buffer, name, suffix, inner string, withLE bool, le, v float64) {
	b.WriteString(name)
	b.WriteString(suffix)
	if inner != "" || withLE {
		b.WriteByte('{')
		b.WriteString(inner)
		if withLE {
			if inner != "" {
				b.WriteByte(',')
			}
			b.WriteString(`le="`)
			writeFloat(b, le)
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	writeFloat(b, v)
	b.WriteByte('\n')
}

// writeFloat formats v as expfmt does.
func writeFloat(b *bytes.Buffer, v float64) {
	switch {
	case v == 1:
		b.WriteByte('1')
	case v == 0:
		b.WriteByte('0')
	case v == -1:
		b.WriteString("-1")
	case math.IsNaN(v):
		b.WriteString("NaN")
	case math.IsInf(v, +1):
		b.WriteString("+Inf")
	case math.IsInf(v, -1):
		b.WriteString("-Inf")
	default:
		b.Write(strconv.AppendFloat(b.AvailableBuffer(), v, 'g', -1, 64))
	}
}

// toDTO builds f as the client_golang metric family the exporter would produce, through
// client_golang's own constructors; used for formats other than text (protobuf), where
// speed matters less than fidelity.
func (f *family) toDTO() (*dto.MetricFamily, error) {
	mf := &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: f.typ.Enum()}
	var errs []error
	for i := range f.points {
		p := &f.points[i]
		desc := prometheus.NewDesc(f.name, f.help, p.ls.names, nil)
		var m prometheus.Metric
		var err error
		switch {
		case f.typ == dto.MetricType_COUNTER:
			m, err = prometheus.NewConstMetric(desc, prometheus.CounterValue, p.value, p.ls.values...)
		case f.typ == dto.MetricType_GAUGE:
			m, err = prometheus.NewConstMetric(desc, prometheus.GaugeValue, p.value, p.ls.values...)
		case p.native != nil:
			m, err = p.native.metric(desc, p)
		default:
			buckets := make(map[float64]uint64, len(p.bounds))
			var cum uint64
			for j, bound := range p.bounds {
				if j < len(p.counts) {
					cum += p.counts[j]
				}
				buckets[bound] = cum
			}
			m, err = prometheus.NewConstHistogram(desc, p.count, p.value, buckets, p.ls.values...)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("series %s{%s} dropped: %w", f.name, p.ls.inner, err))
			continue
		}
		dm := &dto.Metric{}
		if err := m.Write(dm); err != nil {
			errs = append(errs, fmt.Errorf("series %s{%s} dropped: %w", f.name, p.ls.inner, err))
			continue
		}
		mf.Metric = append(mf.Metric, dm)
	}
	return mf, errors.Join(errs...)
}

// metric builds the native histogram as the exporter's addExponentialHistogramMetric does:
// scales below -4 are refused, scales above 8 are reduced to 8 by merging buckets.
func (h *nativeHist) metric(desc *prometheus.Desc, p *point) (prometheus.Metric, error) {
	scale := h.scale
	if scale < -4 {
		return nil, fmt.Errorf("exponential histogram scale %d is below -4, which Prometheus cannot represent", scale)
	}
	pos, neg := h.pos, h.neg
	if scale > 8 {
		pos, neg = downscale(pos, scale-8), downscale(neg, scale-8)
		scale = 8
	}
	toMap := func(b metricdata.ExponentialBucket) (map[int]int64, error) {
		out := make(map[int]int64, len(b.Counts))
		for i, c := range b.Counts {
			if c > math.MaxInt64 {
				return nil, fmt.Errorf("bucket count %d is too large for int64", c)
			}
			out[int(b.Offset)+i+1] = int64(c)
		}
		return out, nil
	}
	pm, err := toMap(pos)
	if err != nil {
		return nil, err
	}
	nm, err := toMap(neg)
	if err != nil {
		return nil, err
	}
	return prometheus.NewConstNativeHistogram(desc, p.count, p.value, pm, nm, h.zeroCount, scale, h.zeroThreshold,
		h.start, p.ls.values...)
}

// downscale merges buckets to a scale delta steps coarser.
func downscale(b metricdata.ExponentialBucket, delta int32) metricdata.ExponentialBucket {
	out := metricdata.ExponentialBucket{Offset: b.Offset >> delta}
	if len(b.Counts) == 0 {
		return out
	}
	last := (b.Offset + int32(len(b.Counts)) - 1) >> delta
	out.Counts = make([]uint64, int(last-out.Offset+1))
	for i, c := range b.Counts {
		out.Counts[((b.Offset+int32(i))>>delta)-out.Offset] += c
	}
	return out
}
