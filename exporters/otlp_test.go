package exporters

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/picket-dev/picket/internal/config"
)

// receiver is a real OTLP metrics and logs receiver: the generated gRPC services, or the
// HTTP/protobuf endpoints, backed by a list of requests.
type receiver struct {
	colmetricpb.UnimplementedMetricsServiceServer

	mu      sync.Mutex
	metrics []*colmetricpb.ExportMetricsServiceRequest
	logs    []*collogspb.ExportLogsServiceRequest
	headers []string // authorization header of each request
}

func (r *receiver) Export(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, req)
	r.headers = append(r.headers, strings.Join(md.Get("authorization"), ","))
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

// logsService adapts receiver to the logs service, whose Export has another signature.
type logsService struct {
	collogspb.UnimplementedLogsServiceServer
	r *receiver
}

func (s logsService) Export(_ context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.logs = append(s.r.logs, req)
	return &collogspb.ExportLogsServiceResponse{}, nil
}

// startGRPC serves the OTLP gRPC services on 127.0.0.1 and returns host:port.
func startGRPC(t *testing.T, r *receiver, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	colmetricpb.RegisterMetricsServiceServer(srv, r)
	collogspb.RegisterLogsServiceServer(srv, logsService{r: r})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// ServeHTTP implements OTLP/HTTP with binary protobuf for /v1/metrics.
func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/metrics" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/metrics with application/x-protobuf", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var m colmetricpb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(body, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.metrics = append(r.metrics, &m)
	r.headers = append(r.headers, req.Header.Get("Authorization"))
	r.mu.Unlock()
	out, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// waitMetric polls until a request carrying metric name arrived and returns it.
func (r *receiver) waitMetric(t *testing.T, name string) (*colmetricpb.ExportMetricsServiceRequest, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for i, req := range r.metrics {
			for _, rm := range req.GetResourceMetrics() {
				for _, sm := range rm.GetScopeMetrics() {
					for _, m := range sm.GetMetrics() {
						if m.GetName() == name {
							h := r.headers[i]
							r.mu.Unlock()
							return req, h
						}
					}
				}
			}
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s received within 10s", name)
	return nil, ""
}

func resourceAttrs(res *resourcepb.Resource) map[string]string {
	out := map[string]string{}
	for _, kv := range res.GetAttributes() {
		out[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return out
}

func checkResource(t *testing.T, req *colmetricpb.ExportMetricsServiceRequest) {
	t.Helper()
	attrs := resourceAttrs(req.GetResourceMetrics()[0].GetResource())
	for k, want := range map[string]string{"service.name": "picket", "service.version": "1.2.3", "picket.node": "n1", "service.instance.id": "n1"} {
		if attrs[k] != want {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, attrs[k], want, attrs)
		}
	}
}

func otlpConfig(endpoint, protocol string) config.OTLP {
	return config.OTLP{
		Endpoint: endpoint,
		Protocol: protocol,
		Insecure: true,
		Headers:  map[string]config.Secret{"Authorization": "Bearer s3cret"},
		Interval: config.Duration(50 * time.Millisecond),
		Timeout:  config.Duration(2 * time.Second),
	}
}

func recordSomething(t *testing.T, tel *Telemetry) {
	t.Helper()
	c, err := tel.MeterProvider().Meter("t").Int64Counter("picket.test.sent")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)
}

func TestOTLPExport(t *testing.T) {
	cases := []struct {
		protocol string
		start    func(*testing.T, *receiver) string
	}{
		{"grpc", func(t *testing.T, r *receiver) string { return startGRPC(t, r) }},
		{"http", func(t *testing.T, r *receiver) string {
			srv := httptest.NewServer(r)
			t.Cleanup(srv.Close)
			return strings.TrimPrefix(srv.URL, "http://")
		}},
	}
	for _, c := range cases {
		t.Run(c.protocol, func(t *testing.T) {
			r := &receiver{}
			endpoint := c.start(t, r)
			tel := newTelemetry(t, config.Exporters{OTLP: otlpConfig(endpoint, c.protocol)}, nil)
			recordSomething(t, tel)
			req, auth := r.waitMetric(t, "picket.test.sent")
			checkResource(t, req)
			if auth != "Bearer s3cret" {
				t.Errorf("authorization header = %q", auth)
			}
			r.waitMetric(t, "picket.build.info")
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

func TestOTLPMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	serverCert := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	ca.write(t, dir)
	ca.issueFiles(t, dir, "client", x509.ExtKeyUsageClientAuth)

	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	r := &receiver{}
	endpoint := startGRPC(t, r, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})))
	cfg := otlpConfig(endpoint, "grpc")
	cfg.Insecure = false
	cfg.TLS = config.TLS{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "client.pem"),
		KeyFile:  filepath.Join(dir, "client-key.pem"),
	}
	tel := newTelemetry(t, config.Exporters{OTLP: cfg}, nil)
	recordSomething(t, tel)
	req, _ := r.waitMetric(t, "picket.test.sent")
	checkResource(t, req)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

func TestOTLPFailuresCountedAndLogged(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			cfg := otlpConfig(closedAddr(t), protocol)
			cfg.Timeout = config.Duration(200 * time.Millisecond)
			logs := &syncBuffer{}
			tel := newTelemetry(t, config.Exporters{Prometheus: config.Prometheus{Enabled: true}, OTLP: cfg}, logs)
			deadline := time.Now().Add(10 * time.Second)
			for {
				v, _ := counterValue(t, scrape(t, tel.Handler()), "picket_exporter_export_failures_total", "exporter", "otlp_metrics")
				if v >= 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("failures = %v after 10s, want >= 2; logs:\n%s", v, logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if n := strings.Count(logs.String(), "OTLP export failed"); n != 1 {
				t.Errorf("failure logged %d times, want once within a minute:\n%s", n, logs)
			}
			if _, ok := counterValue(t, scrape(t, tel.Handler()), "picket_exporter_export_failures_total", "exporter", "otlp_logs"); ok {
				t.Error("otlp_logs failures reported before a log exporter exists")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := tel.Shutdown(ctx)
			if err == nil || !strings.Contains(err.Error(), "final OTLP metrics export to "+cfg.Endpoint+" failed") {
				t.Errorf("Shutdown = %v, want the failed final export", err)
			}
			if again := tel.Shutdown(ctx); again == nil || again.Error() != err.Error() {
				t.Errorf("second Shutdown = %v, want the first result", again)
			}
		})
	}
}

func TestLogExporter(t *testing.T) {
	r := &receiver{}
	cfg := otlpConfig(startGRPC(t, r), "grpc")
	cfg.Interval = config.Duration(time.Hour)
	tel := newTelemetry(t, config.Exporters{Prometheus: config.Prometheus{Enabled: true}, OTLP: cfg}, nil)
	ctx := context.Background()
	exp, err := tel.LogExporter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rec sdklog.Record
	rec.SetBody(attribute.StringValue("disk full"))
	rec.SetSeverityText("error")
	if err := exp.Export(ctx, []sdklog.Record{rec}); err != nil {
		t.Fatalf("Export: %v", err)
	}
	if err := exp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	var bodies []string
	for _, req := range r.logs {
		for _, rl := range req.GetResourceLogs() {
			for _, sl := range rl.GetScopeLogs() {
				for _, lr := range sl.GetLogRecords() {
					bodies = append(bodies, lr.GetBody().GetStringValue())
				}
			}
		}
	}
	r.mu.Unlock()
	if len(bodies) != 1 || bodies[0] != "disk full" {
		t.Errorf("received log bodies %v", bodies)
	}

	// A log exporter pointed at nothing counts its failures under otlp_logs.
	down := otlpConfig(closedAddr(t), "grpc")
	down.Interval = config.Duration(time.Hour)
	down.Timeout = config.Duration(200 * time.Millisecond)
	tel2 := newTelemetry(t, config.Exporters{Prometheus: config.Prometheus{Enabled: true}, OTLP: down}, nil)
	exp2, err := tel2.LogExporter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = exp2.Shutdown(ctx) }()
	if err := exp2.Export(ctx, []sdklog.Record{rec}); err == nil {
		t.Fatal("Export to a closed port succeeded")
	}
	if v, ok := counterValue(t, scrape(t, tel2.Handler()), "picket_exporter_export_failures_total", "exporter", "otlp_logs"); !ok || v != 1 {
		t.Errorf("otlp_logs failures = %v, %v; want 1", v, ok)
	}
}

func TestOTLPConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  config.OTLP
		want string
	}{
		{"bad protocol", config.OTLP{Endpoint: "127.0.0.1:4317", Protocol: "thrift"},
			`exporters.otlp.protocol: "thrift" is not supported (use grpc or http)`},
		{"scheme", config.OTLP{Endpoint: "http://127.0.0.1:4317"},
			`exporters.otlp.endpoint: "http://127.0.0.1:4317" has a scheme; write host:port (plaintext is chosen with insecure: true)`},
		{"ca not PEM", config.OTLP{Endpoint: "127.0.0.1:4317", TLS: config.TLS{CAFile: notPEM}},
			"exporters.otlp.tls.ca_file: " + notPEM + " holds no PEM certificate; point it at a PEM CA bundle"},
		{"ca missing", config.OTLP{Endpoint: "127.0.0.1:4317", TLS: config.TLS{CAFile: filepath.Join(dir, "nope.pem")}},
			"exporters.otlp.tls.ca_file: open " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"cert without key", config.OTLP{Endpoint: "127.0.0.1:4317", TLS: config.TLS{CertFile: notPEM}},
			"exporters.otlp.tls: cert_file and key_file go together; set both or neither"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(context.Background(), Options{Config: config.Exporters{OTLP: c.cfg}})
			if err == nil || err.Error() != c.want {
				t.Errorf("err = %v\nwant  %s", err, c.want)
			}
			if _, err := NewLogExporter(context.Background(), c.cfg); err == nil || err.Error() != c.want {
				t.Errorf("NewLogExporter err = %v\nwant  %s", err, c.want)
			}
		})
	}
	tel := newTelemetry(t, config.Exporters{}, nil)
	if _, err := tel.LogExporter(context.Background()); err == nil {
		t.Error("LogExporter without an endpoint succeeded")
	}
}

func TestFailureLogRateLimit(t *testing.T) {
	logs := &syncBuffer{}
	f := newFailures("otlp_metrics", slog.New(slog.NewTextHandler(logs, nil)))
	now := time.Unix(1_700_000_000, 0)
	f.now = func() time.Time { return now }
	boom := errors.New("connection refused")
	steps := []struct {
		after    time.Duration
		err      error
		wantLogs int
		wantLine string
	}{
		{0, boom, 1, "failures_since_last_log=0"},
		{10 * time.Second, boom, 1, ""},
		{20 * time.Second, boom, 1, ""},
		{61 * time.Second, boom, 2, "failures_since_last_log=2"},
		{time.Second, nil, 3, "OTLP export succeeds again"},
		{time.Second, nil, 3, ""},
		{time.Second, boom, 4, "failures_since_last_log=0"},
	}
	for i, s := range steps {
		now = now.Add(s.after)
		f.record(s.err)
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(lines) != s.wantLogs {
			t.Fatalf("step %d: %d log lines, want %d:\n%s", i, len(lines), s.wantLogs, logs)
		}
		if s.wantLine != "" && !strings.Contains(lines[len(lines)-1], s.wantLine) {
			t.Errorf("step %d: last line %q lacks %q", i, lines[len(lines)-1], s.wantLine)
		}
	}
	if got := f.count.Load(); got != 5 {
		t.Errorf("count = %d, want 5", got)
	}
}

// testCA issues certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "picket test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, der: der}
}

func (ca *testCA) issueDER(t *testing.T, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	der, key := ca.issueDER(t, cn, usage)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) write(t *testing.T, dir string) {
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.der)
}

func (ca *testCA) issueFiles(t *testing.T, dir, name string, usage x509.ExtKeyUsage) {
	der, key := ca.issueDER(t, name, usage)
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", kb)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
