package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// clusterSetup is a 3-agent picket cluster of a workload.
type clusterSetup struct {
	Profile string // cluster.profile: RaftProfileLAN or RaftProfileFast (the names match)
	Extra   string // top-level YAML appended to every agent's config
}

// picketNode is one agent of a PicketCluster.
type picketNode struct {
	Name   string
	URL    string // http://127.0.0.1:port of its API
	Gossip string // 127.0.0.1:port
	Proc   *Proc
	dead   atomic.Bool
}

// PicketCluster is three real `picket agent` processes on 127.0.0.1, all Raft voters,
// joined through the first. Its methods are safe for concurrent use; Close is idempotent.
type PicketCluster struct {
	Nodes  []*picketNode
	dir    string
	client *http.Client

	closeOnce sync.Once
}

// clusterNodes is the size of the clusters the bench starts (BENCHMARKS.md: 3 voters).
const clusterNodes = 3

// startPicketCluster writes a config for each of three agents under dir and starts them
// with bin; it returns once every agent serves /healthz and names the same leader.
func startPicketCluster(ctx context.Context, procs *Procs, bin, dir string, s clusterSetup) (*PicketCluster, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	c := &PicketCluster{dir: dir, client: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second},
	}}
	ok := false
	defer func() {
		if !ok {
			_ = c.Close()
		}
	}()
	ports, err := FreePorts(3 * clusterNodes)
	if err != nil {
		return nil, err
	}
	for i := range clusterNodes {
		name := fmt.Sprintf("n%d", i+1)
		n := &picketNode{
			Name:   name,
			URL:    fmt.Sprintf("http://127.0.0.1:%d", ports[3*i]),
			Gossip: fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
		}
		nd := filepath.Join(dir, name)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return nil, fmt.Errorf("picket cluster: %w", err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "node_name: %s\n", name)
		fmt.Fprintf(&b, "data_dir: %s\n", filepath.Join(nd, "data"))
		b.WriteString("log: {level: warn, format: text}\n")
		fmt.Fprintf(&b, "http: {listen: %q}\n", strings.TrimPrefix(n.URL, "http://"))
		b.WriteString("cluster:\n  name: bench\n")
		fmt.Fprintf(&b, "  bind: %s\n  rpc: 127.0.0.1:%d\n", n.Gossip, ports[3*i+2])
		fmt.Fprintf(&b, "  key: %q\n  profile: %s\n", base64.StdEncoding.EncodeToString(key), s.Profile)
		if i > 0 {
			fmt.Fprintf(&b, "  join: [%q]\n", c.Nodes[0].Gossip)
		}
		b.WriteString("  retry_join_interval: 200ms\n")
		fmt.Fprintf(&b, "  raft: {voters: %d, bootstrap_expect: %d}\n", clusterNodes, clusterNodes)
		b.WriteString("collectors:\n  disabled: [cpu, load, memory, swap, filesystem, disk, network, uptime]\n")
		b.WriteString(s.Extra)
		cfg := filepath.Join(nd, "picket.yaml")
		if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", cfg, err)
		}
		if n.Proc, err = procs.Start(filepath.Base(dir)+"-"+name, bin, "agent", "-c", cfg); err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := WaitHTTP(ctx, n.Proc, n.URL+"/healthz", 20*time.Second); err != nil {
			return nil, fmt.Errorf("picket cluster: %w", err)
		}
	}
	var last error
	err = pollUntil(ctx, 60*time.Second, func() bool {
		var leader string
		for _, n := range c.Nodes {
			l, err := c.leaderSeenBy(ctx, n)
			if err != nil {
				last = err
				return false
			}
			if leader != "" && l != leader {
				last = fmt.Errorf("%s names %s the leader, another node names %s", n.Name, l, leader)
				return false
			}
			leader = l
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("picket cluster: no common leader: %w (last: %v); %s log (%s) ends:\n%s",
			err, last, c.Nodes[0].Name, c.Nodes[0].Proc.LogPath, c.Nodes[0].Proc.Tail(10))
	}
	ok = true
	return c, nil
}

// leaderSeenBy returns the aggregator's name as n's GET /v1/leader gives it.
func (c *PicketCluster) leaderSeenBy(ctx context.Context, n *picketNode) (string, error) {
	var l struct {
		Name string `json:"name"`
	}
	if err := c.getJSON(ctx, n, "/v1/leader", &l); err != nil {
		return "", err
	}
	if l.Name == "" {
		return "", fmt.Errorf("%s: GET /v1/leader: no name", n.Name)
	}
	return l.Name, nil
}

// Leader returns the node that an alive node names the aggregator.
func (c *PicketCluster) Leader(ctx context.Context) (*picketNode, error) {
	var errs []error
	for _, n := range c.alive() {
		name, err := c.leaderSeenBy(ctx, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, m := range c.Nodes {
			if m.Name == name && !m.dead.Load() {
				return m, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s names %s the leader, which is not an alive node of the cluster", n.Name, name))
	}
	return nil, fmt.Errorf("%w: %w", ErrNoLeader, errors.Join(errs...))
}

// alive returns the nodes not killed.
func (c *PicketCluster) alive() []*picketNode {
	var out []*picketNode
	for _, n := range c.Nodes {
		if !n.dead.Load() {
			out = append(out, n)
		}
	}
	return out
}

// Kill sends SIGKILL to n and returns once it is reaped.
func (c *PicketCluster) Kill(n *picketNode) {
	n.dead.Store(true)
	n.Proc.Kill()
}

// Metrics returns the samples of n's /metrics.
func (c *PicketCluster) Metrics(ctx context.Context, n *picketNode) ([]Sample, error) {
	body, err := c.get(ctx, n, "/metrics")
	if err != nil {
		return nil, err
	}
	return ParseExposition(string(body)), nil
}

// get fetches path from n and returns the body of a 200 answer.
func (c *PicketCluster) get(ctx context.Context, n *picketNode, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: GET %s: %w", n.Name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: GET %s: read: %w", n.Name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: GET %s: %s: %s", n.Name, path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

func (c *PicketCluster) getJSON(ctx context.Context, n *picketNode, path string, v any) error {
	body, err := c.get(ctx, n, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: GET %s: decode: %w", n.Name, path, err)
	}
	return nil
}

// post sends body to path on n and returns the status and answer.
func (c *PicketCluster) post(ctx context.Context, n *picketNode, path string, header http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: POST %s: %w", n.Name, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s: POST %s: read: %w", n.Name, path, err)
	}
	return resp.StatusCode, out, nil
}

// Close kills every agent (their data is thrown away) and removes dir.
func (c *PicketCluster) Close() error {
	c.closeOnce.Do(func() {
		var wg sync.WaitGroup
		for _, n := range c.Nodes {
			n.dead.Store(true)
			wg.Go(n.Proc.Kill)
		}
		wg.Wait()
		c.client.CloseIdleConnections()
		_ = os.RemoveAll(c.dir)
	})
	return nil
}
