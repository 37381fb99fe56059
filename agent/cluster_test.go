package agent

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

func newKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// waitFor polls cond every 20 ms until it returns "" or d passes; then it fails with cond's
// last complaint.
func waitFor(t *testing.T, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	code, body := do(t, "GET", url, "", nil)
	if code == 200 {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, body)
		}
	}
	return code
}

func sendJSON(t *testing.T, method, url string, in, out any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(in)
	code, body := do(t, method, url, "", strings.NewReader(string(b)))
	if out != nil {
		json.Unmarshal(body, out)
	}
	return code, string(body)
}

type testCluster struct {
	agents []*Agent
	urls   []string
}

// startCluster runs n agents sharing key (may be empty) that join the first, with the given
// loads, and waits until every agent sees every other alive with its load.
func startCluster(t *testing.T, key string, loads ...float64) *testCluster {
	t.Helper()
	tc := &testCluster{}
	for i, load := range loads {
		cfg := testNodeConfig(t, fmt.Sprintf("n%d", i+1))
		cfg.Cluster.Key = config.Secret(key)
		cfg.Cluster.Raft.Voters, cfg.Cluster.Raft.BootstrapExpect = min(3, len(loads)), min(3, len(loads))
		if i > 0 {
			cfg.Cluster.Join = []string{tc.agents[0].parts.Membership.LocalNode().Address}
		}
		a, url := startAgentLoad(t, cfg, fixedLoad(load))
		tc.agents = append(tc.agents, a)
		tc.urls = append(tc.urls, url)
	}
	for _, url := range tc.urls {
		waitFor(t, 10*time.Second, func() string {
			var ms []api.Member
			getJSON(t, url+"/v1/members", &ms)
			if len(ms) != len(loads) {
				return fmt.Sprintf("%s sees %d members", url, len(ms))
			}
			for i, m := range ms {
				if m.Status != "alive" || m.Load != loads[i] || m.RPCAddress == "" {
					return fmt.Sprintf("%s sees %+v", url, m)
				}
			}
			return ""
		})
	}
	return tc
}

func runCheckBody(url string) map[string]any {
	return map[string]any{"check": map[string]any{
		"type": "http", "interval": "2s", "timeout": "2s", "http": map[string]any{"url": url},
	}}
}

func TestClusterRemoteRun(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer target.Close()
	tc := startCluster(t, newKey(t), 0.9, 0.1, 0.5)

	// --all: one passing result per node.
	var out api.RunResponse
	body := runCheckBody(target.URL)
	body["all"] = true
	if code, raw := sendJSON(t, "POST", tc.urls[0]+"/v1/run", body, &out); code != 200 {
		t.Fatalf("run all: %d %s", code, raw)
	}
	var nodes []string
	for _, r := range out.Results {
		if r.Status != "passing" || r.Error != "" {
			t.Errorf("run all: result %+v", r)
		}
		nodes = append(nodes, r.Node)
	}
	sort.Strings(nodes)
	if strings.Join(nodes, ",") != "n1,n2,n3" {
		t.Errorf("run all ran on %v, want n1,n2,n3", nodes)
	}

	// --node: on that node, asked from another.
	body = runCheckBody(target.URL)
	body["node"] = "n3"
	if code, raw := sendJSON(t, "POST", tc.urls[0]+"/v1/run", body, &out); code != 200 || len(out.Results) != 1 || out.Results[0].Node != "n3" || out.Results[0].Status != "passing" {
		t.Fatalf("run on n3: %d %s", code, raw)
	}

	// Neither: the least-loaded node (n2, load 0.1).
	if code, raw := sendJSON(t, "POST", tc.urls[2]+"/v1/run", runCheckBody(target.URL), &out); code != 200 || len(out.Results) != 1 || out.Results[0].Node != "n2" {
		t.Fatalf("run on least loaded: %d %s, want n2", code, raw)
	}

	// Unknown node: 404 naming it.
	body["node"] = "n9"
	if code, raw := sendJSON(t, "POST", tc.urls[0]+"/v1/run", body, nil); code != 404 || !strings.Contains(raw, "n9") {
		t.Fatalf("run on n9: %d %s", code, raw)
	}

	// Ping: a round-trip time.
	var ping api.Ping
	if code := getJSON(t, tc.urls[0]+"/v1/members/n2/ping", &ping); code != 200 || ping.RTTSeconds <= 0 {
		t.Fatalf("ping n2: %d %+v", code, ping)
	}

	// Events: the joins were recorded.
	var evs []Event
	getJSON(t, tc.urls[0]+"/v1/events", &evs)
	joins := 0
	for _, e := range evs {
		if e.Type == "join" {
			joins++
		}
	}
	if joins < 2 {
		t.Errorf("events %+v: want join events of n2 and n3", evs)
	}
}

func TestClusterKeyringRotation(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer target.Close()
	oldKey, newK := newKey(t), newKey(t)
	tc := startCluster(t, oldKey, 0.1, 0.2, 0.3)
	url := tc.urls[1]

	keyring := func(method string, req api.KeyringRequest) api.Keyring {
		t.Helper()
		var k api.Keyring
		if code, raw := sendJSON(t, method, url+"/v1/keyring", req, &k); code != 200 {
			t.Fatalf("%s /v1/keyring %+v: %d %s", method, req, code, raw)
		}
		return k
	}
	k := keyring("POST", api.KeyringRequest{Op: "install", Key: newK})
	if k.Nodes != 3 || len(k.Keys) != 2 {
		t.Fatalf("after install: %+v", k)
	}
	k = keyring("POST", api.KeyringRequest{Op: "use", Key: newK})
	if k.Keys[0].Key != newK || k.Keys[0].PrimaryOn != 3 {
		t.Fatalf("after use: %+v", k)
	}
	k = keyring("DELETE", api.KeyringRequest{Key: oldKey})
	if len(k.Keys) != 1 || k.Keys[0].Key != newK || k.Keys[0].Nodes != 3 {
		t.Fatalf("after remove: %+v", k)
	}
	// Gossip and agent RPC still work with the new key only.
	body := runCheckBody(target.URL)
	body["all"] = true
	var out api.RunResponse
	if code, raw := sendJSON(t, "POST", url+"/v1/run", body, &out); code != 200 || len(out.Results) != 3 {
		t.Fatalf("run all after rotation: %d %s", code, raw)
	}
	for _, r := range out.Results {
		if r.Status != "passing" {
			t.Errorf("after rotation: %+v", r)
		}
	}
	// A bad key is refused before anything changes.
	if code, raw := sendJSON(t, "POST", url+"/v1/keyring", api.KeyringRequest{Op: "install", Key: "short"}, nil); code != 400 {
		t.Fatalf("install of a bad key: %d %s", code, raw)
	}
}

// TestRunAllWithNodeGone stops a member and runs on --all at once: the call returns within
// its bound with a result or an error for every node it asked, never hanging.
func TestRunAllWithNodeGone(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer target.Close()
	tc := startCluster(t, "", 0.1, 0.2, 0.3)
	tc.agents[2].stop(fmt.Errorf("test stops n3"))
	body := runCheckBody(target.URL)
	body["all"] = true
	start := time.Now()
	var out api.RunResponse
	if code, raw := sendJSON(t, "POST", tc.urls[0]+"/v1/run", body, &out); code != 200 {
		t.Fatalf("run all: %d %s", code, raw)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("run all took %s with a node gone", d)
	}
	for _, r := range out.Results {
		if r.Node != "n3" && r.Status != "passing" {
			t.Errorf("alive node failed: %+v", r)
		}
		if r.Node == "n3" && r.Status != "passing" && (r.Reason != "unreachable" || r.Error == "") {
			t.Errorf("a node that went away must give reason unreachable with the error: %+v", r)
		}
	}
}

func TestClusterSweep(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			w.WriteHeader(500)
		}
	}))
	defer target.Close()
	tc := startCluster(t, "", 0.1, 0.1, 0.1)
	var targets []string
	for i := range 300 {
		path := "/ok"
		if i%30 == 0 {
			path = "/fail"
		}
		targets = append(targets, fmt.Sprintf("%s%s/%d", target.URL, path, i))
	}
	targets = append(targets, "not a url")
	var out api.SweepResponse
	code, raw := sendJSON(t, "POST", tc.urls[0]+"/v1/sweep", map[string]any{
		"check": map[string]any{"type": "http", "timeout": "2s", "interval": "2s"}, "targets": targets,
	}, &out)
	if code != 200 {
		t.Fatalf("sweep: %d %s", code, raw)
	}
	s := out.Summary
	if s.Targets != 301 || s.ByStatus["passing"] != 290 || s.ByStatus["critical"] != 11 || len(out.Results) != 301 {
		t.Fatalf("sweep summary %+v", s)
	}
	if len(s.ByNode) != 3 {
		t.Errorf("sweep ran on %v, want all three nodes", s.ByNode)
	}
	for i, r := range out.Results {
		if r.Target != targets[i] {
			t.Fatalf("result %d is for %q, want %q", i, r.Target, targets[i])
		}
		wantPass := i < 300 && i%30 != 0
		if (r.Status == "passing") != wantPass {
			t.Errorf("result %d (%s): %s %s", i, r.Target, r.Status, r.Output)
		}
	}
	if out.Results[300].Reason != "config" {
		t.Errorf("an invalid target must fail with reason config: %+v", out.Results[300])
	}
	if s.P99Seconds <= 0 || len(s.Slowest) != 5 || len(s.Failing) != 11 {
		t.Errorf("summary percentiles/slowest/failing: %+v", s)
	}
	// exec is refused.
	if code, raw := sendJSON(t, "POST", tc.urls[0]+"/v1/sweep", map[string]any{
		"check": map[string]any{"type": "exec", "exec": map[string]any{"command": []string{"true"}}}, "targets": []string{"x"},
	}, nil); code != 400 && code != 403 {
		t.Errorf("exec sweep: %d %s", code, raw)
	}
}
