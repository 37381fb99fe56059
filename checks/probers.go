package checks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http/httptrace"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/picket-dev/picket/internal/config"
)

// DefaultProbeTimeout bounds a probe whose context has no deadline and whose check sets no
// timeout, so that no probe can run forever.
const DefaultProbeTimeout = 10 * time.Second

// Probers returns the prober of each check type, keyed by config.Type*. This map is the one
// place where check kinds are wired. The probers share caches (CA pools, TLS configs, buffers and
// compiled regexps) created here, so call Probers once per agent and reuse the map; every
// prober in it may be called concurrently.
func Probers() map[string]Prober {
	cas := newCAPools()
	h := newHTTPProber(cas)
	return map[string]Prober{
		config.TypeHTTP: wrap(config.TypeHTTP, h.probe),
		config.TypeTCP:  wrap(config.TypeTCP, probeTCP),
		config.TypeDNS:  wrap(config.TypeDNS, dnsProber{resolvConf: "/etc/resolv.conf"}.probe),
		config.TypeTLS:  wrap(config.TypeTLS, tlsProber{cas: cas}.probe),
		config.TypeGRPC: wrap(config.TypeGRPC, grpcProber{cas: cas}.probe),
		config.TypeExec: wrap(config.TypeExec, probeExec),
	}
}

// wrap turns a probe function into a Prober: it bounds the run by a deadline, stamps Time
// and Duration, refuses a nil check, and maps an ended context to ReasonTimeout or
// ReasonCanceled so that every kind reports them alike.
func wrap(kind string, probe func(ctx context.Context, c *config.Check) Result) Prober {
	return func(ctx context.Context, c *config.Check) Result {
		start := time.Now()
		var r Result
		if c == nil {
			r = failf(ReasonConfig, "no %s check definition given", kind)
		} else {
			deadline, ok := ctx.Deadline()
			if !ok {
				d := c.Timeout.D()
				if d <= 0 {
					d = DefaultProbeTimeout
				}
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
				deadline, _ = ctx.Deadline()
			}
			r = probe(ctx, c)
			err := ctx.Err()
			switch {
			case r.Status == Passing:
			case errors.Is(err, context.Canceled):
				r.Status, r.Reason, r.Output = Critical, ReasonCanceled, "canceled: the agent stopped the run"
			case errors.Is(err, context.DeadlineExceeded) || r.Reason == ReasonTimeout:
				// A socket deadline set from ctx may fire just before ctx itself ends.
				r.Status, r.Reason = Critical, ReasonTimeout
				// The duration is said here, where the run's start is known: a probe that
				// says more (exec: "timeout after 5s, process group killed; output: …")
				// measured from its own, later start. Its details after the duration stay.
				detail := ""
				if rest, ok := strings.CutPrefix(r.Output, timeoutPrefix); ok {
					if i := strings.IndexByte(rest, ','); i >= 0 {
						detail = rest[i:]
					}
				}
				r.Output = timeoutOutput(start, deadline) + detail
			}
		}
		r.Time = start
		r.Duration = time.Since(start)
		return r
	}
}

const timeoutPrefix = "timeout after "

// timeoutOutput says how long the probe was given, like "timeout after 5s".
func timeoutOutput(start, deadline time.Time) string {
	d := deadline.Sub(start)
	if d >= time.Second {
		d = d.Round(10 * time.Millisecond)
	} else {
		d = d.Round(time.Millisecond)
	}
	return timeoutPrefix + d.String()
}

// failf returns a critical result with the given reason and output.
func failf(reason, format string, args ...any) Result {
	return Result{Status: Critical, Reason: reason, Output: fmt.Sprintf(format, args...)}
}

// missingBlock is the result of a check whose sub-block for its type is absent.
func missingBlock(kind, example string) Result {
	return failf(ReasonConfig, "%s check has no %s block (add %s: {%s})", kind, kind, kind, example)
}

// checkAddress validates a host:port target address.
func checkAddress(field, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, "/ ") || !validPort(port) {
		return fmt.Errorf("%s %q is not host:port (use an address like 127.0.0.1:443 or example.com:443)", field, addr)
	}
	return nil
}

// validPort accepts a port number or a service name such as "https".
func validPort(port string) bool {
	if n, err := strconv.Atoi(port); err == nil {
		return n > 0 && n <= 65535
	}
	if port == "" {
		return false
	}
	for _, r := range port {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// dialTimed dials addr and records the dns and connect phases into tm. An IP address is
// timed directly; a name is dialed with httptrace hooks that time its lookup and
// connection (keeping the dialer's fallback between addresses).
func dialTimed(ctx context.Context, d *net.Dialer, network, addr string, tm *timings) (net.Conn, error) {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if _, err := netip.ParseAddr(host); err == nil {
			start := time.Now()
			conn, err := d.DialContext(ctx, network, addr)
			if err == nil {
				tm.since(phaseConnect, start)
			}
			return conn, err
		}
	}
	return d.DialContext(httptrace.WithClientTrace(ctx, tm.trace()), network, addr)
}

// reasonOf classifies a network, TLS or context error into a Reason constant.
func reasonOf(err error) string {
	var (
		dnsErr  *net.DNSError
		invalid x509.CertificateInvalidError
		opErr   *net.OpError
	)
	switch {
	case err == nil:
		return ReasonNone
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.As(err, &dnsErr):
		return ReasonDNS
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired && invalid.Cert != nil && time.Now().After(invalid.Cert.NotAfter) {
			return ReasonCertExpiry
		}
		return ReasonTLS
	case isTLSError(err):
		return ReasonTLS
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return ReasonConnect
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return ReasonConnect
	}
	return ReasonProtocol
}

// isTLSError reports whether err comes from a TLS handshake or certificate verification.
func isTLSError(err error) bool {
	var (
		verify  *tls.CertificateVerificationError
		alert   tls.AlertError
		record  tls.RecordHeaderError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
	)
	return errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &record) ||
		errors.As(err, &unknown) || errors.As(err, &host)
}

// Phase indexes into timings, in the order phases happen.
const (
	phaseDNS = iota
	phaseConnect
	phaseTLS
	phaseProcessing
	phaseTransfer
	numPhases
)

// phaseName returns the metric label of phase p, as in blackbox_exporter.
func phaseName(p int) string {
	switch p {
	case phaseDNS:
		return "dns"
	case phaseConnect:
		return "connect"
	case phaseTLS:
		return "tls"
	case phaseProcessing:
		return "processing"
	default:
		return "transfer"
	}
}

// timings accumulates phase durations, from httptrace hooks on dials (dns, connect) and
// from probes that time a phase themselves. The net package may call the hooks from its
// own goroutines, even after a timed-out probe has returned, so the fields are guarded by
// mu.
type timings struct {
	mu        sync.Mutex
	dnsStart  time.Time
	connStart time.Time
	sum       [numPhases]time.Duration
	seen      [numPhases]bool
}

// add counts d towards phase p.
func (t *timings) add(p int, d time.Duration) {
	t.mu.Lock()
	t.sum[p] += d
	t.seen[p] = true
	t.mu.Unlock()
}

// since counts the time from start to now towards phase p; a zero start counts nothing.
func (t *timings) since(p int, start time.Time) {
	if !start.IsZero() {
		t.add(p, time.Since(start))
	}
}

// phases returns the phases that happened, in order.
func (t *timings) phases() []Phase {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, s := range t.seen {
		if s {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]Phase, 0, n)
	for p, s := range t.seen {
		if s {
			out = append(out, Phase{Name: phaseName(p), Duration: t.sum[p]})
		}
	}
	return out
}

// phase returns the accumulated duration of phase p.
func (t *timings) phase(p int) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sum[p]
}

// trace returns hooks that record dns and connect into t. Attach them to a dial's context
// with httptrace.WithClientTrace; net.Dialer honours them.
func (t *timings) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		DNSStart: func(httptrace.DNSStartInfo) {
			t.mu.Lock()
			t.dnsStart = time.Now()
			t.mu.Unlock()
		},
		DNSDone: func(httptrace.DNSDoneInfo) {
			t.mu.Lock()
			t.endLocked(phaseDNS, &t.dnsStart)
			t.mu.Unlock()
		},
		ConnectStart: func(string, string) {
			t.mu.Lock()
			if t.connStart.IsZero() { // with several addresses, time from the first attempt
				t.connStart = time.Now()
			}
			t.mu.Unlock()
		},
		ConnectDone: func(_, _ string, err error) {
			if err != nil {
				return // a later attempt may succeed; keep timing from the first start
			}
			t.mu.Lock()
			t.endLocked(phaseConnect, &t.connStart)
			t.mu.Unlock()
		},
	}
}

// endLocked adds the time since *start to phase p and clears *start. t.mu must be held.
func (t *timings) endLocked(p int, start *time.Time) {
	if start.IsZero() {
		return
	}
	t.sum[p] += time.Since(*start)
	t.seen[p] = true
	*start = time.Time{}
}

// formatDuration rounds d for humans: "1.2ms", "350µs", "2.5s".
func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// quoteCut quotes s for an output line, cut to about n bytes.
func quoteCut(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(cutString(s, n))
}

// cutString cuts s to at most n bytes, at a rune boundary, marking a cut with "...".
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
