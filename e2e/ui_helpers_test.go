package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// This file drives the status page (/ui/) in a headless Chromium with chromedp.

// needChromium returns the path of a Chromium or Chrome binary, skipping the test (or
// failing it when required()) when there is none.
func needChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const how = "install it (apt-get install chromium)"
	if required() {
		t.Fatalf("a Chromium browser is required (PICKET_E2E_REQUIRE/CI set) but none is on PATH: %s", how)
	}
	t.Skipf("no Chromium on PATH; %s or set PICKET_E2E_REQUIRE=1 to fail instead", how)
	return ""
}

// page is one browser tab and what it reported: uncaught exceptions and console or
// browser errors (a CSP violation is one).
type page struct {
	ctx   context.Context
	shots string // where waitJS leaves a screenshot when it gives up; "" for none
	mu    sync.Mutex
	bad   []string
}

// newPage starts a headless browser with a 1280×800 window; it is closed at test end.
func newPage(t *testing.T, ctx context.Context) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(needChromium(t)),
		chromedp.WindowSize(1280, 800),
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	p := &page{ctx: bctx}
	// Subscribe before the first navigation so nothing is missed.
	exceptions := chromedp.Events(bctx, runtime.ExceptionThrown)
	entries := chromedp.Events(bctx, log.EntryAdded)
	if _, err := chromedp.Call(bctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("start the browser: %v", err)
	}
	if _, err := chromedp.Call(bctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable runtime events: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			p.report(fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
		}
	})
	wg.Go(func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			if e := ev.Entry; e != nil && e.Level == log.EntryLevelError {
				p.report(fmt.Sprintf("browser %s error: %s (%s)", e.Source, e.Text, e.URL))
			}
		}
	})
	t.Cleanup(func() {
		cancelBrowser()
		wg.Wait()
	})
	return p
}

func (p *page) report(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bad = append(p.bad, s)
}

// errors returns the reports that are not in allowed (substrings).
func (p *page) errors(allowed ...string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
next:
	for _, b := range p.bad {
		for _, a := range allowed {
			if strings.Contains(b, a) {
				continue next
			}
		}
		out = append(out, b)
	}
	return out
}

// do runs actions, failing the test on error.
func (p *page) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression and decodes its value.
func eval[T any](p *page, expr string) (T, error) {
	return chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
}

// waitJS polls a JavaScript expression until it is true. chromedp.Poll cannot be used: it
// builds its predicate with new Function, which the page's CSP forbids.
func (p *page) waitJS(t *testing.T, d time.Duration, what, expr string) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < d {
		ok, err := eval[bool](p, "Boolean("+expr+")")
		if err == nil && ok {
			return time.Since(start)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	text, _ := eval[string](p, `document.querySelector('main') ? document.querySelector('main').innerText.slice(0, 3000) : ''`)
	if p.shots != "" {
		name := "failed-" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, what)
		path := filepath.Join(p.shots, name+".png")
		png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(path, png, 0o644)
		}
		if err != nil {
			t.Logf("no screenshot at failure: %v", err)
		} else {
			t.Logf("screenshot at failure: %s", path)
		}
	}
	t.Fatalf("%s: not true within %s (%s; last error %v); the page shows:\n%s", what, d, expr, last, text)
	return 0
}

// screenshot writes a PNG of the viewport to dir/name.png.
func (p *page) screenshot(t *testing.T, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fullScreenshot writes a PNG of the whole page, beyond the viewport.
func (p *page) fullScreenshot(t *testing.T, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// artifactDir is where the UI test writes its screenshots: $PICKET_ARTIFACTS/ui when set,
// else a temporary folder that is removed after the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("PICKET_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// flipServer answers 200 until failing is set, then 500.
type flipServer struct {
	*httptest.Server
	failing atomic.Bool
}

func newFlipServer(t *testing.T) *flipServer {
	t.Helper()
	f := &flipServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if f.failing.Load() {
			http.Error(w, "flipped to failing by the test", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(f.Close)
	return f
}

// uiNodeConfig is clusterNodeConfig plus a token and checks.
const uiNodeConfig = `
node_name: %s
data_dir: %s
log: {level: debug}
http: {listen: "127.0.0.1:%d", token: "%s"}
cluster:
  name: %s
  bind: "127.0.0.1:%d"
  rpc: "127.0.0.1:%d"
  key: "%s"
  profile: fast
  join: [%s]
collectors: {interval: 1s}
checks:
  - name: web
    type: http
    interval: 250ms
    timeout: 200ms
    thresholds: {failures_before_warning: 1, failures_before_critical: 2}
    http: {url: "%s", expect_status: ["2xx"]}
  - name: web-port
    type: tcp
    interval: 1s
    timeout: 500ms
    tcp: {address: "%s"}
  - name: api-cluster
    type: http
    placement: cluster
    interval: 1s
    timeout: 500ms
    http: {url: "%s"}
%s`

// startUINode starts an agent with a token and three checks against target; extra is
// appended to the checks list.
func startUINode(t *testing.T, name, token, target string, join []string, extra string) *node {
	t.Helper()
	host := strings.TrimPrefix(target, "http://")
	return startNodeWith(t, name, func(p nodePorts, dataDir string) string {
		return fmt.Sprintf(uiNodeConfig, name, dataDir, p.http, token, "e2e-ui",
			p.gossip, p.rpc, testKey, seedList(join), target, host, target, extra)
	})
}
