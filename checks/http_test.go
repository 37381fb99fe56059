package checks

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

func httpCheck(h config.HTTPCheck) *config.Check {
	return &config.Check{Name: "web", Type: config.TypeHTTP, HTTP: &h}
}

// testHandler serves the paths the HTTP tests probe.
func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "all good\n") })
	mux.HandleFunc("/unavailable", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "down")
	})
	mux.HandleFunc("/created", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || string(b) != `{"ping":1}` || r.Header.Get("X-Token") != "t0k" ||
			r.Host != "api.internal" || r.Header.Get("User-Agent") != "picket" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		io.WriteString(w, "pong")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		chunk := strings.Repeat("x", 64<<10)
		for range (maxBodyMatch + maxBodyDiscard) / len(chunk) * 2 { // twice what a probe reads
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		io.WriteString(w, "needle")
	})
	mux.HandleFunc("/basic", func(w http.ResponseWriter, r *http.Request) {
		if u, pw, ok := r.BasicAuth(); !ok || u != "mon" || pw != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	mux.HandleFunc("/method", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s auth=%q", r.Method, b, r.Header.Get("Authorization"))
	})
	mux.HandleFunc("/to", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		http.Redirect(w, r, r.URL.Query().Get("url"), code)
	})
	mux.HandleFunc("/early-hints", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	})
	mux.HandleFunc("/huge-header", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Huge", strings.Repeat("h", maxHeaderBytes+1))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done(): // the probe gave up and closed the connection
		case <-time.After(10 * time.Second):
		}
	})
	return mux
}

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(testHandler())
	defer srv.Close()
	u := srv.URL

	tests := []httpCase{
		{"ok", config.HTTPCheck{URL: u + "/ok"}, Passing, ReasonNone, []string{"200 OK"}, "connect,processing,transfer"},
		{"localhost resolves", config.HTTPCheck{URL: strings.Replace(u, "127.0.0.1", "localhost", 1) + "/ok"}, Passing, ReasonNone, []string{"200 OK"}, "dns,connect,processing,transfer"},
		{"default wants 2xx", config.HTTPCheck{URL: u + "/unavailable"}, Critical, ReasonStatus, []string{"status 503, want 2xx"}, "connect,processing,transfer"},
		{"exact code", config.HTTPCheck{URL: u + "/created", ExpectStatus: []string{"200"}}, Critical, ReasonStatus, []string{"status 201, want 200"}, ""},
		{"code list", config.HTTPCheck{URL: u + "/created", ExpectStatus: []string{"200", "201"}}, Passing, ReasonNone, []string{"201 Created"}, ""},
		{"class 5xx", config.HTTPCheck{URL: u + "/unavailable", ExpectStatus: []string{"5XX"}}, Passing, ReasonNone, []string{"503"}, ""},
		{"class mismatch", config.HTTPCheck{URL: u + "/ok", ExpectStatus: []string{"3xx", "404"}}, Critical, ReasonStatus, []string{"status 200, want 3xx or 404"}, ""},
		{"body contains", config.HTTPCheck{URL: u + "/ok", ExpectBody: "good"}, Passing, ReasonNone, []string{"200 OK"}, ""},
		{"body missing", config.HTTPCheck{URL: u + "/ok", ExpectBody: "bad"}, Critical, ReasonBody, []string{`does not contain "bad"`}, ""},
		{"regex", config.HTTPCheck{URL: u + "/ok", ExpectBodyRegex: `^all \w+\s*$`}, Passing, ReasonNone, nil, ""},
		{"regex mismatch", config.HTTPCheck{URL: u + "/ok", ExpectBodyRegex: `^good`}, Critical, ReasonBody, []string{`does not match "^good"`}, ""},
		{"status before body", config.HTTPCheck{URL: u + "/unavailable", ExpectBody: "up"}, Critical, ReasonStatus, []string{"503"}, ""},
		{"method body headers", config.HTTPCheck{URL: u + "/echo", Method: "POST", Body: `{"ping":1}`,
			Headers: map[string]string{"X-Token": "t0k", "Host": "api.internal"}, ExpectBody: "pong"}, Passing, ReasonNone, nil, ""},
		{"redirect not followed", config.HTTPCheck{URL: u + "/redirect"}, Critical, ReasonStatus, []string{"status 302, want 2xx"}, ""},
		{"redirect expected", config.HTTPCheck{URL: u + "/redirect", ExpectStatus: []string{"302"}}, Passing, ReasonNone, []string{"302 Found"}, ""},
		{"redirect followed", config.HTTPCheck{URL: u + "/redirect", FollowRedirects: true, ExpectBody: "good"}, Passing, ReasonNone, []string{"200 OK"}, ""},
		{"redirect loop", config.HTTPCheck{URL: u + "/loop", FollowRedirects: true}, Critical, ReasonStatus, []string{"stopped after 10 redirects"}, ""},
		{"match window bounded", config.HTTPCheck{URL: u + "/big", ExpectBody: "needle"}, Critical, ReasonBody, []string{"needle"}, ""},
		{"refused", config.HTTPCheck{URL: "http://" + closedPort(t) + "/"}, Critical, ReasonConnect, []string{"connection refused"}, ""},
		{"https to plain server", config.HTTPCheck{URL: strings.Replace(u, "http:", "https:", 1) + "/ok"}, Critical, ReasonTLS, nil, ""},
		{"bad url", config.HTTPCheck{URL: "ftp://127.0.0.1/x"}, Critical, ReasonConfig, []string{"not an http:// or https:// URL"}, ""},
		{"no url", config.HTTPCheck{}, Critical, ReasonConfig, nil, ""},
		{"bad method", config.HTTPCheck{URL: u, Method: "GE T"}, Critical, ReasonConfig, []string{"method"}, ""},
		{"bad expect_status", config.HTTPCheck{URL: u, ExpectStatus: []string{"2xx", "ok"}}, Critical, ReasonConfig, []string{`expect_status "ok"`}, ""},
		{"bad regex", config.HTTPCheck{URL: u, ExpectBodyRegex: "("}, Critical, ReasonConfig, []string{"expect_body_regex"}, ""},
		{"missing ca_file", config.HTTPCheck{URL: u, TLS: config.TLSClient{CAFile: "/nonexistent/ca.pem"}}, Critical, ReasonConfig, []string{"ca_file", "/nonexistent/ca.pem"}, ""},
	}
	probe := Probers()[config.TypeHTTP]
	for _, tt := range append(tests, redirectTests(u)...) {
		t.Run(tt.name, func(t *testing.T) {
			r := runWith(t, probe, httpCheck(tt.check), 5*time.Second)
			expect(t, r, tt.status, tt.reason, tt.output...)
			if tt.phases != "" && phaseNamesOf(r) != tt.phases {
				t.Errorf("phases %s, want %s", phaseNamesOf(r), tt.phases)
			}
		})
	}
}

// httpCase is one row of TestHTTP.
type httpCase struct {
	name   string
	check  config.HTTPCheck
	status Status
	reason string
	output []string
	phases string
}

// redirectTests checks methods, bodies and credentials across redirects, and other
// corners of the HTTP exchange, against the test server at u.
func redirectTests(u string) []httpCase {
	other := strings.Replace(u, "127.0.0.1", "localhost", 1) // another host name, same server
	post := func(url string) config.HTTPCheck {
		return config.HTTPCheck{URL: url, Method: "POST", Body: "data", FollowRedirects: true,
			Headers: map[string]string{"Authorization": "Bearer t"}}
	}
	return []httpCase{
		{"302 turns POST into GET", withBody(post(u+"/to?code=302&url=/method"), `GET  auth="Bearer t"`), Passing, ReasonNone, nil, ""},
		{"307 keeps POST and body", withBody(post(u+"/to?code=307&url=/method"), `POST data auth="Bearer t"`), Passing, ReasonNone, nil, ""},
		{"308 keeps POST and body", withBody(post(u+"/to?code=308&url=/method"), `POST data`), Passing, ReasonNone, nil, ""},
		{"credentials not sent to another host", withBody(post(u+"/to?code=307&url="+url.QueryEscape(other+"/method")), `POST data auth=""`), Passing, ReasonNone, nil, ""},
		{"basic auth from url", config.HTTPCheck{URL: strings.Replace(u, "http://", "http://mon:s3cret@", 1) + "/basic"}, Passing, ReasonNone, nil, ""},
		{"basic auth wrong", config.HTTPCheck{URL: strings.Replace(u, "http://", "http://mon:nope@", 1) + "/basic"}, Critical, ReasonStatus, []string{"status 401"}, ""},
		{"HEAD", config.HTTPCheck{URL: u + "/ok", Method: "HEAD"}, Passing, ReasonNone, []string{"200 OK"}, ""},
		{"informational skipped", config.HTTPCheck{URL: u + "/early-hints", ExpectBody: "final"}, Passing, ReasonNone, []string{"200 OK"}, ""},
		{"huge header", config.HTTPCheck{URL: u + "/huge-header"}, Critical, ReasonProtocol, []string{"response header larger than 65536 bytes"}, ""},
	}
}

func withBody(h config.HTTPCheck, body string) config.HTTPCheck {
	h.ExpectBody = body
	return h
}

func TestHTTPNoResponse(t *testing.T) {
	hangUp := serveTCP(t, func(c net.Conn) { c.Read(make([]byte, 1024)) }) // reads the request, closes
	r := runProbe(t, httpCheck(config.HTTPCheck{URL: "http://" + hangUp + "/"}), 5*time.Second)
	expect(t, r, Critical, ReasonProtocol, "closed the connection without a response")
	garbage := serveTCP(t, func(c net.Conn) {
		c.Read(make([]byte, 1024))
		io.WriteString(c, "SSH-2.0-OpenSSH\r\n")
	})
	r = runProbe(t, httpCheck(config.HTTPCheck{URL: "http://" + garbage + "/"}), 5*time.Second)
	expect(t, r, Critical, ReasonProtocol, "malformed HTTP")
}

func TestHTTPTimeout(t *testing.T) {
	srv := httptest.NewServer(testHandler())
	defer srv.Close()
	start := time.Now()
	r := runProbe(t, httpCheck(config.HTTPCheck{URL: srv.URL + "/slow"}), 300*time.Millisecond)
	expect(t, r, Critical, ReasonTimeout, "timeout after 300ms")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("timed-out probe took %v", took)
	}
	if phaseNamesOf(r) != "connect" {
		t.Errorf("phases %s, want connect (no response came)", phaseNamesOf(r))
	}
}

func TestHTTPCanceled(t *testing.T) {
	srv := httptest.NewServer(testHandler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	r := Probers()[config.TypeHTTP](ctx, httpCheck(config.HTTPCheck{URL: srv.URL + "/slow"}))
	expect(t, r, Critical, ReasonCanceled, "canceled")
}

func TestHTTPS(t *testing.T) {
	ca := newTestCA(t, "picket test CA")
	other := newTestCA(t, "someone else")
	start := func(cert tls.Certificate) *httptest.Server {
		srv := httptest.NewUnstartedServer(testHandler())
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv
	}
	valid := ca.issue(t, inDays(90))
	soon := ca.issue(t, inDays(5))
	expired := ca.issue(t, inDays(-2))
	validSrv, soonSrv, expiredSrv := start(valid), start(soon), start(expired)
	untrustedSrv := start(other.issue(t, inDays(90)))

	tests := []struct {
		name   string
		url    string
		tls    config.TLSClient
		status Status
		reason string
		output []string
		expiry time.Time // zero: no CertExpiry expected
	}{
		{"valid", validSrv.URL + "/ok", config.TLSClient{CAFile: ca.caFile, WarningDays: 14, CriticalDays: 7}, Passing, ReasonNone, []string{"200 OK"}, valid.Leaf.NotAfter},
		{"by name", strings.Replace(validSrv.URL, "127.0.0.1", "localhost", 1) + "/ok", config.TLSClient{CAFile: ca.caFile}, Passing, ReasonNone, nil, valid.Leaf.NotAfter},
		{"expires within warning", soonSrv.URL + "/ok", config.TLSClient{CAFile: ca.caFile, WarningDays: 14, CriticalDays: 3}, Warning, ReasonCertExpiry, []string{"200 OK", "expires in 4d", "CN=localhost"}, soon.Leaf.NotAfter},
		{"expires within critical", soonSrv.URL + "/ok", config.TLSClient{CAFile: ca.caFile, WarningDays: 30, CriticalDays: 7}, Critical, ReasonCertExpiry, []string{"critical_days 7"}, soon.Leaf.NotAfter},
		{"no thresholds", soonSrv.URL + "/ok", config.TLSClient{CAFile: ca.caFile}, Passing, ReasonNone, nil, soon.Leaf.NotAfter},
		{"expired", expiredSrv.URL + "/ok", config.TLSClient{CAFile: ca.caFile}, Critical, ReasonCertExpiry, []string{"certificate expired 2d ago"}, expired.Leaf.NotAfter},
		{"untrusted", untrustedSrv.URL + "/ok", config.TLSClient{CAFile: ca.caFile}, Critical, ReasonTLS, []string{"certificate"}, time.Time{}},
		{"system roots", validSrv.URL + "/ok", config.TLSClient{}, Critical, ReasonTLS, []string{"unknown authority"}, valid.Leaf.NotAfter},
		{"insecure", untrustedSrv.URL + "/ok", config.TLSClient{InsecureSkipVerify: true}, Passing, ReasonNone, nil, time.Time{}},
		{"wrong server_name", validSrv.URL + "/ok", config.TLSClient{CAFile: ca.caFile, ServerName: "db.internal"}, Critical, ReasonTLS, []string{"db.internal"}, valid.Leaf.NotAfter},
		{"right server_name", validSrv.URL + "/ok", config.TLSClient{CAFile: ca.caFile, ServerName: "localhost"}, Passing, ReasonNone, nil, valid.Leaf.NotAfter},
	}
	probe := Probers()[config.TypeHTTP]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runWith(t, probe, httpCheck(config.HTTPCheck{URL: tt.url, TLS: tt.tls}), 5*time.Second)
			expect(t, r, tt.status, tt.reason, tt.output...)
			if !tt.expiry.IsZero() && !r.CertExpiry.Equal(tt.expiry) {
				t.Errorf("CertExpiry %v, want the leaf's %v", r.CertExpiry, tt.expiry)
			}
			if r.Status == Passing && phaseNamesOf(r) != "connect,tls,processing,transfer" && phaseNamesOf(r) != "dns,connect,tls,processing,transfer" {
				t.Errorf("phases %s", phaseNamesOf(r))
			}
		})
	}
}

func TestMatchStatus(t *testing.T) {
	tests := []struct {
		code int
		want []string
		ok   bool
		err  bool
	}{
		{200, nil, true, false},
		{299, nil, true, false},
		{301, nil, false, false},
		{404, []string{"404"}, true, false},
		{404, []string{" 4xx "}, true, false},
		{500, []string{"2xx", "4xx"}, false, false},
		{200, []string{"200", "6xx"}, false, true},
		{200, []string{"99"}, false, true},
		{200, []string{""}, false, true},
	}
	for _, tt := range tests {
		ok, err := matchStatus(tt.code, tt.want)
		if ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("matchStatus(%d, %q) = %v, %v; want %v, error %v", tt.code, tt.want, ok, err, tt.ok, tt.err)
		}
	}
}

// TestHTTPNewConnectionEachProbe proves that probes do not reuse connections.
func TestHTTPNewConnectionEachProbe(t *testing.T) {
	srv := httptest.NewUnstartedServer(testHandler())
	conns := make(chan struct{}, 10)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns <- struct{}{}
		}
	}
	srv.Start()
	defer srv.Close()
	probe := Probers()[config.TypeHTTP]
	for range 3 {
		expect(t, runWith(t, probe, httpCheck(config.HTTPCheck{URL: srv.URL + "/ok"}), 5*time.Second), Passing, ReasonNone)
	}
	if n := len(conns); n != 3 {
		t.Errorf("3 probes opened %d connections, want 3", n)
	}
}

// BenchmarkHTTPProbe measures one probe of a local server, a new connection each time.
// The server runs in the same process, so ns/op includes its side of the exchange.
func BenchmarkHTTPProbe(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	probe := Probers()[config.TypeHTTP]
	c := httpCheck(config.HTTPCheck{URL: srv.URL + "/health", ExpectBody: "ok"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if r := probe(ctx, c); r.Status != Passing {
			b.Fatalf("probe failed: %s", r.Output)
		}
	}
}
