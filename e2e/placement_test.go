package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picket-dev/picket/cluster"
)

type placedCheck struct {
	Name    string   `json:"name"`
	Nodes   []string `json:"nodes"`
	Status  string   `json:"status"`
	Output  string   `json:"output"`
	Results []struct {
		Node   string    `json:"node"`
		Status string    `json:"status"`
		Time   time.Time `json:"time"`
	} `json:"results"`
}

// clusterChecks reads GET /v1/checks of n; a view made without the aggregator is an error.
func clusterChecks(ctx context.Context, n *node) ([]placedCheck, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", n.http+"/v1/checks", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: GET /v1/checks: %d %s", n.name, resp.StatusCode, body)
	}
	if p := resp.Header.Get("X-Picket-Partial"); p != "" {
		return nil, fmt.Errorf("%s: partial view: %s", n.name, p)
	}
	var cs []placedCheck
	return cs, json.Unmarshal(body, &cs)
}

// settled reports why the checks are not yet all placed on alive nodes, every assigned
// node reporting passing, or "" when they are.
func settled(cs []placedCheck, want int, dead string) string {
	if len(cs) != want {
		return fmt.Sprintf("%d checks listed, want %d", len(cs), want)
	}
	for _, c := range cs {
		if len(c.Nodes) == 0 || slices.Contains(c.Nodes, dead) || c.Status != "passing" || len(c.Results) != len(c.Nodes) {
			return fmt.Sprintf("%s: nodes %v status %s results %d (%s)", c.Name, c.Nodes, c.Status, len(c.Results), c.Output)
		}
		for _, r := range c.Results {
			if r.Status != "passing" || !slices.Contains(c.Nodes, r.Node) {
				return fmt.Sprintf("%s: result of %s %s", c.Name, r.Node, r.Status)
			}
		}
	}
	return ""
}

// TestPlacementProcesses: three real agents (fast profile). Six cluster checks and one with
// vantage 3 / quorum 2, registered through the API of one agent, run on exactly the nodes
// assigned, spread over the three, and pass; `picket checks` shows where. After kill -9 of
// the busiest node its checks run and pass on the others within the failure-detection time
// plus 2 s (DESIGN.md §8.2, BENCHMARKS P9); the measured time is logged.
func TestPlacementProcesses(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer target.Close()
	n1 := startNode(t, "n1", "e2e-placement", testKey, nil)
	n2 := startNode(t, "n2", "e2e-placement", testKey, []string{n1.gossip})
	n3 := startNode(t, "n3", "e2e-placement", testKey, []string{n1.gossip})
	nodes := []*node{n1, n2, n3}
	leaderOf(t, 30*time.Second, nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	post := func(body map[string]any) error {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, "POST", n2.http+"/v1/checks", bytes.NewReader(b))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("POST /v1/checks %s: %d %s", body["name"], resp.StatusCode, out)
		}
		return nil
	}
	check := func(name string) map[string]any {
		return map[string]any{"name": name, "type": "http", "interval": "500ms", "timeout": "400ms",
			"http": map[string]any{"url": target.URL + "/" + name}}
	}
	for i := 1; i <= 6; i++ {
		name := fmt.Sprintf("web-%d", i)
		eventually(t, 10*time.Second, "POST "+name, func() error { return post(check(name)) })
	}
	vantage := check("vantage")
	vantage["vantage"] = map[string]any{"nodes": 3, "quorum": 2}
	eventually(t, 10*time.Second, "POST vantage", func() error { return post(vantage) })
	if err := post(map[string]any{"name": "cmd", "type": "exec", "exec": map[string]any{"command": []string{"true"}}}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("POST of an exec check: %v, want 403", err)
	}

	perNode := map[string]int{}
	eventually(t, 20*time.Second, "checks placed and passing on every agent's view", func() error {
		clear(perNode)
		for _, n := range nodes {
			cs, err := clusterChecks(ctx, n)
			if err != nil {
				return err
			}
			if why := settled(cs, 7, ""); why != "" {
				return fmt.Errorf("%s: %s", n.name, why)
			}
			if n == n1 {
				for _, c := range cs {
					if c.Name == "vantage" {
						if strings.Join(c.Nodes, ",") != "n1,n2,n3" {
							return fmt.Errorf("vantage check on %v, want every node", c.Nodes)
						}
						continue
					}
					if len(c.Nodes) != 1 {
						return fmt.Errorf("%s on %v, want one node", c.Name, c.Nodes)
					}
					perNode[c.Nodes[0]]++
				}
			}
		}
		return nil
	})
	if len(perNode) != 3 {
		t.Errorf("single-node checks placed %v: want them spread over the three nodes", perNode)
	}
	out, err := n3.cli(t, "checks")
	if err != nil || !strings.Contains(out, "NODES") || !strings.Contains(out, "n1,n2,n3") {
		t.Errorf("picket checks: %v\n%s", err, out)
	}
	t.Logf("picket checks:\n%s", out)

	busiest := "n1"
	for _, n := range []string{"n2", "n3"} {
		if perNode[n] > perNode[busiest] {
			busiest = n
		}
	}
	var victim *node
	var survivors []*node
	for _, n := range nodes {
		if n.name == busiest {
			victim = n
		} else {
			survivors = append(survivors, n)
		}
	}
	killed := time.Now()
	if err := victim.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "checks re-homed and passing", func() error {
		cs, err := clusterChecks(ctx, survivors[0])
		if err != nil {
			return err
		}
		if why := settled(cs, 7, busiest); why != "" {
			return fmt.Errorf("%s", why)
		}
		return nil
	})
	took := time.Since(killed)
	bound := cluster.DetectionTime(cluster.ProfileFast) + 2*time.Second
	t.Logf("re-homing after kill -9 of %s (%d single-node checks and the vantage check): passing elsewhere after %.3f s (bound %.3f s)",
		busiest, perNode[busiest], took.Seconds(), bound.Seconds())
	if took > bound {
		t.Errorf("re-homing took %.3f s, more than failure detection + 2 s = %.3f s", took.Seconds(), bound.Seconds())
	}
	out, err = survivors[1].cli(t, "checks")
	if err != nil {
		t.Errorf("picket checks after the kill: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		// NAME TYPE PLACEMENT NODES STATUS ...
		if f := strings.Fields(line); len(f) < 4 || slices.Contains(strings.Split(f[3], ","), busiest) {
			t.Errorf("picket checks after the kill still places a check on %s: %q", busiest, line)
		}
	}
	t.Logf("picket checks after the kill:\n%s", out)
}
