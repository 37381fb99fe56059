package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count returns how many lines contain s.
func (b *syncBuffer) count(s string) int {
	n := 0
	for line := range strings.SplitSeq(b.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func testLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testNode is one running Membership on loopback with its log.
type testNode struct {
	name string
	m    *Membership
	logs *syncBuffer
	stop func()
}

// testConfig is a fast-profile cluster config bound to a free loopback port.
func testConfig() config.Cluster {
	return config.Cluster{
		Name:              "test",
		Bind:              "127.0.0.1:0",
		Profile:           ProfileFast,
		RetryJoinInterval: config.Duration(200 * time.Millisecond),
	}
}

// newNode creates a Membership without running it; Close is registered as cleanup.
func newNode(t *testing.T, name string, cfg config.Cluster, meta Meta) *testNode {
	t.Helper()
	return newNodeWith(t, Options{Config: cfg, NodeName: name, Meta: meta})
}

// newNodeWith is newNode with every option; the logger is the test's.
func newNodeWith(t *testing.T, o Options) *testNode {
	t.Helper()
	name := o.NodeName
	logs := &syncBuffer{}
	o.Logger = testLogger(logs)
	m, err := NewMembership(o)
	if err != nil {
		t.Fatalf("NewMembership(%s): %v", name, err)
	}
	n := &testNode{name: name, m: m, logs: logs, stop: func() { _ = m.Close() }}
	t.Cleanup(func() {
		n.stop()
		_ = m.Close()
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, logs.String())
		}
	})
	return n
}

// startNode creates a Membership and runs it until the test ends (or n.stop).
func startNode(t *testing.T, name string, cfg config.Cluster, meta Meta) *testNode {
	t.Helper()
	n := newNode(t, name, cfg, meta)
	runNode(t, n)
	return n
}

// runNode runs n's Membership until the test ends (or n.stop).
func runNode(t *testing.T, n *testNode) {
	name := n.name
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.m.Run(ctx) }()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run(%s) = %v", name, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run(%s) did not return within 15s of cancel", name)
			}
		})
	}
}

// startCluster starts n nodes named n1..nN; every node after the first joins the first.
func startCluster(t *testing.T, n int, cfg config.Cluster) []*testNode {
	t.Helper()
	first := startNode(t, "n1", cfg, Meta{})
	nodes := []*testNode{first}
	for i := 2; i <= n; i++ {
		c := cfg
		c.Join = []string{first.m.LocalNode().Address}
		nodes = append(nodes, startNode(t, "n"+string(rune('0'+i)), c, Meta{}))
	}
	waitConverged(t, nodes, 10*time.Second)
	return nodes
}

// waitConverged waits until every node sees every other node alive.
func waitConverged(t *testing.T, nodes []*testNode, timeout time.Duration) {
	t.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, n.name)
	}
	slices.Sort(want)
	waitFor(t, timeout, "all nodes to see "+strings.Join(want, ",")+" alive", func() bool {
		for _, n := range nodes {
			if !slices.Equal(aliveNames(n.m), want) {
				return false
			}
		}
		return true
	})
}

func aliveNames(m *Membership) []string {
	var names []string
	for _, mem := range m.Members() {
		if mem.Status == StatusAlive {
			names = append(names, mem.Name)
		}
	}
	return names
}

func memberByName(m *Membership, name string) (Member, bool) {
	for _, mem := range m.Members() {
		if mem.Name == name {
			return mem, true
		}
	}
	return Member{}, false
}

// waitFor polls cond every 20ms until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventRecorder collects a subscription's events on a goroutine that the test waits for.
type eventRecorder struct {
	mu  sync.Mutex
	evs []Event
}

func record(t *testing.T, m *Membership) *eventRecorder {
	t.Helper()
	r := &eventRecorder{}
	ch, unsubscribe := m.Subscribe(64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ch {
			r.mu.Lock()
			r.evs = append(r.evs, ev)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		unsubscribe()
		<-done
	})
	return r
}

// find returns the first recorded event of that type about that node.
func (r *eventRecorder) find(typ, node string) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.evs {
		if ev.Type == typ && ev.Node == node {
			return ev, true
		}
	}
	return Event{}, false
}

func (r *eventRecorder) ofType(typ string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, ev := range r.evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}
