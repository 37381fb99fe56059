// Package ui serves picket's status page: plain HTML, CSS and JavaScript embedded in the
// binary. The page reads the agent's /v1 API from the browser (with the bearer token the
// user types in, kept in sessionStorage), so the files themselves are public.
//
// Caching: index.html is served with "Cache-Control: no-cache" and an ETag, and refers to
// every other file by a name that carries a hash of its content (app.3f2a9c1be04d.js), which
// is served as immutable for a year. A new binary therefore never shows a stale script. The
// plain names (app.js) answer too, revalidated like index.html.
package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// Prefix is the URL path under which Handler serves the page.
const Prefix = "/ui/"

//go:embed static
var staticFS embed.FS

// ContentSecurityPolicy is sent with every answer of Handler: only files of this origin,
// no inline script or style, no eval, no framing, and API calls only to this origin.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self'; font-src 'self'; connect-src 'self'; manifest-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// Cache-Control values.
const (
	cacheRevalidate = "no-cache"
	cacheImmutable  = "public, max-age=31536000, immutable"
)

// contentType returns the media type of an embedded file by its extension; a file with
// another extension is refused when the handler is built.
func contentType(ext string) (string, bool) {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".js":
		return "text/javascript; charset=utf-8", true
	case ".svg":
		return "image/svg+xml", true
	case ".png":
		return "image/png", true
	case ".ico":
		return "image/x-icon", true
	case ".json", ".webmanifest":
		return "application/json", true
	case ".txt":
		return "text/plain; charset=utf-8", true
	}
	return "", false
}

// asset is one file ready to serve.
type asset struct {
	body        []byte
	gz          []byte // gzip of body, nil when it does not make it smaller
	contentType string
	etag        string // quoted
	cache       string
}

// site is the set of files, by path below Prefix ("" is index.html).
type site struct {
	files map[string]*asset
}

// Handler returns the handler of the status page. Mount it at Prefix, e.g.
// mux.Handle("GET /ui/", ui.Handler()). It answers GET and HEAD only, redirects "/ui" to
// "/ui/" (307, as ServeMux does), and sends the security headers (ContentSecurityPolicy, nosniff, no referrer, no
// framing) with every answer. It is safe for concurrent use.
func Handler() http.Handler {
	s, err := newSite(staticFS, "static")
	if err != nil {
		// Only a broken build gets here; the unit tests build the same files.
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			setSecurityHeaders(w.Header())
			http.Error(w, "status page unavailable: "+err.Error(), http.StatusInternalServerError)
		})
	}
	return s
}

// newSite reads every file below dir of fsys, names the assets by content hash and
// rewrites index.html to use those names.
func newSite(fsys fs.FS, dir string) (*site, error) {
	s := &site{files: map[string]*asset{}}
	var index []byte
	hashed := map[string]string{} // plain name → hashed name
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("read embedded %s: %w", p, err)
		}
		name := strings.TrimPrefix(p, dir+"/")
		if name == "index.html" {
			index = body
			return nil
		}
		ct, ok := contentType(path.Ext(name))
		if !ok {
			return fmt.Errorf("embedded %s: no content type for extension %q; add it to contentType in agent/ui/ui.go", p, path.Ext(name))
		}
		sum := sha256.Sum256(body)
		h := hex.EncodeToString(sum[:6])
		ext := path.Ext(name)
		hn := strings.TrimSuffix(name, ext) + "." + h + ext
		hashed[name] = hn
		plain := newAsset(body, ct, h, cacheRevalidate)
		immutable := *plain
		immutable.cache = cacheImmutable
		s.files[name], s.files[hn] = plain, &immutable
		return nil
	})
	if err != nil {
		return nil, err
	}
	if index == nil {
		return nil, fmt.Errorf("embedded %s/index.html is missing", dir)
	}
	// index.html names its assets in quoted attributes: href="app.css", src="app.js".
	for name, hn := range hashed {
		index = bytes.ReplaceAll(index, []byte(`="`+name+`"`), []byte(`="`+hn+`"`))
	}
	sum := sha256.Sum256(index)
	html, _ := contentType(".html")
	idx := newAsset(index, html, hex.EncodeToString(sum[:6]), cacheRevalidate)
	s.files[""] = idx
	s.files["index.html"] = idx
	return s, nil
}

func newAsset(body []byte, contentType, hash, cache string) *asset {
	a := &asset{body: body, contentType: contentType, etag: `"` + hash + `"`, cache: cache}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level never fails
	zw.Write(body)                                           // writes to a bytes.Buffer do not fail
	zw.Close()
	if buf.Len() < len(body)*9/10 {
		a.gz = buf.Bytes()
	}
	return a
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}

// ServeHTTP serves one file.
func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	setSecurityHeaders(h)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the status page answers GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusTemporaryRedirect)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, Prefix)
	a := s.files[name]
	if !ok || a == nil {
		http.Error(w, fmt.Sprintf("not found: %s (the status page is at %s)", r.URL.Path, Prefix), http.StatusNotFound)
		return
	}
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", a.cache)
	body, etag := a.body, a.etag
	if a.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip (q=0 refuses it).
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(params, " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
