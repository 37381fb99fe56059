package checks

import (
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

func tlsCheck(c config.TLSCheck) *config.Check {
	return &config.Check{Name: "cert", Type: config.TypeTLS, TLS: &c}
}

func TestTLS(t *testing.T) {
	ca := newTestCA(t, "picket test CA")
	other := newTestCA(t, "someone else")
	valid := ca.issue(t, inDays(42))
	soon := ca.issue(t, inDays(5))
	expired := ca.issue(t, inDays(-3))
	validAddr, soonAddr, expiredAddr := serveTLS(t, valid), serveTLS(t, soon), serveTLS(t, expired)
	untrustedAddr := serveTLS(t, other.issue(t, inDays(90)))
	plainAddr := serveTCP(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.0 400 Bad Request\r\n\r\n") })
	_, port, _ := net.SplitHostPort(validAddr)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		check  config.TLSCheck
		status Status
		reason string
		output []string
		expiry time.Time
	}{
		{"valid", config.TLSCheck{Address: validAddr, CAFile: ca.caFile, WarningDays: 14, CriticalDays: 7}, Passing, ReasonNone, []string{"certificate valid for 41d (CN=localhost)"}, valid.Leaf.NotAfter},
		{"by name", config.TLSCheck{Address: "localhost:" + port, CAFile: ca.caFile}, Passing, ReasonNone, []string{"valid for"}, valid.Leaf.NotAfter},
		{"server_name", config.TLSCheck{Address: validAddr, ServerName: "localhost", CAFile: ca.caFile}, Passing, ReasonNone, nil, valid.Leaf.NotAfter},
		{"wrong server_name", config.TLSCheck{Address: validAddr, ServerName: "db.internal", CAFile: ca.caFile}, Critical, ReasonTLS, []string{"not trusted", "db.internal"}, valid.Leaf.NotAfter},
		{"warning", config.TLSCheck{Address: soonAddr, CAFile: ca.caFile, WarningDays: 14, CriticalDays: 3}, Warning, ReasonCertExpiry, []string{"expires in 4d, within warning_days 14 (CN=localhost)"}, soon.Leaf.NotAfter},
		{"critical", config.TLSCheck{Address: soonAddr, CAFile: ca.caFile, WarningDays: 30, CriticalDays: 7}, Critical, ReasonCertExpiry, []string{"within critical_days 7"}, soon.Leaf.NotAfter},
		{"expired", config.TLSCheck{Address: expiredAddr, CAFile: ca.caFile}, Critical, ReasonCertExpiry, []string{"certificate expired 3d ago (CN=localhost)"}, expired.Leaf.NotAfter},
		{"expired insecure", config.TLSCheck{Address: expiredAddr, InsecureSkipVerify: true}, Critical, ReasonCertExpiry, []string{"expired"}, expired.Leaf.NotAfter},
		{"untrusted", config.TLSCheck{Address: untrustedAddr, CAFile: ca.caFile}, Critical, ReasonTLS, []string{"not trusted", "unknown authority"}, time.Time{}},
		{"system roots", config.TLSCheck{Address: validAddr}, Critical, ReasonTLS, []string{"not trusted"}, valid.Leaf.NotAfter},
		{"insecure", config.TLSCheck{Address: untrustedAddr, InsecureSkipVerify: true}, Passing, ReasonNone, []string{"valid for 89d"}, time.Time{}},
		{"not TLS", config.TLSCheck{Address: plainAddr}, Critical, ReasonTLS, []string{"TLS handshake with " + plainAddr}, time.Time{}},
		{"refused", config.TLSCheck{Address: closedPort(t)}, Critical, ReasonConnect, []string{"refused"}, time.Time{}},
		{"missing ca_file", config.TLSCheck{Address: validAddr, CAFile: "/nonexistent.pem"}, Critical, ReasonConfig, []string{"/nonexistent.pem"}, time.Time{}},
		{"junk ca_file", config.TLSCheck{Address: validAddr, CAFile: junk}, Critical, ReasonConfig, []string{"no PEM certificate"}, time.Time{}},
		{"no address", config.TLSCheck{}, Critical, ReasonConfig, nil, time.Time{}},
	}
	probe := Probers()[config.TypeTLS]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runWith(t, probe, tlsCheck(tt.check), 5*time.Second)
			expect(t, r, tt.status, tt.reason, tt.output...)
			if !tt.expiry.IsZero() && !r.CertExpiry.Equal(tt.expiry) {
				t.Errorf("CertExpiry %v, want the leaf's %v", r.CertExpiry, tt.expiry)
			}
			if r.Status == Passing && phaseNamesOf(r) != "connect,tls" && phaseNamesOf(r) != "dns,connect,tls" {
				t.Errorf("phases %s", phaseNamesOf(r))
			}
		})
	}
}

func TestJudgeExpiry(t *testing.T) {
	now := time.Now()
	cert := func(cn string, left time.Duration) *x509.Certificate {
		c := &x509.Certificate{NotAfter: now.Add(left)}
		c.Subject.CommonName = cn
		return c
	}
	chain := []*x509.Certificate{cert("leaf", 50*24*time.Hour), cert("intermediate", 10*24*time.Hour+time.Hour), cert("root", 900*24*time.Hour)}
	tests := []struct {
		chain      []*x509.Certificate
		warn, crit int
		status     Status
		output     string
	}{
		{chain, 0, 0, Passing, "certificate valid for 10d (CN=intermediate)"},
		{chain, 14, 7, Warning, "certificate expires in 10d, within warning_days 14 (CN=intermediate)"},
		{chain, 30, 11, Critical, "certificate expires in 10d, within critical_days 11 (CN=intermediate)"},
		{[]*x509.Certificate{cert("x", 5*time.Hour)}, 0, 1, Critical, "certificate expires in 5h, within critical_days 1 (CN=x)"},
		{[]*x509.Certificate{cert("x", -90*time.Minute)}, 0, 0, Critical, "certificate expired 1h ago (CN=x)"},
		{nil, 0, 0, Critical, "no certificate"},
	}
	for _, tt := range tests {
		status, out := judgeExpiry(tt.chain, now, tt.warn, tt.crit)
		if status != tt.status || out != tt.output {
			t.Errorf("judgeExpiry(warn %d, crit %d) = %v %q, want %v %q", tt.warn, tt.crit, status, out, tt.status, tt.output)
		}
	}
}

// TestCAPoolsReload proves that a rewritten ca_file is read again.
func TestCAPoolsReload(t *testing.T) {
	a, b := newTestCA(t, "a"), newTestCA(t, "b")
	cas := newCAPools()
	cas.recheck = 0
	first, err := cas.get(a.caFile)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := cas.get(a.caFile); again != first {
		t.Error("an unchanged ca_file was parsed again")
	}
	pem, err := os.ReadFile(b.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pem = append(pem, '\n') // another size, so the change shows even within one mtime tick
	if err := os.WriteFile(a.caFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := cas.get(a.caFile)
		if err != nil {
			t.Fatal(err)
		}
		if p != first {
			if _, err := b.cert.Verify(x509.VerifyOptions{Roots: p}); err != nil {
				t.Errorf("reloaded pool does not hold the new CA: %v", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("ca_file change not picked up within 5s")
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}
