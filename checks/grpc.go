package checks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/picket-dev/picket/internal/config"
)

// grpcProber calls grpc.health.v1.Health/Check.
type grpcProber struct {
	cas *caPools
}

// probe opens a connection of its own, asks for the service's serving status and closes
// the connection (and with it every goroutine grpc started for it) before returning.
func (p grpcProber) probe(ctx context.Context, c *config.Check) Result {
	g := c.GRPC
	if g == nil {
		return missingBlock(config.TypeGRPC, "address: 127.0.0.1:9090")
	}
	if err := checkAddress("address", g.Address); err != nil {
		return failf(ReasonConfig, "%v", err)
	}
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if g.TLS {
		var roots *x509.CertPool
		if g.CAFile != "" {
			var err error
			if roots, err = p.cas.get(g.CAFile); err != nil {
				return failf(ReasonConfig, "%v", err)
			}
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: g.ServerName, InsecureSkipVerify: g.InsecureSkipVerify}) //nolint:gosec // the user asked for it
	}
	rec := &grpcRecorder{}
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{KeepAlive: -1}
		conn, err := dialTimed(ctx, &d, "tcp", addr, &rec.tm)
		rec.setDialErr(err)
		return conn, err
	}
	conn, err := grpc.NewClient("passthrough:///"+g.Address,
		grpc.WithTransportCredentials(recordingCreds{TransportCredentials: creds, rec: rec}),
		grpc.WithContextDialer(dialer),
		grpc.WithUserAgent(httpUserAgent),
		grpc.WithDisableServiceConfig(),
	)
	if err != nil {
		return failf(ReasonConfig, "address %q: %v", g.Address, err)
	}
	defer conn.Close()

	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: g.Service})
	rec.tm.since(phaseProcessing, rec.readyAt())
	r := Result{Status: Passing, Phases: rec.tm.phases()}
	if err != nil {
		r.Status = Critical
		r.Reason, r.Output = rec.explain(g, err)
		return r
	}
	r.Output = resp.GetStatus().String()
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		r.Status, r.Reason = Critical, ReasonStatus
		if g.Service != "" {
			r.Output = fmt.Sprintf("service %q is %s", g.Service, resp.GetStatus())
		}
	}
	return r
}

// grpcRecorder keeps what the dialer and the credentials saw of one probe's connection,
// since grpc reports their errors only as text in an Unavailable status. grpc calls them
// from its own goroutines, so the fields are guarded by mu.
type grpcRecorder struct {
	tm      timings
	mu      sync.Mutex
	dialErr error
	tlsErr  error
	ready   time.Time
}

func (r *grpcRecorder) setDialErr(err error) {
	r.mu.Lock()
	r.dialErr = err
	r.mu.Unlock()
}

func (r *grpcRecorder) readyAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

// explain turns a failed Check call into a reason and an output line.
func (r *grpcRecorder) explain(g *config.GRPCCheck, err error) (string, string) {
	st := status.Convert(err)
	r.mu.Lock()
	dialErr, tlsErr := r.dialErr, r.tlsErr
	r.mu.Unlock()
	switch st.Code() {
	case codes.Unavailable:
		switch {
		case dialErr != nil:
			return reasonOf(dialErr), dialErr.Error()
		case tlsErr != nil:
			reason := reasonOf(tlsErr)
			if reason != ReasonCertExpiry {
				reason = ReasonTLS
			}
			return reason, fmt.Sprintf("TLS handshake with %s: %v", g.Address, tlsErr)
		}
		return ReasonConnect, fmt.Sprintf("%s unavailable: %s", g.Address, st.Message())
	case codes.NotFound:
		return ReasonStatus, fmt.Sprintf("service %q is unknown to the server (NotFound)", g.Service)
	case codes.Unimplemented:
		return ReasonProtocol, fmt.Sprintf("%s does not implement grpc.health.v1.Health (Unimplemented)", g.Address)
	case codes.DeadlineExceeded:
		return ReasonTimeout, "server answered DeadlineExceeded: " + st.Message()
	}
	return ReasonProtocol, fmt.Sprintf("%s: %s", st.Code(), st.Message())
}

// recordingCreds wraps transport credentials to time the handshake and keep its error.
type recordingCreds struct {
	credentials.TransportCredentials
	rec *grpcRecorder
}

// ClientHandshake runs the wrapped handshake, recording its duration and outcome.
func (c recordingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	start := time.Now()
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if c.TransportCredentials.Info().SecurityProtocol == "tls" {
		c.rec.tm.add(phaseTLS, time.Since(start))
	}
	c.rec.mu.Lock()
	c.rec.tlsErr = err
	if err == nil {
		c.rec.ready = time.Now()
	}
	c.rec.mu.Unlock()
	return conn, info, err
}

// Clone keeps the recorder in the copy.
func (c recordingCreds) Clone() credentials.TransportCredentials {
	return recordingCreds{TransportCredentials: c.TransportCredentials.Clone(), rec: c.rec}
}
