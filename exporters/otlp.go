package exporters

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/credentials"

	"github.com/picket-dev/picket/internal/config"
)

// Defaults for zero exporters.otlp durations.
const (
	DefaultOTLPInterval = 30 * time.Second
	DefaultOTLPTimeout  = 10 * time.Second
)

// failureLogEvery is the least time between two log lines about failing exports of one
// exporter; failures in between are counted and summed up in the next line.
const failureLogEvery = time.Minute

// Protocols of exporters.otlp.protocol.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

func intervalOf(c config.OTLP) time.Duration {
	if d := c.Interval.D(); d > 0 {
		return d
	}
	return DefaultOTLPInterval
}

func timeoutOf(c config.OTLP) time.Duration {
	if d := c.Timeout.D(); d > 0 {
		return d
	}
	return DefaultOTLPTimeout
}

// protocolOf returns "grpc" or "http", or an error naming the key.
func protocolOf(c config.OTLP) (string, error) {
	switch c.Protocol {
	case "", ProtocolGRPC:
		return ProtocolGRPC, nil
	case ProtocolHTTP, "http/protobuf":
		return ProtocolHTTP, nil
	}
	return "", fmt.Errorf("exporters.otlp.protocol: %q is not supported (use grpc or http)", c.Protocol)
}

// endpointOf checks that the endpoint is host:port.
func endpointOf(c config.OTLP) (string, error) {
	if strings.Contains(c.Endpoint, "://") {
		return "", fmt.Errorf("exporters.otlp.endpoint: %q has a scheme; write host:port (plaintext is chosen with insecure: true)", c.Endpoint)
	}
	if c.Endpoint == "" {
		return "", errors.New("exporters.otlp.endpoint is empty; set host:port of an OTLP receiver")
	}
	return c.Endpoint, nil
}

func headersOf(c config.OTLP) map[string]string {
	if len(c.Headers) == 0 {
		return nil
	}
	h := make(map[string]string, len(c.Headers))
	for k, v := range c.Headers {
		h[k] = v.Value()
	}
	return h
}

// tlsConfigOf returns nil for insecure: true, else a TLS config trusting the system roots or
// tls.ca_file, presenting tls.cert_file/key_file when set.
func tlsConfigOf(c config.OTLP) (*tls.Config, error) {
	if c.Insecure {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("exporters.otlp.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("exporters.otlp.tls.ca_file: %s holds no PEM certificate; point it at a PEM CA bundle", c.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			return nil, errors.New("exporters.otlp.tls: cert_file and key_file go together; set both or neither")
		}
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("exporters.otlp.tls: load cert_file %s and key_file %s: %w", c.TLS.CertFile, c.TLS.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// otlpTarget is where and how an OTLP exporter sends: checked once for metrics and logs.
type otlpTarget struct {
	proto, endpoint string
	tls             *tls.Config // nil: plaintext
}

func targetOf(c config.OTLP) (otlpTarget, error) {
	proto, err := protocolOf(c)
	if err != nil {
		return otlpTarget{}, err
	}
	endpoint, err := endpointOf(c)
	if err != nil {
		return otlpTarget{}, err
	}
	tc, err := tlsConfigOf(c)
	if err != nil {
		return otlpTarget{}, err
	}
	return otlpTarget{proto: proto, endpoint: endpoint, tls: tc}, nil
}

// newMetricExporter builds the OTLP metric exporter of c. It does not connect.
func newMetricExporter(ctx context.Context, c config.OTLP) (sdkmetric.Exporter, error) {
	t, err := targetOf(c)
	if err != nil {
		return nil, err
	}
	proto, endpoint, tc := t.proto, t.endpoint, t.tls
	var exp sdkmetric.Exporter
	switch proto {
	case ProtocolGRPC:
		opts := []otlpmetricgrpc.Option{
			otlpmetricgrpc.WithEndpoint(endpoint),
			otlpmetricgrpc.WithTimeout(timeoutOf(c)),
			otlpmetricgrpc.WithHeaders(headersOf(c)),
		}
		if tc == nil {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		} else {
			opts = append(opts, otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(tc)))
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	default:
		opts := []otlpmetrichttp.Option{
			otlpmetrichttp.WithEndpoint(endpoint),
			otlpmetrichttp.WithTimeout(timeoutOf(c)),
			otlpmetrichttp.WithHeaders(headersOf(c)),
		}
		if tc == nil {
			opts = append(opts, otlpmetrichttp.WithInsecure())
		} else {
			opts = append(opts, otlpmetrichttp.WithTLSClientConfig(tc))
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("create OTLP %s metric exporter for %s: %w", proto, endpoint, err)
	}
	return exp, nil
}

// NewLogExporter builds an OTLP log exporter (gRPC or HTTP) from c, for the aggregator's
// export of the cluster log. It does not connect. Its failures are not counted; use
// Telemetry.LogExporter for an exporter whose failures are counted and logged.
func NewLogExporter(ctx context.Context, c config.OTLP) (sdklog.Exporter, error) {
	t, err := targetOf(c)
	if err != nil {
		return nil, err
	}
	proto, endpoint, tc := t.proto, t.endpoint, t.tls
	var exp sdklog.Exporter
	switch proto {
	case ProtocolGRPC:
		opts := []otlploggrpc.Option{
			otlploggrpc.WithEndpoint(endpoint),
			otlploggrpc.WithTimeout(timeoutOf(c)),
			otlploggrpc.WithHeaders(headersOf(c)),
		}
		if tc == nil {
			opts = append(opts, otlploggrpc.WithInsecure())
		} else {
			opts = append(opts, otlploggrpc.WithTLSCredentials(credentials.NewTLS(tc)))
		}
		exp, err = otlploggrpc.New(ctx, opts...)
	default:
		opts := []otlploghttp.Option{
			otlploghttp.WithEndpoint(endpoint),
			otlploghttp.WithTimeout(timeoutOf(c)),
			otlploghttp.WithHeaders(headersOf(c)),
		}
		if tc == nil {
			opts = append(opts, otlploghttp.WithInsecure())
		} else {
			opts = append(opts, otlploghttp.WithTLSClientConfig(tc))
		}
		exp, err = otlploghttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("create OTLP %s log exporter for %s: %w", proto, endpoint, err)
	}
	return exp, nil
}

// LogExporter builds the OTLP log exporter of exporters.otlp (see NewLogExporter) and wraps
// it so that each failed Export is counted in
// picket_exporter_export_failures_total{exporter="otlp_logs"} and logged (rate-limited).
// Export still returns the error. It fails when no OTLP endpoint is configured.
func (t *Telemetry) LogExporter(ctx context.Context) (sdklog.Exporter, error) {
	if t.logFailures == nil {
		return nil, errors.New("OTLP log export needs exporters.otlp.endpoint")
	}
	exp, err := NewLogExporter(ctx, t.otlp)
	if err != nil {
		return nil, err
	}
	t.logFailures.used.Store(true)
	return &logExporter{Exporter: exp, failures: t.logFailures}, nil
}

// metricExporter counts and logs failed exports. Export returns nil after a failure: its
// only caller, the PeriodicReader, would just hand the error to OTel's global error handler,
// logging every failure a second time and without a rate limit. Telemetry.Shutdown reports a
// failed final export from latest.
//
// An export whose context was canceled is not counted: the PeriodicReader cancels the export
// in flight when it shuts down, then flushes once more (cumulative data, so nothing is lost).
type metricExporter struct {
	sdkmetric.Exporter
	failures *failures

	mu      sync.Mutex
	exports uint64 // Export calls so far
	last    error  // outcome of the latest
}

// Export sends rm and records the outcome.
func (e *metricExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	err := e.Exporter.Export(ctx, rm)
	e.mu.Lock()
	e.exports++
	e.last = err
	e.mu.Unlock()
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	e.failures.record(err)
	return nil
}

// latest returns how many exports ran and the outcome of the latest.
func (e *metricExporter) latest() (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.exports, e.last
}

// logExporter counts and logs failed exports and returns their error.
type logExporter struct {
	sdklog.Exporter
	failures *failures
}

// Export sends records and records the outcome.
func (e *logExporter) Export(ctx context.Context, records []sdklog.Record) error {
	err := e.Exporter.Export(ctx, records)
	e.failures.record(err)
	return err
}

// failures counts one exporter's failed exports and logs them at most once per
// failureLogEvery, plus once when exports succeed again. Safe for concurrent use.
type failures struct {
	logger *slog.Logger
	opts   []metric.ObserveOption // {exporter=name}
	now    func() time.Time
	count  atomic.Int64
	used   atomic.Bool // reported even before its first failure

	mu         sync.Mutex
	failing    bool
	lastLog    time.Time
	suppressed int64
}

func newFailures(name string, logger *slog.Logger) *failures {
	return &failures{
		logger: logger.With("exporter", name),
		opts:   []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("exporter", name)))},
		now:    time.Now,
	}
}

func (f *failures) record(err error) {
	if err == nil {
		f.mu.Lock()
		recovered := f.failing
		f.failing, f.suppressed = false, 0
		f.mu.Unlock()
		if recovered {
			f.logger.Info("OTLP export succeeds again")
		}
		return
	}
	f.count.Add(1)
	f.mu.Lock()
	now := f.now()
	if f.failing && now.Sub(f.lastLog) < failureLogEvery {
		f.suppressed++
		f.mu.Unlock()
		return
	}
	suppressed := f.suppressed
	f.failing, f.lastLog, f.suppressed = true, now, 0
	f.mu.Unlock()
	f.logger.Warn("OTLP export failed; check that the endpoint is reachable and accepts the credentials (failures are counted in picket_exporter_export_failures_total)",
		"err", err, "failures_since_last_log", suppressed)
}

func (f *failures) observe(o metric.Observer, inst metric.Int64Observable) {
	o.ObserveInt64(inst, f.count.Load(), f.opts...)
}
