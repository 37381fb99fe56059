package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/picket-dev/picket/internal/config"
	"github.com/picket-dev/picket/internal/logstore"
)

func TestRaftTimingByProfile(t *testing.T) {
	for _, p := range []string{ProfileFast, ProfileLAN, ProfileWAN, ""} {
		tm := raftTimingFor(p)
		c := raft.DefaultConfig()
		c.LocalID = "x"
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = tm.heartbeat, tm.election, tm.lease, tm.commit
		if err := raft.ValidateConfig(c); err != nil {
			t.Errorf("profile %q: %v", p, err)
		}
	}
	if f := raftTimingFor(ProfileFast); f.heartbeat > 500*time.Millisecond || f.lease > 250*time.Millisecond {
		t.Errorf("fast profile too slow for ~1 s failover: %+v", f)
	}
}

func TestRaftElectsOneLeader(t *testing.T) {
	c := newRaftTestCluster(t, 3, false)
	readers := map[string]*metric.ManualReader{}
	for i := range 3 {
		readers[fmt.Sprintf("n%d", i+1)] = metric.NewManualReader()
	}
	c.startWithMeters(readers)
	l := c.waitLeader(10 * time.Second)
	info, ok := l.r.Leader()
	if !ok || info.Name != l.name || info.Address != l.addr || info.Term == 0 {
		t.Errorf("leader info %+v, %v; want %s at %s", info, ok, l.name, l.addr)
	}
	for _, n := range c.running() {
		want := int64(0)
		if n == l {
			want = 1
		}
		if got := gaugeValue(t, readers[n.name], "picket_raft_leader"); got != want {
			t.Errorf("%s: picket_raft_leader = %d, want %d", n.name, got, want)
		}
		if n.r.State() != map[bool]string{true: "leader", false: "follower"}[n == l] {
			t.Errorf("%s state %s", n.name, n.r.State())
		}
	}
	st := l.r.Stats()
	if len(st.Voters) != 3 || st.State != "leader" || st.Leader.Name != l.name {
		t.Errorf("stats %+v", st)
	}
	// Committed records are counted on the leader only; every voter retains them.
	recs := testRecords("w", 1, 3)
	recs[2].Level = "error"
	if _, err := l.r.AppendLogs(context.Background(), "w", []LogGroup{{Records: recs}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.running() {
		if err := n.r.WaitApplied(context.Background(), l.r.AppliedIndex()); err != nil {
			t.Fatal(err)
		}
		want := int64(0)
		if n == l {
			want = 3
		}
		if got, _ := metricValue(t, readers[n.name], "picket_logs_committed"); got != want {
			t.Errorf("%s: picket_logs_committed = %d, want %d", n.name, got, want)
		}
		if got, _ := metricValue(t, readers[n.name], "picket_logs_retained"); got != 3 {
			t.Errorf("%s: picket_logs_retained = %d, want 3", n.name, got)
		}
	}
	// Observe delivers the current state at once.
	ch, cancel := c.node("n1").r.Observe(1)
	defer cancel()
	select {
	case lc := <-ch:
		if !lc.Known || lc.Leader.Name != l.name {
			t.Errorf("observed %+v", lc)
		}
	case <-time.After(time.Second):
		t.Error("Observe sent nothing")
	}
}

// startWithMeters starts three nodes, each with its own meter reader.
func (c *raftTestCluster) startWithMeters(readers map[string]*metric.ManualReader) {
	c.t.Helper()
	for range 3 {
		c.mu.Lock()
		name := fmt.Sprintf("n%d", len(c.nodes)+1)
		node := &raftTestNode{name: name, dir: c.base + "/" + name}
		c.nodes = append(c.nodes, node)
		c.mu.Unlock()
		c.listen(node)
	}
	for _, node := range c.snapshot() {
		mp := metric.NewMeterProvider(metric.WithReader(readers[node.name]))
		c.t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		c.meter = mp.Meter("test")
		c.run(node)
	}
	c.meter = nil
}

func gaugeValue(t *testing.T, r *metric.ManualReader, name string) int64 {
	t.Helper()
	v, ok := metricValue(t, r, name)
	if !ok {
		t.Fatalf("metric %s not found", name)
	}
	return v
}

// metricValue reads an int64 gauge or counter (summed over attributes).
func metricValue(t *testing.T, r *metric.ManualReader, name string) (int64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				return d.DataPoints[0].Value, true
			case metricdata.Sum[int64]:
				var s int64
				for _, p := range d.DataPoints {
					s += p.Value
				}
				return s, true
			}
		}
	}
	return 0, false
}

// writer streams log groups for one node through whichever node leads, retrying the
// same seqs after every error, and remembers what was acknowledged.
type raftWriter struct {
	node  string
	acked []uint64
}

func (w *raftWriter) run(ctx context.Context, c *raftTestCluster, batch int, slowest *time.Duration, mu *sync.Mutex) {
	sink := leaderSink{c}
	seq := 1
	for ctx.Err() == nil {
		recs := testRecords(w.node, seq, batch)
		start := time.Now()
		for ctx.Err() == nil {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			acc, err := sink.AppendLogStream(actx, w.node, StreamPos{}, []LogGroup{{Records: recs}})
			cancel()
			if err == nil {
				if len(acc) != 1 {
					panic(fmt.Sprintf("accepted %v", acc))
				}
				mu.Lock()
				for _, r := range recs {
					w.acked = append(w.acked, r.Seq)
				}
				mu.Unlock()
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if ctx.Err() == nil {
			mu.Lock()
			*slowest = max(*slowest, time.Since(start))
			mu.Unlock()
		}
		seq += batch
	}
}

func TestRaftLeaderKillLosesNothing(t *testing.T) {
	c := newRaftTestCluster(t, 3, false)
	c.start(3)
	l := c.waitLeader(10 * time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	writers := make([]*raftWriter, 6)
	for i := range writers {
		writers[i] = &raftWriter{node: fmt.Sprintf("w%d", i)}
		wg.Go(func() { writers[i].run(ctx, c, 20, &slowest, &mu) })
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, w := range writers {
			n += len(w.acked)
		}
		return n
	}
	raftWaitFor(t, 10*time.Second, "writes before the kill", func() bool { return count() > 500 })
	mu.Lock()
	slowest = 0
	mu.Unlock()
	killed := time.Now()
	c.kill(l)
	before := count()
	nl := c.waitLeader(10*time.Second, c.running()...)
	raftWaitFor(t, 10*time.Second, "writes after the kill", func() bool { return count() > before+500 })
	recovered := time.Since(killed)
	cancel()
	wg.Wait()
	t.Logf("old leader %s killed; new leader %s; slowest write across the kill %s; %d records acknowledged",
		l.name, nl.name, slowest, count())
	if slowest > 5*time.Second || recovered > 10*time.Second {
		t.Errorf("writes stalled for %s after the leader was killed; want about 1-2 s on the fast profile", slowest)
	}

	// Every acknowledged record is in the new leader's store exactly once.
	if err := nl.r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.running() {
		got := seqCount(allRecords(t, n.r.Store()))
		for _, w := range writers {
			for _, seq := range w.acked {
				if got[w.node][seq] != 1 {
					t.Fatalf("%s: record %s/%d stored %d times, want 1", n.name, w.node, seq, got[w.node][seq])
				}
			}
		}
		for node, seqs := range got {
			for seq, k := range seqs {
				if k != 1 {
					t.Fatalf("%s: record %s/%d stored %d times", n.name, node, seq, k)
				}
			}
		}
		if n != nl {
			if err := n.r.WaitApplied(context.Background(), nl.r.AppliedIndex()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The killed voter comes back and catches up.
	c.restart(l)
	raftWaitFor(t, 10*time.Second, "the restarted voter to catch up", func() bool {
		return len(allRecords(t, l.r.Store())) == len(allRecords(t, nl.r.Store()))
	})
}

func TestRaftPartitionedLeader(t *testing.T) {
	c := newRaftTestCluster(t, 3, true)
	c.start(3)
	old := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	if _, err := old.r.AppendLogs(ctx, "w", []LogGroup{{Records: testRecords("w", 1, 10)}}); err != nil {
		t.Fatal(err)
	}
	var majority []*raftTestNode
	for _, n := range c.running() {
		if n != old {
			majority = append(majority, n)
			n.trans.Disconnect(raft.ServerAddress(old.addr))
		}
	}
	old.trans.DisconnectAll()

	// The minority refuses writes: the old leader steps down within its lease.
	raftWaitFor(t, 5*time.Second, "the partitioned leader to step down", func() bool { return !old.r.IsLeader() })
	actx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := old.r.AppendLogs(actx, "w", []LogGroup{{Records: testRecords("w", 11, 1)}})
	cancel()
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("minority write: err %v, want ErrNotLeader", err)
	}
	// The majority elects and goes on.
	nl := c.waitLeader(10*time.Second, majority...)
	if _, err := nl.r.AppendLogs(ctx, "w", []LogGroup{{Records: testRecords("w", 11, 10)}}); err != nil {
		t.Fatal(err)
	}
	if err := nl.r.Register(ctx, "svc", nl.name, "v"); err != nil {
		t.Fatal(err)
	}
	if _, ok := old.r.Whereis("svc"); ok {
		t.Fatal("partitioned node saw a write of the majority")
	}
	// Heal: the old leader rejoins as a follower (pre-vote keeps it from disrupting)
	// and catches up.
	for _, n := range majority {
		n.trans.Connect(raft.ServerAddress(old.addr), old.trans)
		old.trans.Connect(raft.ServerAddress(n.addr), n.trans)
	}
	raftWaitFor(t, 10*time.Second, "the healed node to catch up", func() bool {
		_, ok := old.r.Whereis("svc")
		return ok && len(allRecords(t, old.r.Store())) == 20
	})
	if got := c.waitLeader(10 * time.Second); got == old {
		t.Logf("old leader won again after healing (allowed)")
	}
	for node, seqs := range seqCount(allRecords(t, old.r.Store())) {
		for seq, k := range seqs {
			if k != 1 {
				t.Errorf("record %s/%d stored %d times", node, seq, k)
			}
		}
	}
}

func TestRaftRestartAllKeepsRecords(t *testing.T) {
	c := newRaftTestCluster(t, 3, false)
	c.snapshotBytes = 16 << 10 // snapshot often, so restarts restore snapshots and replay logs
	c.start(3)
	l := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	total := 0
	for i := range 40 {
		recs := testRecords("w", 1+i*25, 25)
		if _, err := l.r.AppendLogs(ctx, "w", []LogGroup{{Key: fmt.Sprintf("k%d", i), Records: recs}}); err != nil {
			t.Fatal(err)
		}
		total += len(recs)
		time.Sleep(5 * time.Millisecond) // let the maintenance loop see the byte trigger now and then
	}
	if err := l.r.Register(ctx, "db", "n2", "v"); err != nil {
		t.Fatal(err)
	}
	raftWaitFor(t, 10*time.Second, "a snapshot on the leader", func() bool {
		return l.r.Stats().Raw["last_snapshot_index"] != "0"
	})
	for _, n := range c.snapshot() {
		c.kill(n)
	}
	for _, n := range c.snapshot() {
		c.restart(n)
	}
	nl := c.waitLeader(15 * time.Second)
	if err := nl.r.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.running() {
		if err := n.r.WaitApplied(ctx, nl.r.AppliedIndex()); err != nil {
			t.Fatal(err)
		}
		recs := allRecords(t, n.r.Store())
		if len(recs) != total {
			t.Errorf("%s: %d records after restart, want %d", n.name, len(recs), total)
		}
		for _, seqs := range seqCount(recs) {
			for seq, k := range seqs {
				if k != 1 {
					t.Errorf("%s: seq %d stored %d times", n.name, seq, k)
				}
			}
		}
		if _, ok := n.r.Whereis("db"); !ok {
			t.Errorf("%s: registry lost in restart", n.name)
		}
	}
	// Keys survive too: a retried keyed group is still a no-op.
	acc, err := nl.r.AppendLogs(ctx, "w", []LogGroup{{Key: "k3", Records: testRecords("w", 5000, 7)}})
	if err != nil || acc[0] != 25 {
		t.Errorf("replayed key: %v, %v; want the first count 25", acc, err)
	}
}

func TestRaftRegistry(t *testing.T) {
	c := newRaftTestCluster(t, 3, false)
	c.start(3)
	l := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	var follower *raftTestNode
	for _, n := range c.running() {
		if n != l {
			follower = n
		}
	}
	if err := follower.r.Register(ctx, "x", "n1", "v"); !errors.Is(err, ErrNotLeader) {
		t.Errorf("register on a follower: %v, want ErrNotLeader", err)
	}
	c.mu.Lock() // members() reads it from the nodes' maintenance goroutines
	c.extra = []Member{{Name: "app1", Status: StatusAlive}}
	c.mu.Unlock()
	if err := l.r.Register(ctx, "db", "app1", "10.0.0.1:5432"); err != nil {
		t.Fatal(err)
	}
	if err := l.r.Register(ctx, "db", "n2", "other"); !errors.Is(err, ErrNameTaken) {
		t.Errorf("second register: %v, want ErrNameTaken", err)
	}
	if err := l.r.Unregister(ctx, "db", "n2"); !errors.Is(err, ErrNotOwner) {
		t.Errorf("unregister by another owner: %v, want ErrNotOwner", err)
	}
	// A linearizable read on a follower: the leader's read index, then wait for it.
	idx, err := l.r.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.r.WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if reg, ok := follower.r.Whereis("db"); !ok || reg.Owner != "app1" || reg.Value != "10.0.0.1:5432" {
		t.Fatalf("whereis on a follower = %+v, %v", reg, ok)
	}
	if _, err := follower.r.ReadIndex(ctx); !errors.Is(err, ErrNotLeader) {
		t.Errorf("ReadIndex on a follower: %v", err)
	}
	// The owner dies: after the detection time the leader releases its names.
	dead := time.Now()
	c.setStatus("app1", StatusDead)
	raftWaitFor(t, 3*DetectionTime(ProfileFast)+5*time.Second, "release of the dead owner's names", func() bool {
		_, ok := l.r.Whereis("db")
		return !ok
	})
	if took := time.Since(dead); took < DetectionTime(ProfileFast) {
		t.Errorf("names released after %s, before the detection time %s", took, DetectionTime(ProfileFast))
	}
	if err := l.r.Register(ctx, "db", "n2", "mine"); err != nil {
		t.Errorf("register after release: %v", err)
	}
}

func TestRaftAssignFencing(t *testing.T) {
	c := newRaftTestCluster(t, 1, true)
	c.start(1)
	l := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	term := l.r.Term()
	if _, err := l.r.ApplyCommand(ctx, Assign{Term: term, Nodes: map[string][]string{"api": {"n1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.r.ApplyCommand(ctx, Assign{Term: term - 1, Nodes: map[string][]string{"api": {"n9"}}}); !errors.Is(err, ErrStaleTerm) {
		t.Errorf("stale assign: %v, want ErrStaleTerm", err)
	}
	a, at := l.r.Assignments()
	if at != term || len(a["api"].Nodes) != 1 || a["api"].Nodes[0] != "n1" {
		t.Errorf("assignments %v (term %d)", a, at)
	}
	if v, err := l.r.AdvanceExportCursor(ctx, 42); err != nil || v != 42 || l.r.ExportCursor() != 42 {
		t.Errorf("export cursor: %v, %v", v, err)
	}
	if _, err := l.r.ApplyCommand(ctx, RegisterName{Name: "bad/name", Owner: "n1"}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("invalid command: %v", err)
	}
}

func TestRaftAutopilot(t *testing.T) {
	c := newRaftTestCluster(t, 3, true)
	c.start(3)
	l := c.waitLeader(10 * time.Second)
	voters := func() string { return strings.Join(l.r.Stats().Voters, ",") }

	// A follower dies: after 3× the detection time it is removed (two voters keep quorum).
	var victim *raftTestNode
	for _, n := range c.running() {
		if n != l {
			victim = n
			break
		}
	}
	c.kill(victim)
	c.setStatus(victim.name, StatusDead)
	raftWaitFor(t, 3*DetectionTime(ProfileFast)+10*time.Second, "removal of the dead voter", func() bool {
		return !strings.Contains(voters(), victim.name)
	})
	// A new server appears: it is added as a non-voter, then promoted.
	c.start(1)
	raftWaitFor(t, 15*time.Second, "the new server to become a voter", func() bool {
		return strings.Contains(voters(), "n4") && len(l.r.Stats().Voters) == 3
	})
	if _, err := l.r.AppendLogs(context.Background(), "w", []LogGroup{{Records: testRecords("w", 1, 5)}}); err != nil {
		t.Fatal(err)
	}
	n4 := c.node("n4")
	raftWaitFor(t, 10*time.Second, "n4 to replicate", func() bool { return len(allRecords(t, n4.r.Store())) == 5 })
}

func TestRaftBootstrapOnlyChosenServers(t *testing.T) {
	// Four servers, voters 3: n1..n3 bootstrap; n4 never does and is not added (the
	// voter set is full).
	c := newRaftTestCluster(t, 3, true)
	c.start(4)
	l := c.waitLeader(10*time.Second, c.node("n1"), c.node("n2"), c.node("n3"))
	n4 := c.node("n4")
	raftHoldsFor(t, 10*raftTimingFor(ProfileFast).tick, "n4 staying out of Raft", func() bool {
		return len(l.r.Stats().Voters) == 3 && !n4.r.IsLeader() && n4.r.raft.LastIndex() == 0
	})
}

func TestRaftSingleNodeWithoutMembership(t *testing.T) {
	dir := t.TempDir()
	mux, err := ListenRPC("127.0.0.1:0", nil, nil, raftDiscard())
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	cfg := config.Cluster{Profile: ProfileFast, Server: true, Raft: config.Raft{Voters: 3}}
	r, err := NewRaft(RaftOptions{NodeName: "solo", Dir: dir, Config: cfg, Layer: mux.RaftLayer(), Advertise: mux.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	raftWaitFor(t, 10*time.Second, "the lone node to lead", r.IsLeader)
	if _, err := r.AppendLogs(ctx, "solo", []LogGroup{{Records: []logstore.Record{{Seq: 1, Level: "WARNING", Message: "m"}}}}); err != nil {
		t.Fatal(err)
	}
	recs, err := r.QueryLogs(logstore.Query{})
	if err != nil || len(recs) != 1 || recs[0].Node != "solo" || recs[0].Level != "warn" {
		t.Errorf("query: %+v, %v", recs, err)
	}
	if _, err := r.AppendLogs(ctx, "solo", []LogGroup{{Records: []logstore.Record{{Seq: 0, Level: "info"}}}}); !errors.Is(err, logstore.ErrInvalid) {
		t.Errorf("seq 0: %v, want ErrInvalid", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := r.AppendLogs(context.Background(), "solo", nil); !errors.Is(err, ErrNotLeader) {
		t.Errorf("append after shutdown: %v", err)
	}
}
