package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixedLoad float64

func (l fixedLoad) Load() float64 { return float64(l) }

// startAgent runs an agent with the real scheduler, probers, gossip membership (fast
// profile) and RPC port, all on loopback ports, and returns it with its base URL. The agent
// stops when the test ends.
func startAgent(t *testing.T, cfg *config.Config) (*Agent, string) {
	t.Helper()
	return startAgentLoad(t, cfg, fixedLoad(0.25))
}

func startAgentLoad(t *testing.T, cfg *config.Config, load LoadSource) (*Agent, string) {
	t.Helper()
	a, url, _, _ := startTestAgent(t, cfg, load, nil)
	return a, url
}

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	return testNodeConfig(t, "n1")
}

func testNodeConfig(t *testing.T, name string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.NodeName = name
	cfg.DataDir = t.TempDir()
	cfg.Cluster.Bind = "127.0.0.1:0"
	cfg.Cluster.RPC = "127.0.0.1:0"
	cfg.Cluster.Profile = "fast"
	cfg.Cluster.Raft.Voters, cfg.Cluster.Raft.BootstrapExpect = 1, 1
	return cfg
}

func do(t *testing.T, method, url, token string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestAuthAndLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.Token = "tok"
	_, base := startAgent(t, cfg)
	// A lone voter elects itself: /readyz turns 200 once it is the aggregator.
	waitFor(t, 10*time.Second, func() string {
		if code, body := do(t, "GET", base+"/readyz", "", nil); code != 200 {
			return fmt.Sprintf("readyz %d %s", code, body)
		}
		return ""
	})

	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "fine") }))
	defer target.Close()
	runBody := `{"check":{"type":"http","timeout":"2s","interval":"2s","http":{"url":"` + target.URL + `","expect_body":"fine"}}}`

	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
		wantIn                          string
	}{
		{"healthz open", "GET", "/healthz", "", "", 200, "ok"},
		{"readyz open", "GET", "/readyz", "", "", 200, "ready"},
		{"v1 needs token", "GET", "/v1/agent", "", "", 401, "bearer token"},
		{"wrong token", "GET", "/v1/agent", "nope", "", 401, "bearer token"},
		{"agent", "GET", "/v1/agent", "tok", "", 200, `"name":"n1"`},
		{"unknown route", "GET", "/v1/nothing", "tok", "", 404, "no such endpoint"},
		{"run passing", "POST", "/v1/run", "tok", runBody, 200, `"status":"passing"`},
		{"malformed", "POST", "/v1/run", "tok", `{"check":`, 400, "malformed JSON"},
		{"unknown field", "POST", "/v1/run", "tok", `{"chek":{}}`, 400, "unknown field"},
		{"bad check", "POST", "/v1/run", "tok", `{"check":{"type":"http","http":{"url":"::"}}}`, 400, "check.http.url"},
		{"exec refused", "POST", "/v1/run", "tok", `{"check":{"type":"exec","exec":{"command":["true"]}}}`, 403, "exec checks"},
		{"unknown node", "POST", "/v1/run", "tok", `{"node":"n9","check":{"type":"tcp","tcp":{"address":"127.0.0.1:1"}}}`, 404, "n9"},
		{"too large", "POST", "/v1/run", "tok", `{"check":{"type":"tcp","tcp":{"address":"` + strings.Repeat("a", maxRunBody) + `"}}}`, 413, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			code, got := do(t, tc.method, base+tc.path, tc.token, body)
			if code != tc.want || !bytes.Contains(got, []byte(tc.wantIn)) {
				t.Fatalf("%s %s: %d %s; want %d containing %q", tc.method, tc.path, code, got, tc.want, tc.wantIn)
			}
			if code >= 400 && tc.path != "/healthz" {
				var e api.Error
				if err := json.Unmarshal(got, &e); err != nil || e.Error == "" {
					t.Fatalf("error body is not {\"error\": ...}: %s", got)
				}
			}
		})
	}
}

func TestChecksAndReload(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer target.Close()
	check := func(name string) config.Check {
		c := config.Check{Name: name, Type: config.TypeHTTP, HTTP: &config.HTTPCheck{}}
		c.SetDefaults()
		c.HTTP.URL = target.URL
		c.Interval, c.Timeout = config.Duration(50*time.Millisecond), config.Duration(50*time.Millisecond)
		return c
	}
	cfg := testConfig(t)
	cfg.Checks = []config.Check{check("one")}
	a, base := startAgent(t, cfg)

	waitChecks := func(want map[string]string) map[string]api.Check {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body := do(t, "GET", base+"/v1/checks", "", nil)
			var cs []api.Check
			json.Unmarshal(body, &cs)
			ok := code == 200 && len(cs) == len(want)
			byName := map[string]api.Check{}
			for _, c := range cs {
				byName[c.Name] = c
				ok = ok && want[c.Name] == c.Status && len(c.Nodes) == 1 && c.Nodes[0] == "n1" && len(c.Results) == 1
			}
			if ok {
				return byName
			}
			if time.Now().After(deadline) {
				t.Fatalf("checks %s, want %v", body, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	before := waitChecks(map[string]string{"one": "passing"})

	next := *cfg
	next.Checks = []config.Check{check("one"), check("two")}
	if err := a.Reload(&next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	after := waitChecks(map[string]string{"one": "passing", "two": "passing"})
	if !after["one"].Since.Equal(before["one"].Since) {
		t.Errorf("unchanged check lost its state: since %v, then %v", before["one"].Since, after["one"].Since)
	}

	moved := next
	moved.HTTP.Listen = "127.0.0.1:1"
	moved.Checks = []config.Check{check("one")}
	if err := a.Reload(&moved); !errors.Is(err, ErrRestartRequired) || !strings.Contains(err.Error(), "http.listen") {
		t.Fatalf("Reload changing http.listen: %v, want ErrRestartRequired naming http.listen", err)
	}
	if got := a.Config(); len(got.Checks) != 2 {
		t.Errorf("refused reload changed the running config: %d checks", len(got.Checks))
	}
}

func TestNewNeedsParts(t *testing.T) {
	_, err := New(Parts{Config: config.Default(), Logger: slog.Default()})
	if err == nil || !strings.Contains(err.Error(), "Scheduler") || !strings.Contains(err.Error(), "Membership") {
		t.Fatalf("New without parts: %v, want an error naming the missing parts", err)
	}
}
