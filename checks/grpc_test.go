package checks

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/picket-dev/picket/internal/config"
)

func grpcCheck(g config.GRPCCheck) *config.Check {
	return &config.Check{Name: "rpc", Type: config.TypeGRPC, GRPC: &g}
}

// serveGRPC starts a grpc server on loopback, with the health service when withHealth.
// The server is stopped, and its goroutines waited for, when the test ends.
func serveGRPC(t testing.TB, cert *tls.Certificate, withHealth bool) string {
	t.Helper()
	var opts []grpc.ServerOption
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(cert)))
	}
	srv := grpc.NewServer(opts...)
	if withHealth {
		hs := health.NewServer() // "" is SERVING
		hs.SetServingStatus("billing", healthpb.HealthCheckResponse_SERVING)
		hs.SetServingStatus("search", healthpb.HealthCheckResponse_NOT_SERVING)
		hs.SetServingStatus("batch", healthpb.HealthCheckResponse_UNKNOWN)
		healthpb.RegisterHealthServer(srv, hs)
	}
	ln := listenTCP(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return ln.Addr().String()
}

func TestGRPC(t *testing.T) {
	ca := newTestCA(t, "picket test CA")
	cert := ca.issue(t, inDays(30))
	plain := serveGRPC(t, nil, true)
	secure := serveGRPC(t, &cert, true)
	bare := serveGRPC(t, nil, false)
	mute := serveTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // accepts, never speaks HTTP/2
	_, port, _ := net.SplitHostPort(plain)

	tests := []struct {
		name    string
		check   config.GRPCCheck
		timeout time.Duration
		status  Status
		reason  string
		output  []string
		phases  string
	}{
		{"server", config.GRPCCheck{Address: plain}, 5 * time.Second, Passing, ReasonNone, []string{"SERVING"}, "connect,processing"},
		{"by name", config.GRPCCheck{Address: "localhost:" + port}, 5 * time.Second, Passing, ReasonNone, []string{"SERVING"}, "dns,connect,processing"},
		{"service serving", config.GRPCCheck{Address: plain, Service: "billing"}, 5 * time.Second, Passing, ReasonNone, []string{"SERVING"}, ""},
		{"not serving", config.GRPCCheck{Address: plain, Service: "search"}, 5 * time.Second, Critical, ReasonStatus, []string{`service "search" is NOT_SERVING`}, ""},
		{"unknown status", config.GRPCCheck{Address: plain, Service: "batch"}, 5 * time.Second, Critical, ReasonStatus, []string{"UNKNOWN"}, ""},
		{"unknown service", config.GRPCCheck{Address: plain, Service: "nope"}, 5 * time.Second, Critical, ReasonStatus, []string{`service "nope" is unknown`}, ""},
		{"no health service", config.GRPCCheck{Address: bare}, 5 * time.Second, Critical, ReasonProtocol, []string{"does not implement grpc.health.v1.Health"}, ""},
		{"tls", config.GRPCCheck{Address: secure, TLS: true, CAFile: ca.caFile, Service: "billing"}, 5 * time.Second, Passing, ReasonNone, []string{"SERVING"}, "connect,tls,processing"},
		{"tls insecure", config.GRPCCheck{Address: secure, TLS: true, InsecureSkipVerify: true}, 5 * time.Second, Passing, ReasonNone, nil, ""},
		{"tls untrusted", config.GRPCCheck{Address: secure, TLS: true}, 5 * time.Second, Critical, ReasonTLS, []string{"TLS handshake with " + secure}, ""},
		{"tls to plaintext", config.GRPCCheck{Address: plain, TLS: true, InsecureSkipVerify: true}, 5 * time.Second, Critical, ReasonTLS, nil, ""},
		{"plaintext to tls", config.GRPCCheck{Address: secure}, 5 * time.Second, Critical, ReasonConnect, nil, ""},
		{"refused", config.GRPCCheck{Address: closedPort(t)}, 5 * time.Second, Critical, ReasonConnect, []string{"refused"}, ""},
		{"silent server", config.GRPCCheck{Address: mute}, 300 * time.Millisecond, Critical, ReasonTimeout, []string{"timeout after 300ms"}, ""},
		{"missing ca_file", config.GRPCCheck{Address: secure, TLS: true, CAFile: "/nonexistent.pem"}, time.Second, Critical, ReasonConfig, nil, ""},
		{"bad address", config.GRPCCheck{Address: "dns:///x"}, time.Second, Critical, ReasonConfig, []string{"host:port"}, ""},
	}
	probe := Probers()[config.TypeGRPC]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runWith(t, probe, grpcCheck(tt.check), tt.timeout)
			expect(t, r, tt.status, tt.reason, tt.output...)
			if tt.phases != "" && phaseNamesOf(r) != tt.phases {
				t.Errorf("phases %s, want %s", phaseNamesOf(r), tt.phases)
			}
		})
	}
}
