package ui

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

// serve runs one request through a mux that mounts Handler the way the agent does.
func serve(t *testing.T, h http.Handler, method, target string, header ...string) *http.Response {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix, h)
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hashedName finds the content-hashed name index.html uses for a plain asset name.
func hashedName(t *testing.T, index, plain string) string {
	t.Helper()
	dot := strings.LastIndex(plain, ".")
	re := regexp.MustCompile(`"(` + regexp.QuoteMeta(plain[:dot]) + `\.[0-9a-f]{12}` + regexp.QuoteMeta(plain[dot:]) + `)"`)
	m := re.FindStringSubmatch(index)
	if m == nil {
		t.Fatalf("index.html does not refer to %s by a hashed name:\n%s", plain, index)
	}
	return m[1]
}

func TestHandler(t *testing.T) {
	h := Handler()
	index := body(t, serve(t, h, "GET", "/ui/"))
	js, css, icon := hashedName(t, index, "app.js"), hashedName(t, index, "app.css"), hashedName(t, index, "favicon.svg")

	tests := []struct {
		name, method, path string
		status             int
		contentType        string
		cache              string
		location           string
		bodyHas            string
	}{
		{"index", "GET", "/ui/", 200, "text/html; charset=utf-8", "no-cache", "", "<title>picket status</title>"},
		{"index by name", "GET", "/ui/index.html", 200, "text/html; charset=utf-8", "no-cache", "", "<title>picket status</title>"},
		{"hashed script", "GET", "/ui/" + js, 200, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", "", "'use strict'"},
		{"hashed style", "GET", "/ui/" + css, 200, "text/css; charset=utf-8", "public, max-age=31536000, immutable", "", ":root"},
		{"hashed icon", "GET", "/ui/" + icon, 200, "image/svg+xml", "public, max-age=31536000, immutable", "", "<svg"},
		{"plain script revalidates", "GET", "/ui/app.js", 200, "text/javascript; charset=utf-8", "no-cache", "", "'use strict'"},
		{"plain style revalidates", "GET", "/ui/app.css", 200, "text/css; charset=utf-8", "no-cache", "", ":root"},
		{"head", "HEAD", "/ui/", 200, "text/html; charset=utf-8", "no-cache", "", ""},
		{"unknown file", "GET", "/ui/nope.js", 404, "text/plain; charset=utf-8", "", "", "not found: /ui/nope.js"},
		{"stale hash", "GET", "/ui/app.000000000000.js", 404, "text/plain; charset=utf-8", "", "", "not found"},
		{"no directory listing", "GET", "/ui/static/", 404, "text/plain; charset=utf-8", "", "", "not found"},
		{"traversal is cleaned by the mux", "GET", "/ui/../v1/agent", 307, "", "", "/v1/agent", ""},
		{"root without slash", "GET", "/ui", 307, "", "", "/ui/", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := serve(t, h, tc.method, tc.path)
			b := body(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s: status %d, want %d; body %q", tc.method, tc.path, resp.StatusCode, tc.status, b)
			}
			if got := resp.Header.Get("Content-Type"); tc.contentType != "" && got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if got := resp.Header.Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control %q, want %q", got, tc.cache)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if !strings.Contains(b, tc.bodyHas) {
				t.Errorf("body lacks %q: %.200q", tc.bodyHas, b)
			}
			if tc.method == "HEAD" && b != "" {
				t.Errorf("HEAD answered a body of %d bytes", len(b))
			}
			if tc.status == 200 && resp.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
		})
	}
}

// TestSecurityHeaders: every answer of the handler itself — file, 404, redirect, wrong
// method — carries the security headers.
func TestSecurityHeaders(t *testing.T) {
	h := Handler()
	want := map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/ui/"}, {"GET", "/ui/app.js"}, {"GET", "/ui/missing"}, {"GET", "/ui"}, {"POST", "/ui/"}, {"HEAD", "/ui/app.css"},
	} {
		// Called directly, not through the mux: the handler must also refuse other methods.
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		for k, v := range want {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("%s %s: %s = %q, want %q", tc.method, tc.path, k, got, v)
			}
		}
		if tc.method == "POST" && (rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD") {
			t.Errorf("POST /ui/: %d Allow=%q, want 405 with Allow: GET, HEAD", rec.Code, rec.Header().Get("Allow"))
		}
		if tc.path == "/ui" && (rec.Code != http.StatusTemporaryRedirect || rec.Header().Get("Location") != "/ui/") {
			t.Errorf("GET /ui: %d to %q, want 307 to /ui/", rec.Code, rec.Header().Get("Location"))
		}
	}
	// The policy allows nothing inline and no other origin.
	for _, directive := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, directive) {
			t.Errorf("CSP lacks %q", directive)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") || strings.Contains(ContentSecurityPolicy, "*") {
		t.Errorf("CSP allows unsafe sources: %s", ContentSecurityPolicy)
	}
}

func TestConditionalAndGzip(t *testing.T) {
	h := Handler()
	first := serve(t, h, "GET", "/ui/app.js")
	etag := first.Header.Get("ETag")
	plain := body(t, first)
	if resp := serve(t, h, "GET", "/ui/app.js", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match %s: status %d, want 304", etag, resp.StatusCode)
	}
	if resp := serve(t, h, "GET", "/ui/app.js", "If-None-Match", `"other"`); resp.StatusCode != http.StatusOK {
		t.Errorf("If-None-Match other: status %d, want 200", resp.StatusCode)
	}

	gz := serve(t, h, "GET", "/ui/app.js", "Accept-Encoding", "br, gzip")
	if gz.Header.Get("Content-Encoding") != "gzip" || gz.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("Accept-Encoding gzip: Content-Encoding %q Vary %q", gz.Header.Get("Content-Encoding"), gz.Header.Get("Vary"))
	}
	if gz.Header.Get("ETag") == etag {
		t.Errorf("gzip and identity share the ETag %s", etag)
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil || string(unzipped) != plain {
		t.Errorf("gzip body does not decode to the file (%v)", err)
	}
	for _, ae := range []string{"", "identity", "gzip;q=0", "br"} {
		if resp := serve(t, h, "GET", "/ui/app.js", "Accept-Encoding", ae); resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("Accept-Encoding %q answered with Content-Encoding %q", ae, resp.Header.Get("Content-Encoding"))
		}
	}
}

// TestIndexHasNoInlineCode: the CSP would block inline code, so none may be written.
func TestIndexHasNoInlineCode(t *testing.T) {
	index, err := fs.ReadFile(staticFS, "static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`<script(\s[^>]*)?>[^<]+</script>`), // a script with a body
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle=`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`(?i)javascript:`),
		regexp.MustCompile(`(?i)(src|href)="(https?:)?//`), // another origin
	} {
		if m := re.Find(index); m != nil {
			t.Errorf("index.html has %q (matches %s), which the CSP forbids", m, re)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAll(index, -1) {
		if !bytes.Contains(tag, []byte(` src="`)) {
			t.Errorf("index.html has an inline script %s", tag)
		}
	}
}

// TestScriptAvoidsBlockedSinks: Trusted Types and script-src 'self' make these throw.
func TestScriptAvoidsBlockedSinks(t *testing.T) {
	js, err := fs.ReadFile(staticFS, "static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	// The SVG namespace is the one absolute URL the script may hold.
	js = bytes.ReplaceAll(js, []byte("'http://www.w3.org/2000/svg'"), nil)
	for _, sink := range []string{".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'", ".cssText", "localStorage", "new EventSource", "http://", "https://"} {
		if bytes.Contains(js, []byte(sink)) {
			t.Errorf("app.js uses %q, which the page's CSP blocks or the design forbids", sink)
		}
	}
}

func TestNewSite(t *testing.T) {
	good := fstest.MapFS{
		"s/index.html": {Data: []byte(`<link href="a.css"><script src="a.js"></script><a href="a.json">x</a>`)},
		"s/a.css":      {Data: []byte("body{}")},
		"s/a.js":       {Data: []byte("1")},
		"s/b.js":       {Data: []byte("2")},
	}
	s, err := newSite(good, "s")
	if err != nil {
		t.Fatal(err)
	}
	idx := string(s.files[""].body)
	if strings.Contains(idx, `"a.css"`) || strings.Contains(idx, `"a.js"`) {
		t.Errorf("index still names plain assets: %s", idx)
	}
	if !strings.Contains(idx, `href="a.json"`) {
		t.Errorf("a name that is no file changed: %s", idx)
	}
	if s.files["a.js"].etag == s.files["b.js"].etag {
		t.Error("different files share an ETag")
	}

	for name, fsys := range map[string]fstest.MapFS{
		"no index":     {"s/a.js": {Data: []byte("1")}},
		"unknown type": {"s/index.html": {Data: []byte("x")}, "s/a.exe": {Data: []byte("MZ")}},
		"missing dir":  {"t/index.html": {Data: []byte("x")}},
	} {
		_, err := newSite(fsys, "s")
		if err == nil {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                    false,
		"gzip":                true,
		"GZIP":                true,
		"deflate, gzip;q=1.0": true,
		"gzip;q=0":            false,
		"gzip; q=0.000":       false,
		"gzip;q=0.5":          true,
		"x-gzip":              false,
		"br, deflate":         false,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}
