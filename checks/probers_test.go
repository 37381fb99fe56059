package checks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

func TestProbersCoverEveryType(t *testing.T) {
	probers := Probers()
	types := []string{config.TypeHTTP, config.TypeTCP, config.TypeDNS, config.TypeTLS, config.TypeGRPC, config.TypeExec}
	if len(probers) != len(types) {
		t.Errorf("%d probers, want %d", len(probers), len(types))
	}
	for _, typ := range types {
		p := probers[typ]
		if p == nil {
			t.Errorf("no prober for %q", typ)
			continue
		}
		// Bad input never panics: no check at all, and a check without its block.
		expect(t, runWith(t, p, nil, time.Second), Critical, ReasonConfig, "no "+typ+" check definition")
		expect(t, runWith(t, p, &config.Check{Name: "x", Type: typ}, time.Second), Critical, ReasonConfig, "has no "+typ+" block")
	}
}

// TestProbeWithoutDeadline proves that a context without a deadline gets the check's
// timeout, so a probe cannot hang.
func TestProbeWithoutDeadline(t *testing.T) {
	silent := serveTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c := tcpCheck(config.TCPCheck{Address: silent, Expect: "hello"})
	c.Timeout = config.Duration(200 * time.Millisecond)
	start := time.Now()
	r := Probers()[config.TypeTCP](context.Background(), c)
	expect(t, r, Critical, ReasonTimeout, "timeout after 200ms")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v", took)
	}
}

func TestCanceledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for typ, p := range Probers() {
		c := &config.Check{Type: typ,
			HTTP: &config.HTTPCheck{URL: "http://" + closedPort(t)}, TCP: &config.TCPCheck{Address: closedPort(t)},
			DNS: &config.DNSCheck{Name: "a.test", Server: "127.0.0.1:1"}, TLS: &config.TLSCheck{Address: closedPort(t)},
			GRPC: &config.GRPCCheck{Address: closedPort(t)}, Exec: &config.ExecCheck{Command: []string{"true"}}}
		r := p(ctx, c)
		expect(t, r, Critical, ReasonCanceled, "canceled")
	}
}

func TestReasonOf(t *testing.T) {
	expiredCert := &x509.Certificate{NotAfter: time.Now().Add(-time.Hour)}
	futureCert := &x509.Certificate{NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
	tests := []struct {
		err  error
		want string
	}{
		{nil, ReasonNone},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), ReasonTimeout},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, ReasonTimeout},
		{context.Canceled, ReasonCanceled},
		{&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "nope.test", IsNotFound: true}}, ReasonDNS},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, ReasonConnect},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, ReasonConnect},
		{&net.OpError{Op: "dial", Err: errors.New("something else")}, ReasonConnect},
		{x509.CertificateInvalidError{Cert: expiredCert, Reason: x509.Expired}, ReasonCertExpiry},
		{x509.CertificateInvalidError{Cert: futureCert, Reason: x509.Expired}, ReasonTLS}, // not yet valid
		{x509.UnknownAuthorityError{}, ReasonTLS},
		{x509.HostnameError{Certificate: futureCert, Host: "x"}, ReasonTLS},
		{io.ErrUnexpectedEOF, ReasonProtocol},
	}
	for _, tt := range tests {
		if got := reasonOf(tt.err); got != tt.want {
			t.Errorf("reasonOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestCheckAddress(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:80": true, "[::1]:443": true, "localhost:https": true, "example.com:65535": true,
		"127.0.0.1": false, ":80": false, "host:0": false, "host:70000": false, "dns:///x": false, "a b:80": false, "": false,
	} {
		if err := checkAddress("address", addr); (err == nil) != ok {
			t.Errorf("checkAddress(%q) = %v, want ok %v", addr, err, ok)
		}
	}
}

func TestOutputHelpers(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{formatDuration(1234567 * time.Nanosecond), "1.2ms"},
		{formatDuration(345678 * time.Nanosecond), "346µs"},
		{formatDuration(2345 * time.Millisecond), "2.35s"},
		{cutString("héllo", 2), "h..."},
		{cutString("hello", 5), "hello"},
		{quoteCut("a\nb", 10), `"a\nb"`},
		{timeoutOutput(time.Unix(0, 0), time.Unix(4, 999_990_000)), "timeout after 5s"},
		{timeoutOutput(time.Unix(0, 0), time.Unix(0, 299_800_000)), "timeout after 300ms"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// TestConcurrentProbes runs one Probers map from many goroutines at once, so that the race
// detector sees the shared caches and pools in use.
func TestConcurrentProbes(t *testing.T) {
	ca := newTestCA(t, "picket test CA")
	plain := httptest.NewServer(testHandler())
	defer plain.Close()
	secure := httptest.NewUnstartedServer(testHandler())
	secure.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, inDays(30))}}
	secure.StartTLS()
	defer secure.Close()
	tcpAddr := serveTCP(t, func(c net.Conn) { io.WriteString(c, "hello\n") })

	checks := []*config.Check{
		httpCheck(config.HTTPCheck{URL: plain.URL + "/ok", ExpectBodyRegex: "good"}),
		httpCheck(config.HTTPCheck{URL: plain.URL + "/redirect", FollowRedirects: true, ExpectBody: "all"}),
		httpCheck(config.HTTPCheck{URL: secure.URL + "/ok", TLS: config.TLSClient{CAFile: ca.caFile, WarningDays: 7}}),
		tcpCheck(config.TCPCheck{Address: tcpAddr, Expect: "hello"}),
		tlsCheck(config.TLSCheck{Address: strings.TrimPrefix(secure.URL, "https://"), CAFile: ca.caFile}),
	}
	probers := Probers()
	var wg sync.WaitGroup
	errs := make(chan string, 8*20)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				c := checks[(g+i)%len(checks)]
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				r := probers[c.Type](ctx, c)
				cancel()
				if r.Status != Passing {
					errs <- fmt.Sprintf("%s: %v %s %s", c.Type, r.Status, r.Reason, r.Output)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
