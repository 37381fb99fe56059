package checks

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// durationBuckets suit probes between 1 ms and 10 s.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Attribute keys of the check metrics.
const (
	attrCheck  = attribute.Key("check")
	attrNode   = attribute.Key("node")
	attrState  = attribute.Key("state")
	attrPhase  = attribute.Key("phase")
	attrResult = attribute.Key("result")
	attrReason = attribute.Key("reason")
)

// gaugeSample is what the gauge callback needs from one check, copied under the scheduler's
// lock.
type gaugeSample struct {
	attrs      attribute.Set // check, node
	check      string
	node       string
	status     Status
	flapping   bool
	phases     []Phase
	certExpiry float64 // Unix seconds; 0 when the check never saw a certificate
}

// checkMetrics holds the scheduler's instruments. Counters and the histogram are recorded
// as runs finish; the gauges are observable and read the current checks through sample, so a
// removed check's gauge series disappear at the next collection.
//
// Prometheus names through the OTel Prometheus exporter (default translation):
// picket_check_up, picket_check_state, picket_check_flapping,
// picket_check_phase_duration_seconds, picket_check_cert_expiry_seconds (gauges),
// picket_check_duration_seconds (histogram), picket_check_runs_total and
// picket_check_skipped_total (counters).
type checkMetrics struct {
	duration metric.Float64Histogram
	runs     metric.Int64Counter
	skipped  metric.Int64Counter
}

// newCheckMetrics creates the instruments on m and registers the gauge callback, which calls
// sample to get the current checks. sample is called concurrently with everything else and
// must be safe for that. The callback stays registered for the life of m's MeterProvider.
func newCheckMetrics(m metric.Meter, sample func() []gaugeSample) (*checkMetrics, error) {
	var cm checkMetrics
	var err error
	if cm.duration, err = m.Float64Histogram("picket.check.duration",
		metric.WithDescription("Duration of check runs."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, fmt.Errorf("create picket.check.duration histogram: %w", err)
	}
	if cm.runs, err = m.Int64Counter("picket.check.runs",
		metric.WithDescription("Check runs by result (passing, warning, critical) and failure reason."),
		metric.WithUnit("{run}")); err != nil {
		return nil, fmt.Errorf("create picket.check.runs counter: %w", err)
	}
	if cm.skipped, err = m.Int64Counter("picket.check.skipped",
		metric.WithDescription("Scheduled check runs skipped because the previous run of the check was still going or the scheduler fell behind."),
		metric.WithUnit("{run}")); err != nil {
		return nil, fmt.Errorf("create picket.check.skipped counter: %w", err)
	}
	up, err := m.Int64ObservableGauge("picket.check.up",
		metric.WithDescription("1 when the check's state is passing, else 0."))
	if err != nil {
		return nil, fmt.Errorf("create picket.check.up gauge: %w", err)
	}
	state, err := m.Int64ObservableGauge("picket.check.state",
		metric.WithDescription("1 for the check's current state (unknown, passing, warning, critical), 0 for the others."))
	if err != nil {
		return nil, fmt.Errorf("create picket.check.state gauge: %w", err)
	}
	flapping, err := m.Int64ObservableGauge("picket.check.flapping",
		metric.WithDescription("1 while the check is flapping, else 0."))
	if err != nil {
		return nil, fmt.Errorf("create picket.check.flapping gauge: %w", err)
	}
	phase, err := m.Float64ObservableGauge("picket.check.phase.duration",
		metric.WithDescription("Duration of each phase (dns, connect, tls, processing, transfer) of the check's last run."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, fmt.Errorf("create picket.check.phase.duration gauge: %w", err)
	}
	cert, err := m.Float64ObservableGauge("picket.check.cert.expiry",
		metric.WithDescription("Unix time at which the earliest certificate seen by the check expires."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, fmt.Errorf("create picket.check.cert.expiry gauge: %w", err)
	}

	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range sample() {
			set := metric.WithAttributeSet(s.attrs)
			o.ObserveInt64(up, boolInt(s.status == Passing), set)
			o.ObserveInt64(flapping, boolInt(s.flapping), set)
			for st := Unknown; st <= Critical; st++ {
				o.ObserveInt64(state, boolInt(s.status == st),
					metric.WithAttributes(attrCheck.String(s.check), attrNode.String(s.node), attrState.String(st.String())))
			}
			for name, d := range phaseTotals(s.phases) {
				o.ObserveFloat64(phase, d,
					metric.WithAttributes(attrCheck.String(s.check), attrNode.String(s.node), attrPhase.String(name)))
			}
			if s.certExpiry != 0 {
				o.ObserveFloat64(cert, s.certExpiry, metric.WithAttributes(attrCheck.String(s.check)))
			}
		}
		return nil
	}, up, state, flapping, phase, cert)
	if err != nil {
		return nil, fmt.Errorf("register check gauge callback: %w", err)
	}
	return &cm, nil
}

// recordRun records the duration and result of one finished run of check on node.
func (cm *checkMetrics) recordRun(ctx context.Context, check, node string, r Result) {
	cm.duration.Record(ctx, r.Duration.Seconds(),
		metric.WithAttributes(attrCheck.String(check), attrNode.String(node)))
	result := r.Status
	if result != Passing && result != Warning {
		result = Critical
	}
	cm.runs.Add(ctx, 1, metric.WithAttributes(attrCheck.String(check), attrNode.String(node),
		attrResult.String(result.String()), attrReason.String(r.Reason)))
}

// recordSkip counts n skipped runs of the check with attributes attrs (check, node).
func (cm *checkMetrics) recordSkip(ctx context.Context, attrs attribute.Set, n int) {
	cm.skipped.Add(ctx, int64(n), metric.WithAttributeSet(attrs))
}

// phaseTotals sums the phases by name; a phase may repeat (for example on redirects).
func phaseTotals(ps []Phase) map[string]float64 {
	m := make(map[string]float64, len(ps))
	for _, p := range ps {
		m[p.Name] += p.Duration.Seconds()
	}
	return m
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
