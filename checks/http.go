package checks

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

const (
	maxRedirects     = 10      // follow_redirects stops after this many
	maxBodyMatch     = 1 << 20 // bytes of the body searched by expect_body and expect_body_regex
	maxBodyDiscard   = 8 << 20 // bytes read and dropped after that; the rest is cut off
	maxHeaderBytes   = 64 << 10
	maxTLSConfigs    = 128 // distinct TLS settings kept; more empty the cache
	maxRegexps       = 256 // distinct expect_body_regex kept; more empty the cache
	httpUserAgent    = "picket"
	initialBodyBytes = 16 << 10
	httpBufferBytes  = 4 << 10
)

// httpProber probes URLs over HTTP/1.1. Every probe dials a new connection and closes it
// (as a first visit by a user would), writes the request with net/http's writer and reads
// the response with its parser. It uses no http.Transport: the exchange runs on the
// calling goroutine, with pooled buffers and cached TLS configs and regexps, which costs
// far less CPU than a transport's per-connection goroutines. There is no proxy support
// and no HTTP/2. Safe for concurrent use.
type httpProber struct {
	cas    *caPools
	dialer net.Dialer

	mu   sync.Mutex
	tlsc map[tlsKey]*tlsEntry

	remu    sync.Mutex
	regexps map[string]*regexp.Regexp

	exchanges sync.Pool // of *exchange
	bodies    sync.Pool // of *[]byte, for bodies searched by expect_body(_regex)
}

// tlsKey identifies a client TLS config: the check's settings and the server name used.
type tlsKey struct {
	caFile     string
	serverName string
	insecure   bool
}

// tlsEntry is a cached client TLS config and the CA pool it was built with, to notice a
// changed ca_file.
type tlsEntry struct {
	roots *x509.CertPool
	cfg   *tls.Config
}

func newHTTPProber(cas *caPools) *httpProber {
	return &httpProber{
		cas:     cas,
		dialer:  net.Dialer{KeepAlive: -1},
		tlsc:    make(map[tlsKey]*tlsEntry),
		regexps: make(map[string]*regexp.Regexp),
	}
}

// probe requests the URL, following redirects if asked, and judges the final response's
// status, body and certificate expiry.
func (p *httpProber) probe(ctx context.Context, c *config.Check) Result {
	h := c.HTTP
	if h == nil {
		return missingBlock(config.TypeHTTP, "url: http://127.0.0.1:8080/health")
	}
	if _, err := matchStatus(0, h.ExpectStatus); err != nil {
		return failf(ReasonConfig, "%v", err)
	}
	var re *regexp.Regexp
	if h.ExpectBodyRegex != "" {
		var err error
		if re, err = p.regexp(h.ExpectBodyRegex); err != nil {
			return failf(ReasonConfig, "%v", err)
		}
	}
	req, err := newHTTPRequest(ctx, h, h.Method, h.URL, h.Body, true)
	if err != nil {
		return failf(ReasonConfig, "%v", err)
	}
	if h.TLS.CAFile != "" { // report a bad ca_file even when the URL is http://
		if _, err := p.cas.get(h.TLS.CAFile); err != nil {
			return failf(ReasonConfig, "%v", err)
		}
	}

	tm := new(timings)
	var ex *exchange
	for redirects := 0; ; redirects++ {
		var cfg *tls.Config
		if req.URL.Scheme == "https" {
			if cfg, err = p.tlsConfig(h.TLS, req.URL.Hostname()); err != nil {
				return failf(ReasonConfig, "%v", err)
			}
		}
		var r *Result
		ex, r = p.roundTrip(ctx, req, cfg, tm)
		if r != nil {
			return *r
		}
		next := ""
		if h.FollowRedirects && isRedirect(ex.resp.StatusCode) {
			next = ex.resp.Header.Get("Location")
		}
		if next == "" {
			break
		}
		status := ex.resp.StatusCode
		p.release(ex)
		if redirects == maxRedirects {
			return Result{Status: Critical, Reason: ReasonStatus, Phases: tm.phases(),
				Output: fmt.Sprintf("stopped after %d redirects (last to %s)", maxRedirects, cutString(next, 128))}
		}
		if req, err = redirect(ctx, h, req, status, next); err != nil {
			return Result{Status: Critical, Reason: ReasonProtocol, Output: err.Error(), Phases: tm.phases()}
		}
	}
	defer p.release(ex)
	return p.judge(h, re, ex, tm)
}

// judge reads the body and rates the final response.
func (p *httpProber) judge(h *config.HTTPCheck, re *regexp.Regexp, ex *exchange, tm *timings) Result {
	resp := ex.resp
	// Read what expect_body needs, then drain a bounded rest so that transfer is timed.
	var body *[]byte
	var bodyErr error
	if h.ExpectBody != "" || re != nil {
		body = p.bodyBuf()
		defer p.bodies.Put(body)
		*body, bodyErr = readUpTo(resp.Body, (*body)[:0], maxBodyMatch)
	}
	if bodyErr == nil {
		_, bodyErr = io.CopyN(io.Discard, resp.Body, maxBodyDiscard)
		if errors.Is(bodyErr, io.EOF) {
			bodyErr = nil
		}
	}
	tm.since(phaseTransfer, ex.firstByte)

	r := Result{Status: Passing, Phases: tm.phases(), Output: resp.Status}
	if ex.tls != nil {
		r.CertExpiry, _ = earliestExpiry(peerChain(ex.tls))
	}
	if bodyErr != nil {
		r.Status, r.Reason, r.Output = Critical, reasonOf(bodyErr), fmt.Sprintf("%s, reading body: %v", resp.Status, bodyErr)
		return r
	}
	if ok, _ := matchStatus(resp.StatusCode, h.ExpectStatus); !ok {
		r.Status, r.Reason = Critical, ReasonStatus
		r.Output = fmt.Sprintf("status %d, want %s", resp.StatusCode, wantStatus(h.ExpectStatus))
		return r
	}
	if body != nil {
		if h.ExpectBody != "" && !bytes.Contains(*body, []byte(h.ExpectBody)) {
			r.Status, r.Reason = Critical, ReasonBody
			r.Output = fmt.Sprintf("%s, but the body does not contain %s", resp.Status, quoteCut(h.ExpectBody, 64))
			return r
		}
		if re != nil && !re.Match(*body) {
			r.Status, r.Reason = Critical, ReasonBody
			r.Output = fmt.Sprintf("%s, but the body does not match %s", resp.Status, quoteCut(h.ExpectBodyRegex, 64))
			return r
		}
	}
	if ex.tls != nil && (h.TLS.WarningDays > 0 || h.TLS.CriticalDays > 0) {
		status, detail := judgeExpiry(peerChain(ex.tls), time.Now(), h.TLS.WarningDays, h.TLS.CriticalDays)
		if status != Passing {
			r.Status, r.Reason, r.Output = status, ReasonCertExpiry, resp.Status+", "+detail
		}
	}
	return r
}

// exchange is one request and response on a connection of its own. Pooled: release it.
type exchange struct {
	conn      net.Conn
	stop      func() bool // unregisters the cancellation hook
	lim       limitedReader
	br        *bufio.Reader
	bw        *bufio.Writer
	resp      *http.Response
	tls       *tls.ConnectionState
	firstByte time.Time
}

// roundTrip dials, handshakes if cfg is set, writes req and reads the response header.
// On failure it returns the result to report, and nothing to release.
func (p *httpProber) roundTrip(ctx context.Context, req *http.Request, cfg *tls.Config, tm *timings) (*exchange, *Result) {
	fail := func(reason string, err error) (*exchange, *Result) {
		r := failf(reason, "%v", err)
		r.Phases = tm.phases()
		return nil, &r
	}
	addr := hostPort(req.URL)
	conn, err := dialTimed(ctx, &p.dialer, "tcp", addr, tm)
	if err != nil {
		return fail(reasonOf(err), err)
	}
	ex := p.getExchange()
	ex.conn = conn
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	ex.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	if cfg != nil {
		start := time.Now()
		tc := tls.Client(conn, cfg)
		err := tc.Handshake() // bounded by the deadline and the cancellation hook above
		tm.since(phaseTLS, start)
		if err != nil {
			p.release(ex)
			r, res := fail(handshakeReason(err), fmt.Errorf("TLS handshake with %s: %w", addr, err))
			var verify *tls.CertificateVerificationError
			if errors.As(err, &verify) {
				res.CertExpiry, _ = earliestExpiry(verify.UnverifiedCertificates)
				if res.Reason == ReasonCertExpiry {
					_, res.Output = judgeExpiry(verify.UnverifiedCertificates, time.Now(), 0, 0)
				}
			}
			return r, res
		}
		state := tc.ConnectionState()
		ex.tls, ex.conn = &state, tc
	}

	ex.bw.Reset(ex.conn)
	err = req.Write(ex.bw)
	if err == nil {
		err = ex.bw.Flush()
	}
	ex.bw.Reset(nil)
	if err != nil {
		p.release(ex)
		return fail(reasonOf(err), fmt.Errorf("sending the request to %s: %w", addr, err))
	}
	wrote := time.Now()
	ex.lim = limitedReader{r: ex.conn, n: maxHeaderBytes}
	ex.br.Reset(&ex.lim)
	if _, err = ex.br.Peek(1); err == nil {
		ex.firstByte = time.Now()
		tm.add(phaseProcessing, ex.firstByte.Sub(wrote))
		ex.resp, err = http.ReadResponse(ex.br, req)
		// Skip informational responses such as 100 Continue, as net/http's client does.
		for err == nil && ex.resp.StatusCode >= 100 && ex.resp.StatusCode < 200 && ex.resp.StatusCode != http.StatusSwitchingProtocols {
			ex.resp, err = http.ReadResponse(ex.br, req)
		}
	}
	if err != nil {
		switch {
		case ex.lim.n <= 0:
			err = fmt.Errorf("response header larger than %d bytes", maxHeaderBytes)
		case errors.Is(err, io.EOF):
			err = errors.New("the server closed the connection without a response")
		}
		p.release(ex)
		return fail(reasonOf(err), fmt.Errorf("reading the response from %s: %w", addr, err))
	}
	ex.lim.n = math.MaxInt64 // judge bounds what it reads of the body
	return ex, nil
}

// handshakeReason classifies a failed TLS handshake: tls unless it was a timeout, a
// cancellation, a dropped connection or an expired certificate.
func handshakeReason(err error) string {
	switch r := reasonOf(err); r {
	case ReasonTimeout, ReasonCanceled, ReasonConnect, ReasonCertExpiry:
		return r
	}
	return ReasonTLS
}

// release closes the exchange's connection and returns it to the pool.
func (p *httpProber) release(ex *exchange) {
	ex.stop()
	_ = ex.conn.Close()
	ex.br.Reset(nil)
	*ex = exchange{br: ex.br, bw: ex.bw}
	p.exchanges.Put(ex)
}

func (p *httpProber) getExchange() *exchange {
	if ex, ok := p.exchanges.Get().(*exchange); ok {
		return ex
	}
	return &exchange{br: bufio.NewReaderSize(nil, httpBufferBytes), bw: bufio.NewWriterSize(nil, httpBufferBytes)}
}

// limitedReader reads from r until n bytes were read; then it reports io.EOF.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(b []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > l.n {
		b = b[:l.n]
	}
	n, err := l.r.Read(b)
	l.n -= int64(n)
	return n, err
}

// newHTTPRequest builds the request of a check, or of a redirect hop. Without
// credentials, configured headers that carry them are left out.
func newHTTPRequest(ctx context.Context, h *config.HTTPCheck, method, rawURL, body string, credentials bool) (*http.Request, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, fmt.Errorf("url %q with method %q: %w", rawURL, method, err)
	}
	if (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return nil, fmt.Errorf("url %q is not an http:// or https:// URL with a host", rawURL)
	}
	req.Close = true // "Connection: close": every probe is a new connection
	req.Header.Set("User-Agent", httpUserAgent)
	for k, v := range h.Headers {
		switch {
		case strings.EqualFold(k, "Host"):
			req.Host = v
		case credentials || !isCredentialHeader(k):
			req.Header.Set(k, v)
		}
	}
	if u := req.URL.User; u != nil && req.Header.Get("Authorization") == "" {
		pass, _ := u.Password()
		req.SetBasicAuth(u.Username(), pass)
	}
	return req, nil
}

// redirect builds the request that follows a redirect, as net/http's client would:
// 301, 302 and 303 turn a request other than GET or HEAD into a body-less GET; headers
// that carry credentials are kept only on the same host; a Host header only on a
// relative redirect.
func redirect(ctx context.Context, h *config.HTTPCheck, prev *http.Request, status int, location string) (*http.Request, error) {
	u, err := prev.URL.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("redirect to bad Location %s: %w", quoteCut(location, 128), err)
	}
	method, body := prev.Method, h.Body
	if status != http.StatusTemporaryRedirect && status != http.StatusPermanentRedirect &&
		method != http.MethodGet && method != http.MethodHead {
		method, body = http.MethodGet, ""
	}
	req, err := newHTTPRequest(ctx, h, method, u.String(), body, u.Hostname() == prev.URL.Hostname())
	if err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	if loc, err := url.Parse(location); err == nil && loc.IsAbs() {
		req.Host = ""
	}
	return req, nil
}

// isCredentialHeader reports whether a header carries credentials that a redirect to
// another host must not receive.
func isCredentialHeader(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Authorization", "Www-Authenticate", "Cookie", "Cookie2", "Proxy-Authorization":
		return true
	}
	return false
}

// isRedirect reports whether code is a redirect that carries a Location to follow.
func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// hostPort returns the address to dial for u, with the scheme's default port.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// tlsConfig returns the shared client config for the check's TLS settings and the host,
// building it on first use and again when the ca_file changes.
func (p *httpProber) tlsConfig(t config.TLSClient, host string) (*tls.Config, error) {
	var roots *x509.CertPool // nil: the system roots
	if t.CAFile != "" {
		var err error
		if roots, err = p.cas.get(t.CAFile); err != nil {
			return nil, err
		}
	}
	name := t.ServerName
	if name == "" {
		name = host
	}
	key := tlsKey{caFile: t.CAFile, serverName: name, insecure: t.InsecureSkipVerify}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.tlsc[key]; e != nil && e.roots == roots {
		return e.cfg, nil
	}
	if len(p.tlsc) >= maxTLSConfigs {
		clear(p.tlsc)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: name, InsecureSkipVerify: t.InsecureSkipVerify, NextProtos: []string{"http/1.1"}} //nolint:gosec // the user asked for it
	p.tlsc[key] = &tlsEntry{roots: roots, cfg: cfg}
	return cfg, nil
}

// regexp returns the compiled expect_body_regex.
func (p *httpProber) regexp(expr string) (*regexp.Regexp, error) {
	p.remu.Lock()
	defer p.remu.Unlock()
	if re := p.regexps[expr]; re != nil {
		return re, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("expect_body_regex %q: %w (use Go RE2 syntax)", expr, err)
	}
	if len(p.regexps) >= maxRegexps {
		clear(p.regexps)
	}
	p.regexps[expr] = re
	return re, nil
}

func (p *httpProber) bodyBuf() *[]byte {
	if b, ok := p.bodies.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, initialBodyBytes)
	return &b
}

// readUpTo appends at most n bytes of r to buf, growing it as needed. io.EOF is not an error.
func readUpTo(r io.Reader, buf []byte, n int) ([]byte, error) {
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// matchStatus reports whether code is one of want: codes like "200" and classes like
// "2xx". An empty want means 2xx. An entry that is neither is an error, whatever code is.
func matchStatus(code int, want []string) (bool, error) {
	if len(want) == 0 {
		return code >= 200 && code <= 299, nil
	}
	ok := false
	for _, w := range want {
		w = strings.TrimSpace(w)
		if len(w) == 3 && w[0] >= '1' && w[0] <= '5' && strings.EqualFold(w[1:], "xx") {
			ok = ok || code/100 == int(w[0]-'0')
			continue
		}
		n, err := strconv.Atoi(w)
		if err != nil || n < 100 || n > 599 {
			return false, fmt.Errorf("expect_status %q is not a status code or class (use values like 200 or 2xx)", w)
		}
		ok = ok || code == n
	}
	return ok, nil
}

// wantStatus describes expect_status for an output line.
func wantStatus(want []string) string {
	if len(want) == 0 {
		return "2xx"
	}
	return strings.Join(want, " or ")
}
