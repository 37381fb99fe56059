package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/picket-dev/picket/checks"
	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

// nodeSpec describes one agent of a placement test cluster.
type nodeSpec struct {
	name    string
	noRaft  bool                     // cluster.server: false (no Raft, learns assignments by polling)
	probers map[string]checks.Prober // nil: checks.Probers()
	checks  []config.Check           // the config file's checks
}

// placementCluster is a cluster of in-process agents with real gossip, Raft and RPC on
// loopback, each with its own metric reader, that can be killed without a graceful leave.
type placementCluster struct {
	agents  []*Agent
	urls    []string
	readers []*sdkmetric.ManualReader
	kills   []func()
}

// startPlacementCluster starts the agents (every Raft agent a voter candidate, load 0.1,
// the fast profile), joined to the first, and waits until each sees all alive. It is
// startCluster with per-node probers, agents outside Raft, metrics and kill.
func startPlacementCluster(t *testing.T, specs ...nodeSpec) *placementCluster {
	t.Helper()
	pc := &placementCluster{}
	servers := 0
	for _, s := range specs {
		if !s.noRaft {
			servers++
		}
	}
	for i, s := range specs {
		cfg := testNodeConfig(t, s.name)
		cfg.Cluster.Raft.Voters, cfg.Cluster.Raft.BootstrapExpect = min(3, servers), min(3, servers)
		cfg.Cluster.Server = !s.noRaft
		cfg.Checks = s.checks
		if i > 0 {
			cfg.Cluster.Join = []string{pc.agents[0].parts.Membership.LocalNode().Address}
		}
		a, url, reader, kill := startTestAgent(t, cfg, fixedLoad(0.1), s.probers)
		pc.agents = append(pc.agents, a)
		pc.urls = append(pc.urls, url)
		pc.readers = append(pc.readers, reader)
		pc.kills = append(pc.kills, kill)
	}
	for _, url := range pc.urls {
		waitFor(t, 10*time.Second, func() string {
			var ms []api.Member
			getJSON(t, url+"/v1/members", &ms)
			alive := 0
			for _, m := range ms {
				if m.Status == "alive" && m.RPCAddress != "" {
					alive++
				}
			}
			if alive != len(specs) {
				return fmt.Sprintf("%s sees %d of %d members alive", url, alive, len(specs))
			}
			return ""
		})
	}
	return pc
}

// startTestAgent runs an agent with the real scheduler, gossip membership (use the fast
// profile), RPC port, Raft (when cluster.server) and shipper, all on loopback ports, with
// the given load and probers (nil: the real ones). It returns the agent, its base URL, a
// reader of its metrics, and kill, which stops the agent the way a crash looks to the
// others: gossip goes silent first, without a leave. The agent stops when the test ends.
func startTestAgent(t *testing.T, cfg *config.Config, load LoadSource, probers map[string]checks.Prober) (*Agent, string, *sdkmetric.ManualReader, func()) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", cfg.NodeName)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux, err := cluster.ListenRPC("127.0.0.1:0", nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	roles := []string{}
	if cfg.Cluster.Server {
		roles = []string{"server"}
	}
	ms, err := cluster.NewMembership(cluster.Options{
		Config: cfg.Cluster, NodeName: cfg.NodeName, Logger: logger,
		Meta: cluster.Meta{RPCAddr: mux.Addr().String(), HTTPAddr: ln.Addr().String(), Roles: roles},
	})
	if err != nil {
		t.Fatal(err)
	}
	var rn *cluster.Raft
	if cfg.Cluster.Server {
		rn, err = cluster.NewRaft(cluster.RaftOptions{
			NodeName: cfg.NodeName, Dir: filepath.Join(cfg.DataDir, "raft"), Config: cfg.Cluster,
			Retention: cfg.Logs.Retention, Layer: mux.RaftLayer(), Advertise: mux.Addr().String(),
			Members: ms.Members, Logger: logger.With("component", "raft"),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	leader := NewLeader(ms, rn, mux)
	shipper, err := cluster.NewShipper(cluster.ShipperOptions{
		Node: cfg.NodeName, Dir: filepath.Join(cfg.DataDir, "spool"), SpoolMaxBytes: 1 << 20,
		Sink: leader, Logger: logger.With("component", "shipper"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if probers == nil {
		probers = checks.Probers()
	}
	var a *Agent
	sched, err := checks.NewScheduler(checks.Options{
		Node: cfg.NodeName, Probers: probers, Meter: mp.Meter("checks"), Logger: logger,
		OnTransition: func(tr checks.Transition) { a.OnTransition(tr) },
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err = New(Parts{
		Config: cfg, Logger: logger, Version: "test", Scheduler: sched, Load: load,
		Membership: ms, RPC: mux, Listener: ln, Raft: rn, Leader: leader, Shipper: shipper,
		Meter: mp.Meter("agent"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	wait := sync.OnceValue(func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(StopTimeout + time.Second):
			return errors.New("agent did not stop")
		}
	})
	t.Cleanup(func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("%s: Run: %v", cfg.NodeName, err)
		}
		mp.Shutdown(context.Background())
	})
	kill := func() {
		ms.Close()
		cancel()
	}
	return a, "http://" + ln.Addr().String(), reader, kill
}

// waitLeader waits until every agent but the dead ones names the same aggregator (agents
// outside Raft learn it by gossip), and returns its index.
func (pc *placementCluster) waitLeader(t *testing.T, dead ...int) int {
	t.Helper()
	idx := -1
	waitFor(t, 15*time.Second, func() string {
		name := ""
		for i, a := range pc.agents {
			if slices.Contains(dead, i) {
				continue
			}
			info, ok := a.parts.Leader.Info()
			if !ok || (name != "" && info.Name != name) {
				return fmt.Sprintf("no agreed aggregator yet (%s: %q)", a.Config().NodeName, info.Name)
			}
			name = info.Name
		}
		for i, a := range pc.agents {
			if a.Config().NodeName == name && !slices.Contains(dead, i) && a.parts.Raft.IsLeader() {
				idx = i
				return ""
			}
		}
		return "the named aggregator does not lead yet"
	})
	return idx
}

func (pc *placementCluster) index(name string) int {
	for i, a := range pc.agents {
		if a.Config().NodeName == name {
			return i
		}
	}
	return -1
}

// getChecks reads GET /v1/checks and its partial-view header.
func getChecks(t *testing.T, url string) ([]api.Check, string) {
	t.Helper()
	resp, err := http.Get(url + "/v1/checks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cs []api.Check
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /v1/checks: %d %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil {
		t.Fatal(err)
	}
	return cs, resp.Header.Get(partialHeader)
}

func clusterCheckBody(name, url string, extra map[string]any) map[string]any {
	body := map[string]any{
		"name": name, "type": "http", "interval": "300ms", "timeout": "250ms",
		"http": map[string]any{"url": url},
	}
	for k, v := range extra {
		body[k] = v
	}
	return body
}

// runningOn counts, per cluster check, the agents whose scheduler runs it.
func (pc *placementCluster) runningOn(skip map[int]bool) map[string][]string {
	out := map[string][]string{}
	for i, a := range pc.agents {
		if skip[i] {
			continue
		}
		for _, s := range a.parts.Scheduler.Snapshot() {
			if s.Check.Placement == config.PlacementCluster {
				out[s.Check.Name] = append(out[s.Check.Name], a.Config().NodeName)
			}
		}
	}
	return out
}

// TestPlacementSpreadAndRehome: six cluster checks posted to one agent run on exactly one
// node each, spread over the three, all passing; when the busiest node dies (no graceful
// leave) its checks run elsewhere and pass again within the failure-detection time + 2 s
// (BENCHMARKS P9). The API refuses exec (403), local placement (400) and a conflicting
// redefinition (409, unless ?replace=true), and DELETE removes a check everywhere.
func TestPlacementSpreadAndRehome(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer target.Close()
	pc := startPlacementCluster(t, nodeSpec{name: "n1"}, nodeSpec{name: "n2"}, nodeSpec{name: "n3"})
	lead := pc.waitLeader(t)
	poster := pc.urls[(lead+1)%3] // forwarded to the aggregator

	names := []string{"c1", "c2", "c3", "c4", "c5", "c6"}
	for _, name := range names {
		var out checkChange
		if code, raw := sendJSON(t, "POST", poster+"/v1/checks", clusterCheckBody(name, target.URL+"/"+name, nil), &out); code != 200 || out.Result != "created" {
			t.Fatalf("POST %s: %d %s", name, code, raw)
		}
	}
	for _, tc := range []struct {
		name   string
		path   string
		body   map[string]any
		want   int
		wantIn string
	}{
		{"same again", "/v1/checks", clusterCheckBody("c1", target.URL+"/c1", nil), 200, `"result":"unchanged"`},
		{"placement given as cluster", "/v1/checks", clusterCheckBody("c1", target.URL+"/c1", map[string]any{"placement": "cluster"}), 200, `"result":"unchanged"`},
		{"different definition", "/v1/checks", clusterCheckBody("c1", target.URL+"/other", nil), 409, "replace=true"},
		{"replace", "/v1/checks?replace=true", clusterCheckBody("c2", target.URL+"/c2", map[string]any{"interval": "400ms"}), 200, `"result":"replaced"`},
		{"exec refused", "/v1/checks", map[string]any{"name": "x", "type": "exec", "exec": map[string]any{"command": []string{"true"}}}, 403, "exec checks"},
		{"local refused", "/v1/checks", clusterCheckBody("x", target.URL, map[string]any{"placement": "local"}), 400, "cluster checks"},
		{"bad check", "/v1/checks", clusterCheckBody("x", "::", nil), 400, "check.http.url"},
		{"unknown key", "/v1/checks", clusterCheckBody("x", target.URL, map[string]any{"color": "red"}), 400, "check.color"},
	} {
		code, raw := sendJSON(t, "POST", poster+tc.path, tc.body, nil)
		if code != tc.want || !strings.Contains(raw, tc.wantIn) {
			t.Errorf("%s: %d %s; want %d containing %q", tc.name, code, raw, tc.want, tc.wantIn)
		}
	}

	// Each check on exactly one node, all three nodes used, all passing.
	var placed map[string]string
	waitFor(t, 15*time.Second, func() string {
		placed = map[string]string{}
		for _, url := range pc.urls {
			cs, partial := getChecks(t, url)
			if partial != "" {
				return url + ": partial view: " + partial
			}
			if len(cs) != len(names) {
				return fmt.Sprintf("%s lists %d checks", url, len(cs))
			}
			for _, c := range cs {
				if len(c.Nodes) != 1 || c.Status != "passing" || len(c.Results) != 1 || c.Results[0].Node != c.Nodes[0] || c.Results[0].Status != "passing" {
					return fmt.Sprintf("%s: %+v", url, c)
				}
				placed[c.Name] = c.Nodes[0]
			}
		}
		for name, nodes := range pc.runningOn(nil) {
			if len(nodes) != 1 || nodes[0] != placed[name] {
				return fmt.Sprintf("%s runs on %v, assigned to %s", name, nodes, placed[name])
			}
		}
		return ""
	})
	perNode := map[string]int{}
	for _, n := range placed {
		perNode[n]++
	}
	if len(perNode) != 3 {
		t.Fatalf("checks placed %v: want them spread over n1, n2 and n3", placed)
	}

	// Kill the busiest node.
	busiest := ""
	for _, n := range []string{"n1", "n2", "n3"} {
		if busiest == "" || perNode[n] > perNode[busiest] {
			busiest = n
		}
	}
	dead := pc.index(busiest)
	wasLeader := dead == lead
	survivor := pc.urls[(dead+1)%3]
	killed := time.Now()
	pc.kills[dead]()
	var moved []string
	for name, n := range placed {
		if n == busiest {
			moved = append(moved, name)
		}
	}
	waitFor(t, 20*time.Second, func() string {
		cs, partial := getChecks(t, survivor)
		if partial != "" {
			return "partial view: " + partial
		}
		if len(cs) != len(names) {
			return fmt.Sprintf("%d checks listed", len(cs))
		}
		for _, c := range cs {
			if len(c.Nodes) != 1 || c.Nodes[0] == busiest || c.Status != "passing" || len(c.Results) != 1 ||
				c.Results[0].Node != c.Nodes[0] || c.Results[0].Status != "passing" {
				return fmt.Sprintf("%+v", c)
			}
		}
		return ""
	})
	took := time.Since(killed)
	bound := cluster.DetectionTime(cluster.ProfileFast) + 2*time.Second
	t.Logf("re-homing: %d checks of %s (aggregator: %v) passing on other nodes %.3f s after the kill (bound %.3f s = detection %s + 2 s)",
		len(moved), busiest, wasLeader, took.Seconds(), bound.Seconds(), cluster.DetectionTime(cluster.ProfileFast))
	if took > bound {
		t.Errorf("re-homing took %s, more than failure detection + 2 s (%s)", took, bound)
	}
	waitFor(t, 5*time.Second, func() string {
		for name, nodes := range pc.runningOn(map[int]bool{dead: true}) {
			if len(nodes) != 1 {
				return fmt.Sprintf("%s runs on %v", name, nodes)
			}
		}
		return ""
	})

	// The aggregator recorded each move as a placement event.
	newLead := pc.waitLeader(t, dead)
	var evs []Event
	getJSON(t, pc.urls[newLead]+"/v1/events", &evs)
	failedMoves := map[string]bool{}
	for _, e := range evs {
		if e.Type == "placement" && e.Detail == cluster.MoveNodeFailed && e.From == busiest {
			failedMoves[e.Check] = true
		}
	}
	for _, name := range moved {
		if !failedMoves[name] {
			t.Errorf("no placement event of %s leaving %s (node_failed); events: %+v", name, busiest, evs)
		}
	}

	// DELETE removes a check from the view and from every scheduler.
	var del checkChange
	if code, raw := sendJSON(t, "DELETE", survivor+"/v1/checks/c1", nil, &del); code != 200 || del.Result != "deleted" {
		t.Fatalf("DELETE c1: %d %s", code, raw)
	}
	if code, raw := sendJSON(t, "DELETE", survivor+"/v1/checks/c1", nil, nil); code != 404 || !strings.Contains(raw, "unknown_check") {
		t.Errorf("DELETE c1 again: %d %s, want 404", code, raw)
	}
	waitFor(t, 5*time.Second, func() string {
		cs, _ := getChecks(t, survivor)
		for _, c := range cs {
			if c.Name == "c1" {
				return "c1 still listed"
			}
		}
		if nodes := pc.runningOn(map[int]bool{dead: true})["c1"]; len(nodes) > 0 {
			return fmt.Sprintf("c1 still runs on %v", nodes)
		}
		return ""
	})
}

// refusingProbers returns probers whose http checks of target cannot reach it: they go to
// a closed port instead, so the real prober fails with "connection refused". This is one
// vantage point that cannot reach the target while the others can.
func refusingProbers(t *testing.T, target string) map[string]checks.Prober {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	ps := checks.Probers()
	httpProbe := ps[config.TypeHTTP]
	ps[config.TypeHTTP] = func(ctx context.Context, c *config.Check) checks.Result {
		if c.HTTP != nil && strings.HasPrefix(c.HTTP.URL, target) {
			cc := *c
			h := *c.HTTP
			h.URL = closed + strings.TrimPrefix(h.URL, target)
			cc.HTTP = &h
			return httpProbe(ctx, &cc)
		}
		return httpProbe(ctx, c)
	}
	return ps
}

func yamlCheck(t *testing.T, name, url, interval string) config.Check {
	t.Helper()
	c, err := config.DecodeCheckJSON([]byte(fmt.Sprintf(`{"name":%q,"type":"http","placement":"cluster","interval":%q,"http":{"url":%q}}`, name, interval, url)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPlacementVantageAndSources: a check with vantage 4 and quorum 2 stays passing while
// one vantage (n3) cannot reach the target, and the same check with quorum 1 turns
// critical; the agent outside Raft (n4) runs its share, learnt by polling the aggregator;
// config files' cluster checks are registered, a conflicting one is reported as drift,
// and one dropped from the only config that had it is removed; the aggregator exports the
// placement metrics.
func TestPlacementVantageAndSources(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer target.Close()
	shared := yamlCheck(t, "yaml-shared", target.URL+"/shared", "500ms")
	only2 := yamlCheck(t, "yaml-only-n2", target.URL+"/only", "500ms")
	conflicting := yamlCheck(t, "yaml-shared", target.URL+"/shared", "700ms")
	pc := startPlacementCluster(t,
		nodeSpec{name: "n1", checks: []config.Check{shared}},
		nodeSpec{name: "n2", checks: []config.Check{shared, only2}},
		nodeSpec{name: "n3", checks: []config.Check{conflicting}, probers: refusingProbers(t, target.URL)},
		nodeSpec{name: "n4", noRaft: true},
	)
	lead := pc.waitLeader(t)
	vantage := func(quorum int) map[string]any {
		return map[string]any{"vantage": map[string]any{"nodes": 4, "quorum": quorum}}
	}
	for name, q := range map[string]int{"quorum2": 2, "quorum1": 1} {
		if code, raw := sendJSON(t, "POST", pc.urls[3]+"/v1/checks", clusterCheckBody(name, target.URL+"/"+name, vantage(q)), nil); code != 200 {
			t.Fatalf("POST %s from n4: %d %s", name, code, raw)
		}
	}

	byName := map[string]api.Check{}
	waitFor(t, 15*time.Second, func() string {
		cs, partial := getChecks(t, pc.urls[3]) // n4 is not in Raft: the view comes from the aggregator
		if partial != "" {
			return "partial: " + partial
		}
		clear(byName)
		for _, c := range cs {
			byName[c.Name] = c
		}
		for _, name := range []string{"quorum2", "quorum1"} {
			c := byName[name]
			if strings.Join(c.Nodes, ",") != "n1,n2,n3,n4" || len(c.Results) != 4 {
				return fmt.Sprintf("%s: %+v", name, c)
			}
			for _, r := range c.Results {
				want := "passing"
				if r.Node == "n3" {
					want = "critical"
				}
				if r.Status != want {
					return fmt.Sprintf("%s: result of %s %s, want %s", name, r.Node, r.Status, want)
				}
			}
		}
		if c := byName["quorum1"]; c.Status != "critical" {
			return fmt.Sprintf("quorum1 is %s, want critical once n3 is critical: %+v", c.Status, c)
		}
		return ""
	})
	if c := byName["quorum2"]; c.Status != "passing" || !strings.Contains(c.Output, "3 of 4 nodes passing") || !strings.Contains(c.Output, "n3: critical") {
		t.Errorf("quorum2 with one of four vantages failing: %s %q, want passing, with n3's failure in the output", c.Status, c.Output)
	}
	ran := pc.runningOn(nil)
	if got := strings.Join(ran["quorum2"], ","); got != "n1,n2,n3,n4" {
		t.Errorf("quorum2 runs on %s, want every node", got)
	}

	// Config files: both yaml checks registered; the conflicting one is drift.
	if _, ok := byName["yaml-shared"]; !ok {
		t.Errorf("yaml-shared from the config files is not registered: %v", slices.Sorted(maps.Keys(byName)))
	}
	if _, ok := byName["yaml-only-n2"]; !ok {
		t.Errorf("yaml-only-n2 from n2's config is not registered")
	}
	waitFor(t, 5*time.Second, func() string {
		var evs []Event
		getJSON(t, pc.urls[lead]+"/v1/events", &evs)
		for _, e := range evs {
			if e.Type == "drift" && e.Check == "yaml-shared" {
				return ""
			}
		}
		return "no drift event for yaml-shared on the aggregator"
	})

	// n2 drops both of its cluster checks: yaml-only-n2 goes; yaml-shared stays (n1 has it).
	next := *pc.agents[1].Config()
	next.Checks = nil
	if err := pc.agents[1].Reload(&next); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() string {
		cs, _ := getChecks(t, pc.urls[0])
		for _, c := range cs {
			if c.Name == "yaml-only-n2" {
				return "yaml-only-n2 still registered"
			}
		}
		return ""
	})
	cs, _ := getChecks(t, pc.urls[0])
	found := false
	for _, c := range cs {
		found = found || c.Name == "yaml-shared"
	}
	if !found {
		t.Error("yaml-shared was removed although n1's config still defines it")
	}

	// Metrics: only the aggregator reports assignments, and they add up.
	lead = pc.waitLeader(t)
	for i, r := range pc.readers {
		var rm metricdata.ResourceMetrics
		if err := r.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		slots, moves := int64(0), int64(0)
		seen := false
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch m.Name {
				case "picket.placement.assignments":
					seen = true
					for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
						slots += dp.Value
					}
				case "picket.placement.moves":
					for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
						moves += dp.Value
					}
				}
			}
		}
		name := pc.agents[i].Config().NodeName
		switch {
		case i == lead && slots < 4+4+1:
			t.Errorf("aggregator %s reports %d assigned slots, want at least 9 (two checks on 4 nodes, yaml-shared)", name, slots)
		case i == lead && moves < slots:
			t.Errorf("aggregator %s counted %d moves for %d slots", name, moves, slots)
		case i != lead && seen && slots > 0:
			t.Errorf("%s is not the aggregator but reports %d assigned slots", name, slots)
		}
	}
}

func TestCombine(t *testing.T) {
	r := func(node string, s checks.Status, out string) nodeResult {
		return nodeResult{status: s, result: api.Result{Node: node, Status: s.String(), Output: out}}
	}
	for _, tc := range []struct {
		name             string
		quorum, assigned int
		reports          []nodeResult
		want             checks.Status
		wantOut          string
	}{
		{"no results", 1, 1, nil, checks.Unknown, "no result yet"},
		{"no node", 1, 0, nil, checks.Unknown, "not running: no alive node to run it on"},
		{"one of two reported", 2, 2, []nodeResult{r("n1", checks.Passing, "200 OK")}, checks.Passing, "1 of 2 nodes passing: 200 OK"},
		{"one passing", 1, 1, []nodeResult{r("n1", checks.Passing, "200 OK")}, checks.Passing, "200 OK"},
		{"one warning", 1, 1, []nodeResult{r("n1", checks.Warning, "refused")}, checks.Warning, "refused"},
		{"one critical", 1, 1, []nodeResult{r("n1", checks.Critical, "refused")}, checks.Critical, "refused"},
		{"not known yet", 1, 1, []nodeResult{r("n1", checks.Unknown, "")}, checks.Unknown, ""},
		{"quorum 2: one critical tolerated", 2, 3, []nodeResult{r("n1", checks.Passing, "ok"), r("n2", checks.Passing, "ok"), r("n3", checks.Critical, "refused")},
			checks.Passing, "2 of 3 nodes passing; n3: critical refused"},
		{"quorum 2: two critical", 2, 3, []nodeResult{r("n1", checks.Critical, "x"), r("n2", checks.Passing, "ok"), r("n3", checks.Critical, "y")},
			checks.Critical, "1 of 3 nodes passing; n1: critical x; n3: critical y"},
		{"quorum 2: critical and warning", 2, 3, []nodeResult{r("n1", checks.Critical, "x"), r("n2", checks.Warning, "w"), r("n3", checks.Passing, "ok")},
			checks.Warning, "1 of 3 nodes passing; n1: critical x; n2: warning w"},
		{"quorum 1 of 3: any critical", 1, 3, []nodeResult{r("n1", checks.Passing, "ok"), r("n2", checks.Critical, "x"), r("n3", checks.Passing, "ok")},
			checks.Critical, "2 of 3 nodes passing; n2: critical x"},
		{"quorum above the nodes assigned", 3, 1, []nodeResult{r("n1", checks.Critical, "x")}, checks.Critical, "x"},
		{"all passing", 2, 2, []nodeResult{r("n1", checks.Passing, "200 OK"), r("n2", checks.Passing, "200 OK")}, checks.Passing, "2 of 2 nodes passing: 200 OK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, out := combine(tc.quorum, tc.assigned, tc.reports)
			if got != tc.want || out != tc.wantOut {
				t.Errorf("combine = %s %q, want %s %q", got, out, tc.want, tc.wantOut)
			}
		})
	}
}

func TestDecodeClusterCheck(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		wantErr    string
		sentinel   error
	}{
		{"placement filled in", `{"name":"a","type":"tcp","tcp":{"address":"127.0.0.1:1"}}`, "", nil},
		{"vantage needs cluster: given", `{"name":"a","type":"tcp","vantage":{"nodes":3,"quorum":2},"tcp":{"address":"127.0.0.1:1"}}`, "", nil},
		{"exec", `{"name":"a","type":"exec","exec":{"command":["true"]}}`, "exec checks", errExecOverAPI},
		{"local", `{"name":"a","type":"tcp","placement":"local","tcp":{"address":"127.0.0.1:1"}}`, "check.placement", nil},
		{"not an object", `[1]`, "JSON object", nil},
		{"not JSON", `{`, "invalid JSON", nil},
		{"slash in name", `{"name":"a/b","type":"tcp","tcp":{"address":"127.0.0.1:1"}}`, "check.name", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeClusterCheck([]byte(tc.body))
			if tc.wantErr == "" {
				if err != nil || c.Placement != config.PlacementCluster {
					t.Fatalf("decode: %+v %v, want a cluster check", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("decode: %v, want an error containing %q", err, tc.wantErr)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("decode: %v, want errors.Is %v", err, tc.sentinel)
			}
		})
	}
}
