package checks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

// testCA is a certificate authority made for one test; its certificate is written to
// caFile. Nothing of it is committed.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
}

// newTestCA creates a CA valid from an hour ago for ten years.
func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, caFile: file}
}

// issue signs a server certificate for localhost, 127.0.0.1 and ::1 that is valid until
// notAfter (which may be in the past).
func (ca *testCA) issue(t testing.TB, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notBefore := time.Now().Add(-time.Hour)
	if notAfter.Before(notBefore) {
		notBefore = notAfter.Add(-24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// inDays is now plus n days.
func inDays(n int) time.Time { return time.Now().Add(time.Duration(n) * 24 * time.Hour) }

// serveTLS accepts TLS connections on 127.0.0.1 with cert, completes the handshake and
// closes each connection. It returns the address; the listener and its goroutines are
// stopped and waited for when the test ends.
func serveTLS(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	return serveConns(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_ = c.(*tls.Conn).Handshake()
	})
}

// serveConns runs handle for every connection accepted on ln, each in a goroutine, and
// closes the connection after it. At the end of the test the listener is closed and all
// goroutines are waited for.
func serveConns(t testing.TB, ln net.Listener, handle func(net.Conn)) string {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close() // unblocks handlers still reading
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// listenTCP listens on a free loopback port.
func listenTCP(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t testing.TB) string {
	t.Helper()
	ln := listenTCP(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// runProbe runs the prober of c.Type from a fresh Probers map with the given timeout.
func runProbe(t testing.TB, c *config.Check, timeout time.Duration) Result {
	t.Helper()
	return runWith(t, Probers()[c.Type], c, timeout)
}

// runWith runs p with the given timeout and checks the fields every result must have.
func runWith(t testing.TB, p Prober, c *config.Check, timeout time.Duration) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	r := p(ctx, c)
	took := time.Since(start)
	if r.Status == Unknown {
		t.Errorf("status unknown; a prober must decide: %+v", r)
	}
	if r.Status != Passing && r.Reason == ReasonNone {
		t.Errorf("status %v without a reason: %+v", r.Status, r)
	}
	if r.Status == Passing && r.Reason != ReasonNone {
		t.Errorf("passing with reason %q", r.Reason)
	}
	if r.Output == "" {
		t.Errorf("empty output: %+v", r)
	}
	if r.Time.Before(start) || r.Time.After(start.Add(took)) {
		t.Errorf("time %v not within the run (%v + %v)", r.Time, start, took)
	}
	if r.Duration <= 0 || r.Duration > took {
		t.Errorf("duration %v, want within (0, %v]", r.Duration, took)
	}
	if took > timeout+time.Second {
		t.Errorf("probe took %v, beyond its %v timeout", took, timeout)
	}
	return r
}

// expect checks status, reason and that the output contains every part of want.
func expect(t testing.TB, r Result, status Status, reason string, want ...string) {
	t.Helper()
	if r.Status != status || r.Reason != reason {
		t.Errorf("got %v/%q (%q), want %v/%q", r.Status, r.Reason, r.Output, status, reason)
	}
	for _, w := range want {
		if !strings.Contains(r.Output, w) {
			t.Errorf("output %q does not contain %q", r.Output, w)
		}
	}
}

// phaseNamesOf lists the names of r's phases, joined by commas.
func phaseNamesOf(r Result) string {
	names := make([]string, len(r.Phases))
	for i, p := range r.Phases {
		names[i] = p.Name
		if p.Duration < 0 {
			names[i] += "(negative)"
		}
	}
	return strings.Join(names, ",")
}
