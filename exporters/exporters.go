// Package exporters builds picket's one OpenTelemetry MeterProvider and the exporters it
// feeds: the Prometheus exposition served on /metrics and, optionally, OTLP over gRPC or
// HTTP. It also builds the OTLP log exporter the aggregator uses.
//
// Prometheus names are the ones the OTel Prometheus exporter derives with the
// UnderscoreEscapingWithSuffixes strategy: dots become underscores, the unit is appended
// ("s" → _seconds, "By" → _bytes, "1" → _ratio; units in braces such as "{run}" add
// nothing), and monotonic counters end in _total. So an instrument named
// picket.check.duration with unit "s" is picket_check_duration_seconds, and a counter
// picket.check.runs with unit "{run}" is picket_check_runs_total.
//
// /metrics does not run the OTel Prometheus exporter itself: a renderer (exposition.go)
// writes the same families, byte for byte (a test holds it to the exporter), for about a
// quarter of the CPU; see metricsHandler in prometheus.go.
package exporters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/picket-dev/picket/internal/config"
)

// CardinalityLimit is the most attribute sets one instrument keeps per collection. Beyond
// it, new sets are folded into one series carrying otel.metric.overflow="true" (Prometheus:
// otel_metric_overflow="true"), so totals stay right while detail is lost. The SDK's own
// default is 2000.
const CardinalityLimit = 10000

// ScopeName is the instrumentation scope of the metrics this package registers.
const ScopeName = "github.com/picket-dev/picket/exporters"

// Options are what New needs.
type Options struct {
	Config   config.Exporters
	Resource *resource.Resource // from NewResource; resource.Default() when nil
	Logger   *slog.Logger
	Version  string // picket's version, for picket_build_info
}

// Telemetry owns the MeterProvider and its exporters. Its methods are safe for concurrent
// use; Shutdown is idempotent.
type Telemetry struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
	metrics  *metricsHandler // handler without its request metrics; nil when handler is
	otlp     config.OTLP
	logger   *slog.Logger

	metricFailures *failures       // nil without OTLP
	metricExport   *metricExporter // nil without OTLP
	logFailures    *failures       // nil without OTLP

	shutdownOnce sync.Once
	shutdownErr  error
}

// New builds the MeterProvider with a Prometheus reader when exporters.prometheus.enabled
// and a periodic OTLP reader when exporters.otlp.endpoint is set, and registers
// picket_build_info and picket_exporter_export_failures_total. Building the OTLP exporter
// does not connect; an unreachable endpoint shows up as export failures.
func New(ctx context.Context, o Options) (*Telemetry, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "exporters")
	res := o.Resource
	if res == nil {
		res = resource.Default()
	}
	t := &Telemetry{otlp: o.Config.OTLP, logger: logger}
	opts := []sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithCardinalityLimit(CardinalityLimit),
	}
	if o.Config.Prometheus.Enabled {
		reader, metrics, handler, err := newPrometheus(logger)
		if err != nil {
			return nil, err
		}
		t.metrics, t.handler = metrics, handler
		opts = append(opts, sdkmetric.WithReader(reader))
	}
	if o.Config.OTLP.Endpoint != "" {
		exp, err := newMetricExporter(ctx, o.Config.OTLP)
		if err != nil {
			return nil, err
		}
		t.metricFailures = newFailures("otlp_metrics", logger)
		t.logFailures = newFailures("otlp_logs", logger)
		t.metricExport = &metricExporter{Exporter: exp, failures: t.metricFailures}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(
			t.metricExport,
			sdkmetric.WithInterval(intervalOf(o.Config.OTLP)),
			sdkmetric.WithTimeout(timeoutOf(o.Config.OTLP)),
		)))
	}
	t.provider = sdkmetric.NewMeterProvider(opts...)
	if err := t.registerOwn(o.Version); err != nil {
		_ = t.provider.Shutdown(ctx)
		return nil, err
	}
	return t, nil
}

// MeterProvider returns the provider every part of picket creates its instruments on.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.provider }

// Handler returns the /metrics handler, or nil when the Prometheus exporter is disabled.
func (t *Telemetry) Handler() http.Handler { return t.handler }

// Shutdown flushes the OTLP exporter one last time and stops every reader, within ctx's
// deadline. It reports a failed final export. Calling it again returns the first result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		var before uint64
		if t.metricExport != nil {
			before, _ = t.metricExport.latest()
		}
		err := t.provider.Shutdown(ctx)
		if t.metricExport != nil {
			// The PeriodicReader's last export is its final flush.
			if n, last := t.metricExport.latest(); n > before && last != nil {
				err = errors.Join(err, fmt.Errorf("final OTLP metrics export to %s failed: %w", t.otlp.Endpoint, last))
			}
		}
		if err != nil {
			err = fmt.Errorf("shut down telemetry: %w", err)
		}
		t.shutdownErr = err
	})
	return t.shutdownErr
}

// registerOwn registers picket_build_info and picket_exporter_export_failures_total.
func (t *Telemetry) registerOwn(version string) error {
	m := t.provider.Meter(ScopeName)
	info, err := m.Int64ObservableGauge("picket.build.info",
		metric.WithDescription("Always 1; its labels tell picket's version, the Go version and the VCS revision it was built from."))
	if err != nil {
		return fmt.Errorf("create picket.build.info: %w", err)
	}
	if version == "" {
		version = "unknown"
	}
	infoOpts := []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(
		attribute.String("version", version),
		attribute.String("goversion", runtime.Version()),
		attribute.String("revision", revision()),
	))}
	instruments := []metric.Observable{info}
	var failed metric.Int64ObservableCounter
	if t.metricFailures != nil {
		failed, err = m.Int64ObservableCounter("picket.exporter.export.failures",
			metric.WithDescription("Exports that failed, by exporter; each failure is also logged (rate-limited)."),
			metric.WithUnit("{export}"))
		if err != nil {
			return fmt.Errorf("create picket.exporter.export.failures: %w", err)
		}
		instruments = append(instruments, failed)
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(info, 1, infoOpts...)
		if t.metricFailures != nil {
			t.metricFailures.observe(o, failed)
			if t.logFailures.used.Load() {
				t.logFailures.observe(o, failed)
			}
		}
		return nil
	}, instruments...)
	if err != nil {
		return fmt.Errorf("register build info callback: %w", err)
	}
	return nil
}

// revision returns the VCS revision stamped into the binary, or "unknown".
func revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
