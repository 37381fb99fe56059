package checks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

// tlsProber checks a TLS endpoint: handshake, chain verification and certificate expiry.
type tlsProber struct {
	cas *caPools
}

// probe handshakes with the address, verifies the chain itself (so that an expired
// certificate is told apart from an untrusted one and named in the output) and judges the
// earliest expiry of the chain against warning_days and critical_days.
func (p tlsProber) probe(ctx context.Context, c *config.Check) Result {
	t := c.TLS
	if t == nil {
		return missingBlock(config.TypeTLS, "address: example.com:443")
	}
	if err := checkAddress("address", t.Address); err != nil {
		return failf(ReasonConfig, "%v", err)
	}
	host, _, _ := net.SplitHostPort(t.Address)
	serverName := t.ServerName
	if serverName == "" {
		serverName = host
	}
	var roots *x509.CertPool // nil: the system roots
	if t.CAFile != "" {
		var err error
		if roots, err = p.cas.get(t.CAFile); err != nil {
			return failf(ReasonConfig, "%v", err)
		}
	}

	var tm timings
	d := net.Dialer{KeepAlive: -1}
	conn, err := dialTimed(ctx, &d, "tcp", t.Address, &tm)
	if err != nil {
		r := failf(reasonOf(err), "%v", err)
		r.Phases = tm.phases()
		return r
	}
	defer conn.Close()

	// Verification is done below, after the handshake; nothing is sent over this connection.
	tc := tls.Client(conn, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}) //nolint:gosec // verified below
	start := time.Now()
	err = tc.HandshakeContext(ctx)
	tm.add(phaseTLS, time.Since(start))
	if err != nil {
		r := failf(ReasonTLS, "TLS handshake with %s: %v", t.Address, err)
		r.Phases = tm.phases()
		return r
	}
	state := tc.ConnectionState()
	certs := state.PeerCertificates
	if len(certs) == 0 {
		r := failf(ReasonTLS, "%s sent no certificate", t.Address)
		r.Phases = tm.phases()
		return r
	}

	now := time.Now()
	chain := certs
	if !t.InsecureSkipVerify {
		opts := x509.VerifyOptions{Roots: roots, DNSName: serverName, CurrentTime: now, Intermediates: x509.NewCertPool()}
		for _, ic := range certs[1:] {
			opts.Intermediates.AddCert(ic)
		}
		chains, err := certs[0].Verify(opts)
		if err != nil {
			r := Result{Status: Critical, Reason: reasonOf(err), Phases: tm.phases()}
			r.CertExpiry, _ = earliestExpiry(certs)
			if r.Reason == ReasonCertExpiry {
				_, r.Output = judgeExpiry(certs, now, t.WarningDays, t.CriticalDays)
			} else {
				r.Reason = ReasonTLS
				r.Output = fmt.Sprintf("certificate not trusted: %v (%s)", err, certName(certs[0]))
			}
			return r
		}
		chain = chains[0]
	}
	r := Result{Status: Passing, Phases: tm.phases()}
	r.CertExpiry, _ = earliestExpiry(chain)
	r.Status, r.Output = judgeExpiry(chain, now, t.WarningDays, t.CriticalDays)
	if r.Status != Passing {
		r.Reason = ReasonCertExpiry
	}
	return r
}

// earliestExpiry returns the earliest NotAfter in chain and the certificate that has it.
func earliestExpiry(chain []*x509.Certificate) (time.Time, *x509.Certificate) {
	var first *x509.Certificate
	for _, c := range chain {
		if first == nil || c.NotAfter.Before(first.NotAfter) {
			first = c
		}
	}
	if first == nil {
		return time.Time{}, nil
	}
	return first.NotAfter, first
}

// judgeExpiry rates the earliest expiry of chain: critical once expired or within
// critDays, warning within warnDays (a zero number of days disables that level). The
// output names the certificate that expires first, like
// "certificate valid for 41d (CN=example.com)".
func judgeExpiry(chain []*x509.Certificate, now time.Time, warnDays, critDays int) (Status, string) {
	notAfter, cert := earliestExpiry(chain)
	if cert == nil {
		return Critical, "no certificate"
	}
	left := notAfter.Sub(now)
	name := certName(cert)
	switch {
	case left <= 0:
		return Critical, fmt.Sprintf("certificate expired %s ago (%s)", formatDays(-left), name)
	case critDays > 0 && left < days(critDays):
		return Critical, fmt.Sprintf("certificate expires in %s, within critical_days %d (%s)", formatDays(left), critDays, name)
	case warnDays > 0 && left < days(warnDays):
		return Warning, fmt.Sprintf("certificate expires in %s, within warning_days %d (%s)", formatDays(left), warnDays, name)
	}
	return Passing, fmt.Sprintf("certificate valid for %s (%s)", formatDays(left), name)
}

// days converts a number of days to a duration.
func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

// formatDays writes a remaining validity as whole days, or hours or minutes when short.
func formatDays(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	case d >= time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	default:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
}

// certName names a certificate for humans: its subject CN, else its first SAN.
func certName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return "CN=" + c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return "DNS=" + c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return "IP=" + c.IPAddresses[0].String()
	}
	return "subject " + c.Subject.String()
}

// peerChain returns the chain to judge for expiry: the verified chain when there is one,
// else the certificates the peer sent.
func peerChain(cs *tls.ConnectionState) []*x509.Certificate {
	if len(cs.VerifiedChains) > 0 {
		return cs.VerifiedChains[0]
	}
	return cs.PeerCertificates
}

// caPools caches the CA pools read from ca_file paths. A file is re-read when its size or
// modification time changes (checked at most once per recheck), so rotated CAs are picked
// up without a restart. Safe for concurrent use.
type caPools struct {
	recheck time.Duration // how often a cached file is stat'ed for changes
	mu      sync.Mutex
	pools   map[string]*caPool
}

type caPool struct {
	pool    *x509.CertPool
	size    int64
	mod     time.Time
	checked time.Time
}

const maxCAPools = 64 // distinct ca_file paths kept; more empty the cache

func newCAPools() *caPools { return &caPools{recheck: time.Second, pools: make(map[string]*caPool)} }

// get returns the pool of certificates in the PEM file at path. The same pointer is
// returned until the file changes.
func (c *caPools) get(path string) (*x509.CertPool, error) {
	now := time.Now()
	c.mu.Lock()
	e := c.pools[path]
	if e != nil && now.Sub(e.checked) < c.recheck {
		c.mu.Unlock()
		return e.pool, nil
	}
	c.mu.Unlock()

	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w (set it to a readable PEM file of CA certificates)", err)
	}
	if e != nil && fi.Size() == e.size && fi.ModTime().Equal(e.mod) {
		c.mu.Lock()
		e.checked = now
		c.mu.Unlock()
		return e.pool, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w (set it to a readable PEM file of CA certificates)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate (want -----BEGIN CERTIFICATE----- blocks)", path)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pools) >= maxCAPools {
		clear(c.pools)
	}
	c.pools[path] = &caPool{pool: pool, size: fi.Size(), mod: fi.ModTime(), checked: now}
	return pool, nil
}
