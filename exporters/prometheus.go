package exporters

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// newPrometheus builds the OTel Prometheus exporter on a registry of its own (never the
// global one) with client_golang's Go and process collectors, and the /metrics handler.
func newPrometheus(logger *slog.Logger) (sdkmetric.Reader, http.Handler, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("register Go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("register process collector: %w", err)
	}
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		// Scope labels (otel_scope_name, ...) on every series would only repeat picket's
		// package paths; the metric names are unique across scopes.
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("create Prometheus exporter: %w", err)
	}
	h := promhttp.HandlerFor(renamingGatherer{reg}, promhttp.HandlerOpts{
		ErrorLog:      promLogger{logger},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg, // counts errors in promhttp_metric_handler_errors_total
	})
	return exp, promhttp.InstrumentMetricHandler(reg, h), nil
}

// promRenames maps the few Prometheus names derived from semantic convention names that
// break Prometheus' naming rules to the names served instead. OTLP keeps the semconv name.
//
// system.cpu.logical.count is a gauge, and promtool rejects a _count suffix outside
// histograms and summaries.
func promRenames(name string) (string, bool) {
	switch name {
	case "system_cpu_logical_count":
		return "system_cpu_logical_cpus", true
	}
	return "", false
}

// renamingGatherer serves the registry's families with promRenames applied.
type renamingGatherer struct{ g prometheus.Gatherer }

// Gather gathers and renames; Registry.Gather builds new families on each call, so renaming
// them in place is safe.
func (r renamingGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := r.g.Gather()
	for _, mf := range mfs {
		if to, ok := promRenames(mf.GetName()); ok {
			mf.Name = &to
		}
	}
	return mfs, err
}

// promLogger adapts slog to promhttp's error log.
type promLogger struct{ logger *slog.Logger }

// Println logs a /metrics gathering or encoding error.
func (l promLogger) Println(v ...any) {
	l.logger.Error("serving /metrics: "+fmt.Sprint(v...), "hint", "the response may be missing series; see promhttp_metric_handler_errors_total")
}
