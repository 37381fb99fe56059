package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

const uiToken = "ui-e2e-secret"

// TestStatusPage opens /ui/ of a three-agent cluster of real processes in headless Chromium:
// the page asks for the token, lists the three members, shows a check turning critical
// within seconds, marks a SIGKILLed member dead without a reload, filters logs (when the
// agent serves /v1/logs), fits a phone, and raises no script error or CSP violation.
// Screenshots of every view go to $PICKET_ARTIFACTS/ui (or a temporary folder).
func TestStatusPage(t *testing.T) {
	needChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	shots := artifactDir(t)
	t.Logf("screenshots: %s", shots)

	target := newFlipServer(t)
	// n3 has one more cluster check than n1 and n2: its shared config differs (drift).
	const n3Extra = `  - name: n3-only
    type: tcp
    placement: cluster
    interval: 1s
    tcp: {address: "%s"}
`
	n1 := startUINode(t, "n1", uiToken, target.URL, nil, "")
	startUINode(t, "n2", uiToken, target.URL, []string{n1.gossip}, "")
	n3 := startUINode(t, "n3", uiToken, target.URL, []string{n1.gossip}, fmt.Sprintf(n3Extra, strings.TrimPrefix(target.URL, "http://")))
	auth := []string{"Authorization", "Bearer " + uiToken}
	eventually(t, 20*time.Second, "three alive members seen by n1", func() error {
		code, body, err := get(ctx, n1.http+"/v1/members", auth...)
		if err != nil || code != 200 {
			return fmt.Errorf("GET /v1/members: %d %s %v", code, body, err)
		}
		var ms []memberView
		if err := json.Unmarshal(body, &ms); err != nil {
			return err
		}
		alive := 0
		for _, m := range ms {
			if m.Status == "alive" {
				alive++
			}
		}
		if alive != 3 {
			return fmt.Errorf("members %+v", ms)
		}
		return nil
	})

	// The page itself is open (its data needs the token) and carries the security headers.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]int{"/ui/": 200, "/ui": http.StatusTemporaryRedirect} {
		resp, err := noRedirect.Get(n1.http + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'")) {
			t.Errorf("GET %s without a token: %d CSP %q, want %d with the CSP", path, resp.StatusCode, resp.Header.Get("Content-Security-Policy"), want)
		}
	}

	p := newPage(t, ctx)
	p.shots = shots
	ui := n1.http + "/ui/"
	p.do(t, "desktop viewport", chromedp.EmulateViewport(1280, 800))

	// The page is served without the token; its API calls need it, so it asks.
	p.do(t, "open the page", chromedp.Navigate(ui))
	p.waitJS(t, 10*time.Second, "login form shown on 401", `!document.getElementById('login').hidden`)
	p.screenshot(t, shots, "0-login")
	p.do(t, "wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "wrong"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))
	p.waitJS(t, 10*time.Second, "wrong token refused", `document.getElementById('login-error').textContent.includes('401')`)
	p.do(t, "sign in",
		chromedp.Evaluate[chromedp.Void](`document.getElementById('token').value = ''`),
		chromedp.SendKeys(chromedp.ID("token"), uiToken),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))

	// Cluster view: the three members, alive, n3 flagged for its different config.
	p.waitJS(t, 15*time.Second, "three alive member cards",
		`document.querySelectorAll('#members li[data-status="alive"]').length === 3`)
	names, err := eval[[]string](p, `[...document.querySelectorAll('#members li')].map(li => li.dataset.name)`)
	if err != nil || strings.Join(names, ",") != "n1,n2,n3" {
		t.Errorf("member cards %v (%v), want n1,n2,n3", names, err)
	}
	p.waitJS(t, 10*time.Second, "config drift of n3 shown",
		`document.querySelector('#members li[data-name="n3"] .badge.drift') !== null && document.querySelectorAll('#members .badge.drift').length === 1`)
	if tok, _ := eval[string](p, `sessionStorage.getItem('picket.token') + '|' + String(localStorage.length)`); tok != uiToken+"|0" {
		t.Errorf("token storage = %q, want the token in sessionStorage only", tok)
	}
	p.waitJS(t, 10*time.Second, "events stream live", `document.getElementById('conn').textContent === 'live'`)
	p.screenshot(t, shots, "1-cluster")

	// Checks view: web passes on n1, then turns critical within seconds of the flip.
	p.do(t, "open checks", chromedp.Click(chromedp.ID("tab-checks")))
	cell := `document.querySelector('#checks-matrix td[data-check="web"][data-node="n1"]')`
	p.waitJS(t, 15*time.Second, "web passing on n1", cell+`?.dataset.status === 'passing'`)
	p.do(t, "open web's details", chromedp.Click(chromedp.CSS(`button[data-key="check:web"]`)))
	p.waitJS(t, 5*time.Second, "details of web, focused", `!document.getElementById('check-detail').hidden && document.getElementById('detail-h')?.textContent === 'web' && document.activeElement.id === 'check-detail'`)
	if err := chromedp.Do(p.ctx, chromedp.Evaluate[chromedp.Void](`window.__notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	target.failing.Store(true)
	took := p.waitJS(t, 10*time.Second, "web critical on n1 in the matrix", cell+`?.dataset.status === 'critical'`)
	t.Logf("check turned critical on the page %s after the target failed", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("critical shown after %s; want within a few seconds", took)
	}
	p.waitJS(t, 10*time.Second, "transition listed in the details with a logs link",
		`[...document.querySelectorAll('#check-detail li[data-type="check"]')].some(li => li.textContent.includes('critical') && li.querySelector('a[href^="#logs?"]'))`)
	p.waitJS(t, 10*time.Second, "latency sparkline drawn", `document.querySelector('#check-detail svg.spark polyline') !== null`)
	p.waitJS(t, 5*time.Second, "critical announced to screen readers",
		`window.picketUI.announced().some(s => s.includes('web on n1 is now critical'))`)
	p.fullScreenshot(t, shots, "2-checks")

	// Placement view: the cluster checks and where they run.
	p.do(t, "open placement", chromedp.Click(chromedp.ID("tab-placement")))
	p.waitJS(t, 5*time.Second, "placement lists api-cluster", `document.querySelector('#placement-checks tr[data-check="api-cluster"]') !== null`)
	p.screenshot(t, shots, "3-placement")

	// SIGKILL n3: its card turns dead on the same page, no reload.
	p.do(t, "open cluster", chromedp.Click(chromedp.ID("tab-cluster")))
	killed := time.Now()
	n3.p.cmd.Process.Signal(syscall.SIGKILL)
	p.waitJS(t, 15*time.Second, "n3 dead on the page", `document.querySelector('#members li[data-name="n3"]')?.dataset.status === 'dead'`)
	t.Logf("killed n3 shown dead %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
	if ok, _ := eval[bool](p, `window.__notReloaded === true`); !ok {
		t.Error("the page reloaded to show the dead member")
	}
	p.waitJS(t, 5*time.Second, "the dead member is listed as not healthy", `document.getElementById('cluster-notes').textContent.includes('n3 (dead)')`)
	p.screenshot(t, shots, "4-cluster-n3-dead")

	// Keyboard: arrow keys move between tabs and open the view.
	p.do(t, "arrow right from the cluster tab",
		chromedp.Focus(chromedp.ID("tab-cluster")),
		chromedp.KeyEvent(kb.ArrowRight))
	p.waitJS(t, 5*time.Second, "checks tab selected by keyboard",
		`document.activeElement.id === 'tab-checks' && !document.getElementById('view-checks').hidden`)

	t.Run("logs", func(t *testing.T) { statusPageLogs(t, ctx, p, n1, shots) })

	// A phone.
	p.do(t, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)),
		chromedp.Navigate(ui+"#cluster"))
	// n3 was SIGKILLed: the fast profile lists a dead member for only 5 s, so by now its card
	// may be gone. n1 and n2 stay alive.
	p.waitJS(t, 15*time.Second, "the alive members' cards on a phone",
		`document.querySelectorAll('#members li[data-status="alive"]').length === 2`)
	if w, _ := eval[int](p, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
		t.Errorf("the cluster view is %d px wider than a phone screen", w)
	}
	p.screenshot(t, shots, "6-phone-cluster")
	p.do(t, "phone checks", chromedp.Navigate(ui+"#checks/web"))
	p.waitJS(t, 10*time.Second, "phone check details", `document.getElementById('detail-h')?.textContent === 'web'`)
	p.fullScreenshot(t, shots, "7-phone-checks")

	// The browser logs every 401 (before sign-in), 404 (endpoints this agent lacks) and 503
	// of /v1/leader (no aggregator during an election, which the page shows) as a network
	// error; anything else is a fault of the page.
	var errs []string
	for _, e := range p.errors("status of 401", "status of 404") {
		if !(strings.Contains(e, "status of 503") && strings.Contains(e, "/v1/leader)")) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		t.Errorf("the page reported errors:\n%s", strings.Join(errs, "\n"))
	}
}

// statusPageLogs checks the log view's filters against /v1/logs, or that the page says the
// agent does not serve it.
func statusPageLogs(t *testing.T, ctx context.Context, p *page, n1 *node, shots string) {
	auth := []string{"Authorization", "Bearer " + uiToken}
	code, _, err := get(ctx, n1.http+"/v1/logs?limit=1", auth...)
	if err != nil {
		t.Fatal(err)
	}
	if code == http.StatusNotFound {
		p.do(t, "open logs", chromedp.Click(chromedp.ID("tab-logs")))
		p.waitJS(t, 10*time.Second, "logs marked not available", `document.getElementById('logs-status').textContent.includes('not available')`)
		p.screenshot(t, shots, "5-logs")
		t.Skip("GET /v1/logs answers 404 on this agent: the page says logs are not available; filters not tested")
	}
	// Two records from this test, one error and one info, then filter on them.
	const marker = "ui-e2e-marker"
	batch := fmt.Sprintf(`[{"level":"error","message":"%s disk full","attrs":{"disk":"sda"}},{"level":"info","message":"%s all good"}]`, marker, marker)
	req, _ := http.NewRequestWithContext(ctx, "POST", n1.http+"/v1/logs", bytes.NewBufferString(batch))
	req.Header.Set("Authorization", auth[1])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /v1/logs: %d", resp.StatusCode)
	}
	p.do(t, "open logs", chromedp.Click(chromedp.ID("tab-logs")))
	p.do(t, "filter on the marker",
		chromedp.SendKeys(chromedp.ID("f-contains"), marker),
		chromedp.Click(chromedp.CSS(`#log-filters button[type="submit"]`)))
	rows := `[...document.querySelectorAll('#logs-body tr[data-level]')]`
	p.waitJS(t, 15*time.Second, "both marker records listed",
		rows+`.filter(r => r.textContent.includes('`+marker+`')).length === 2 && `+rows+`.every(r => r.textContent.includes('`+marker+`'))`)
	p.do(t, "and level error", chromedp.SetValue(chromedp.ID("f-level"), "error"),
		chromedp.Click(chromedp.CSS(`#log-filters button[type="submit"]`)))
	p.waitJS(t, 15*time.Second, "only the error record",
		rows+`.length === 1 && `+rows+`[0].dataset.level === 'error'`)
	p.screenshot(t, shots, "5-logs")
}
