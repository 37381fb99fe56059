package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.opentelemetry.io/otel/metric"

	"github.com/picket-dev/picket/internal/config"
	"github.com/picket-dev/picket/internal/logstore"
)

// raftLogBuf collects the logs of a test cluster; they are printed when the test fails.
type raftLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *raftLogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *raftLogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// raftWaitFor polls cond until it holds or the timeout passes.
func raftWaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// raftTestNode is one voter of a raftTestCluster.
type raftTestNode struct {
	name  string
	dir   string
	addr  string
	mux   *Mux                 // real loopback transport
	trans *raft.InmemTransport // in-memory transport (partition tests)
	r     *Raft
	stop  func() error
}

// raftTestCluster runs Raft nodes in-process, over real loopback Muxes or raft's
// in-memory transport, with a membership view the test controls.
type raftTestCluster struct {
	t     testing.TB
	base  string
	inmem bool
	cfg   config.Cluster
	ret   config.Retention
	logs  *raftLogBuf
	level slog.Level
	// snapshotBytes overrides the snapshot trigger (0: default).
	snapshotBytes int64
	// meter, when set, is given to the nodes started next.
	meter metric.Meter
	// walSegment is the raft-wal segment size (small in tests; 0: production size).
	walSegment int
	// noStreams makes the nodes gossip metadata of a picket without ordered log streams
	// (Meta.LogStreams false), as an earlier version would.
	noStreams bool

	mu     sync.Mutex
	status map[string]string // member status overrides; default alive
	extra  []Member          // members that run no Raft node here
	nodes  []*raftTestNode
}

func raftTestConfig(voters int) config.Cluster {
	return config.Cluster{
		Name:    "test",
		Profile: ProfileFast,
		Server:  true,
		Join:    []string{"127.0.0.1:1"}, // not joined; makes bootstrap_expect default to voters
		Raft:    config.Raft{Voters: voters, BootstrapExpect: voters},
	}
}

func newRaftTestCluster(t testing.TB, n int, inmem bool) *raftTestCluster {
	t.Helper()
	c := &raftTestCluster{t: t, base: t.TempDir(), inmem: inmem, cfg: raftTestConfig(n), logs: &raftLogBuf{},
		level: slog.LevelInfo, status: map[string]string{}, walSegment: 1 << 20}
	t.Cleanup(func() {
		c.stopAll()
		if t.Failed() {
			t.Logf("cluster logs:\n%s", c.logs.String())
		}
	})
	return c
}

// start adds n new nodes named n1, n2, ... and starts them.
func (c *raftTestCluster) start(n int) {
	c.t.Helper()
	for range n {
		c.mu.Lock()
		name := fmt.Sprintf("n%d", len(c.nodes)+1)
		node := &raftTestNode{name: name, dir: filepath.Join(c.base, name)}
		c.nodes = append(c.nodes, node)
		c.mu.Unlock()
		c.listen(node)
	}
	for _, node := range c.snapshot() {
		if node.r == nil {
			c.run(node)
		}
	}
}

// listen creates the node's transport, reusing its address after a restart.
func (c *raftTestCluster) listen(node *raftTestNode) {
	c.t.Helper()
	if c.inmem {
		addr, trans := raft.NewInmemTransportWithTimeout(raft.ServerAddress(node.addr), 500*time.Millisecond)
		c.mu.Lock()
		node.addr, node.trans = string(addr), trans
		c.mu.Unlock()
		for _, o := range c.snapshot() {
			if o != node && o.trans != nil {
				node.trans.Connect(raft.ServerAddress(o.addr), o.trans)
				o.trans.Connect(addr, node.trans)
			}
		}
		return
	}
	addr := node.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var mux *Mux
	var err error
	for range 50 { // the old listener's port may take a moment to be free again
		if mux, err = ListenRPC(addr, nil, nil, slog.New(slog.NewTextHandler(c.logs, nil))); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("listen %s: %v", node.name, err)
	}
	c.mu.Lock()
	node.mux, node.addr = mux, mux.Addr().String()
	c.mu.Unlock()
}

// run opens the node's Raft and runs it until stop.
func (c *raftTestCluster) run(node *raftTestNode) {
	c.t.Helper()
	o := RaftOptions{
		NodeName:      node.name,
		Dir:           node.dir,
		Config:        c.cfg,
		Retention:     c.ret,
		Advertise:     node.addr,
		Members:       c.members,
		Logger:        slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: c.level})).With("node", node.name),
		Meter:         c.meter,
		walSegment:    c.walSegment,
		snapshotBytes: c.snapshotBytes,
	}
	if c.inmem {
		o.transport = node.trans
	} else {
		o.Layer = node.mux.RaftLayer()
	}
	r, err := NewRaft(o)
	if err != nil {
		c.t.Fatalf("NewRaft %s: %v", node.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	c.mu.Lock()
	node.r = r
	c.mu.Unlock()
	node.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
			if node.mux != nil {
				node.mux.Close()
			}
			if node.trans != nil {
				node.trans.Close()
			}
		})
		return runErr
	}
}

// kill stops a node (as a crash would, minus the disk state it keeps).
func (c *raftTestCluster) kill(node *raftTestNode) {
	c.t.Helper()
	if err := node.stop(); err != nil {
		c.t.Errorf("stop %s: %v", node.name, err)
	}
}

// restart brings a stopped node back on the same address and data directory.
func (c *raftTestCluster) restart(node *raftTestNode) {
	c.t.Helper()
	c.mu.Lock()
	node.r, node.mux, node.trans = nil, nil, nil
	c.mu.Unlock()
	c.listen(node)
	c.run(node)
}

func (c *raftTestCluster) stopAll() {
	for _, n := range c.snapshot() {
		if n.stop != nil {
			if err := n.stop(); err != nil {
				c.t.Errorf("stop %s: %v", n.name, err)
			}
		}
	}
}

func (c *raftTestCluster) snapshot() []*raftTestNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*raftTestNode(nil), c.nodes...)
}

// members is the membership view given to every node.
func (c *raftTestCluster) members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Member
	for _, n := range c.nodes {
		st := c.status[n.name]
		if st == "" {
			st = StatusAlive
		}
		out = append(out, Member{Name: n.name, Address: n.addr, Status: st,
			Meta: Meta{RPCAddr: n.addr, Roles: []string{RoleServer}, LogStreams: !c.noStreams}})
	}
	for _, m := range c.extra {
		if st := c.status[m.Name]; st != "" {
			m.Status = st
		}
		out = append(out, m)
	}
	return out
}

func (c *raftTestCluster) setStatus(name, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status[name] = status
}

// running lists the nodes whose Raft is running.
func (c *raftTestCluster) running() []*raftTestNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*raftTestNode
	for _, n := range c.nodes {
		if n.r != nil {
			select {
			case <-n.r.closed:
			default:
				out = append(out, n)
			}
		}
	}
	return out
}

// leader returns the running node that is leader, or nil (also when two claim it).
func (c *raftTestCluster) leader() *raftTestNode {
	var l *raftTestNode
	for _, n := range c.running() {
		if n.r.IsLeader() {
			if l != nil {
				return nil
			}
			l = n
		}
	}
	return l
}

// waitLeader waits until one running node leads and every running node (of those
// given, default all) knows it.
func (c *raftTestCluster) waitLeader(timeout time.Duration, among ...*raftTestNode) *raftTestNode {
	c.t.Helper()
	var l *raftTestNode
	raftWaitFor(c.t, timeout, "a leader all nodes agree on", func() bool {
		nodes := among
		if len(nodes) == 0 {
			nodes = c.running()
		}
		l = nil
		for _, n := range nodes {
			if n.r.IsLeader() {
				if l != nil {
					return false
				}
				l = n
			}
		}
		if l == nil {
			return false
		}
		for _, n := range nodes {
			info, ok := n.r.Leader()
			if !ok || info.Name != l.name {
				return false
			}
		}
		return true
	})
	return l
}

func (c *raftTestCluster) node(name string) *raftTestNode {
	for _, n := range c.snapshot() {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// leaderSink sends to whichever node leads now: what the agent's RPC glue does.
type leaderSink struct{ c *raftTestCluster }

func (s leaderSink) AppendLogStream(ctx context.Context, node string, pos StreamPos, groups []LogGroup) ([]int, error) {
	l := s.c.leader()
	if l == nil {
		return nil, fmt.Errorf("%w: %w", ErrNotLeader, ErrNoLeader)
	}
	return l.r.AppendLogStream(ctx, node, pos, groups)
}

// allRecords returns every record of a store in index order.
func allRecords(t testing.TB, s *logstore.Store) []logstore.Record {
	t.Helper()
	var out []logstore.Record
	var cursor uint64
	for {
		recs, err := s.Since(cursor, logstore.MaxLimit)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		cursor = recs[len(recs)-1].Index
	}
}

// seqCount counts records by node and seq.
func seqCount(recs []logstore.Record) map[string]map[uint64]int {
	out := map[string]map[uint64]int{}
	for _, r := range recs {
		if out[r.Node] == nil {
			out[r.Node] = map[uint64]int{}
		}
		out[r.Node][r.Seq]++
	}
	return out
}

func testRecords(node string, from, n int) []logstore.Record {
	out := make([]logstore.Record, n)
	for i := range out {
		seq := uint64(from + i)
		out[i] = logstore.Record{Node: node, Seq: seq, Level: logstore.LevelInfo,
			Message: fmt.Sprintf("%s record %d", node, seq), Time: time.Unix(1767225600, int64(seq)).UTC()}
	}
	return out
}

func raftDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// raftHoldsFor checks that cond stays true for d (a negative test: something must not
// happen).
func raftHoldsFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
