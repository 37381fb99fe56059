package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const clusterNodeConfig = `
node_name: %s
data_dir: %s
log: {level: debug}
http: {listen: "127.0.0.1:%d"}
cluster:
  name: %s
  bind: "127.0.0.1:%d"
  rpc: "127.0.0.1:%d"
  key: "%s"
  profile: fast
  %s
  raft: {voters: 3, bootstrap_expect: 3}
collectors: {interval: 2s}
`

// node is one agent of a process-level test cluster.
type node struct {
	name   string
	http   string // base URL
	gossip string // host:port
	p      *proc
}

// startNode writes a config for one agent and starts it.
func startNode(t *testing.T, name, clusterName, key string, join []string) *node {
	t.Helper()
	return startNodeWith(t, name, func(p nodePorts, dataDir string) string {
		return fmt.Sprintf(clusterNodeConfig, name, dataDir, p.http, clusterName, p.gossip, p.rpc, key, "join: ["+seedList(join)+"]")
	})
}

// nodePorts are the free loopback ports of one test agent.
type nodePorts struct{ http, gossip, rpc int }

// startNodeWith picks free ports, writes the config render returns for them and a data
// folder, and starts the agent. A port picked free can be taken again before the agent
// binds it; such a start is retried with new ports.
func startNodeWith(t *testing.T, name string, render func(p nodePorts, dataDir string) string) *node {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		p := nodePorts{http: freePort(t), gossip: freePort(t), rpc: freePort(t)}
		path := filepath.Join(dir, "picket.yaml")
		if err := os.WriteFile(path, []byte(render(p, filepath.Join(dir, "data"))), 0o600); err != nil {
			t.Fatal(err)
		}
		n := &node{
			name:   name,
			http:   fmt.Sprintf("http://127.0.0.1:%d", p.http),
			gossip: fmt.Sprintf("127.0.0.1:%d", p.gossip),
		}
		n.p = start(t, nil, "agent", "-c", path)
		if err := n.p.waitStarted(10 * time.Second); err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			if err != nil {
				t.Fatalf("start %s: %v", name, err)
			}
			return n
		}
		t.Logf("start %s: a picked port was taken meanwhile; retrying with other ports", name)
	}
}

// seedList renders gossip addresses as the items of a YAML flow list.
func seedList(join []string) string {
	if len(join) == 0 {
		return ""
	}
	return `"` + strings.Join(join, `", "`) + `"`
}

// cli runs a picket client command against n and returns its stdout and exit error.
func (n *node) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(os.Environ(), "PICKET_HTTP_ADDR="+n.http)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		err = fmt.Errorf("%v: %s", err, ee.Stderr)
	}
	return string(out), err
}

type memberView struct {
	Name   string  `json:"name"`
	Status string  `json:"status"`
	Load   float64 `json:"load"`
}

func (n *node) members(t *testing.T) (map[string]string, error) {
	out, err := n.cli(t, "members", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ms []memberView
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		return nil, err
	}
	st := map[string]string{}
	for _, m := range ms {
		st[m.Name] = m.Status
	}
	return st, nil
}

// waitAllAlive waits until every node of nodes sees exactly them, all alive.
func waitAllAlive(t *testing.T, what string, nodes ...*node) {
	t.Helper()
	eventually(t, 20*time.Second, what, func() error {
		for _, n := range nodes {
			st, err := n.members(t)
			if err != nil {
				return err
			}
			ok := len(st) == len(nodes)
			for _, o := range nodes {
				ok = ok && st[o.name] == "alive"
			}
			if !ok {
				return fmt.Errorf("%s sees %v", n.name, st)
			}
		}
		return nil
	})
}

const testKey = "kbhhaKqJbZ5z/biVhkRRnVMpXcm7X2h7yuiSmgXj3NQ="

// TestClusterProcesses runs three real agents on loopback: they form a cluster that
// `picket members` shows, an agent with another key or cluster name never appears, a run
// with --all answers from every node, ping gives a round-trip time, and a kill -9 is seen
// as a failure within the fast profile's detection time.
func TestClusterProcesses(t *testing.T) {
	n1 := startNode(t, "n1", "e2e", testKey, nil)
	n2 := startNode(t, "n2", "e2e", testKey, []string{n1.gossip})
	n3 := startNode(t, "n3", "e2e", testKey, []string{n1.gossip})
	start := time.Now()
	waitAllAlive(t, "three alive members", n1, n2, n3)
	t.Logf("formation: 3 members alive after %s", time.Since(start).Round(time.Millisecond))

	// Intruders: another key, and the right key with another cluster name.
	wrongKey := startNode(t, "intruder-key", "e2e", "cm91UifwGnvirjQhGXQaXBgUCX4M40Lk4N1Zjw1Akjs=", []string{n1.gossip})
	wrongName := startNode(t, "intruder-name", "other", testKey, []string{n1.gossip})
	eventually(t, 20*time.Second, "intruders log why they cannot join", func() error {
		for _, n := range []*node{wrongKey, wrongName} {
			if !strings.Contains(n.p.out.String(), "cannot join") {
				return fmt.Errorf("%s has not logged a refused join yet", n.name)
			}
		}
		return nil
	})
	st, err := n1.members(t)
	if err != nil || len(st) != 3 {
		t.Fatalf("after intruders n1 sees %v (%v), want exactly n1-n3", st, err)
	}

	// Remote run on every node.
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer target.Close()
	out, err := n2.cli(t, "run", "http", target.URL, "--all")
	if err != nil {
		t.Fatalf("picket run --all: %v\n%s", err, out)
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		if !strings.Contains(out, name+" ") || strings.Count(out, "passing") != 3 {
			t.Errorf("picket run --all output lacks a passing result of %s:\n%s", name, out)
		}
	}
	t.Logf("picket run http --all:\n%s", out)

	// Sweep 1000 local targets spread over the nodes.
	var urls strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&urls, "%s/t/%d\n", target.URL, i)
	}
	urlsFile := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(urlsFile, []byte(urls.String()), 0o600)
	out, err = n1.cli(t, "sweep", "http", "-f", urlsFile)
	if err != nil || !strings.Contains(out, "1000 targets") || !strings.Contains(out, "passing   1000") {
		t.Errorf("picket sweep: %v\n%s", err, out)
	}
	t.Logf("picket sweep http -f urls.txt (1000 targets):\n%s", out)

	out, err = n1.cli(t, "ping", "n2")
	if err != nil || !strings.Contains(out, "n2: rtt") {
		t.Errorf("picket ping n2: %v %q", err, out)
	}

	// kill -9 of n3: the others see it dead within the detection time (fast: ~1.2 s) + margin.
	killed := time.Now()
	n3.p.cmd.Process.Signal(syscall.SIGKILL)
	eventually(t, 10*time.Second, "n3 seen dead", func() error {
		st, err := n1.members(t)
		if err != nil {
			return err
		}
		if st["n3"] != "dead" {
			return fmt.Errorf("n1 sees n3 %q", st["n3"])
		}
		return nil
	})
	t.Logf("failure detection: n3 dead after %s", time.Since(killed).Round(time.Millisecond))
	if d := time.Since(killed); d > 5*time.Second {
		t.Errorf("n3 took %s to be seen dead; the fast profile promises about 1.2 s", d)
	}
}
