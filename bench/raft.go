package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// Raft timing profiles of the P8 failover runs.
const (
	RaftProfileLAN  = "lan"  // raft.DefaultConfig: 1 s heartbeat and election timeouts
	RaftProfileFast = "fast" // 500 ms heartbeat and election timeouts, 250 ms leader lease
)

// ErrNoLeader is returned by LogTarget.Append when no replica is leader at the moment.
var ErrNoLeader = errors.New("no leader")

// LogTarget is a replicated, durable log under test (P7, P8): the bare raft harness
// (BareRaft) as the baseline, and picket's cluster log once the aggregator lands. Its
// methods are safe for concurrent use; Close is idempotent.
type LogTarget interface {
	// Append returns nil only once every record is committed by a majority, durably. It
	// does not retry: without a leader it fails at once (ErrNoLeader or the target's own error).
	Append(ctx context.Context, records [][]byte) error
	// KillLeader stops the current leader abruptly, as kill -9 would, and returns as soon
	// as it is gone; the other replicas are left to notice on their own.
	KillLeader(ctx context.Context) error
	// Committed returns how many records the surviving replicas hold once they have caught
	// up with the leader (the smallest count among them).
	Committed(ctx context.Context) (int64, error)
	// Close stops every replica and frees their resources.
	Close() error
}

// LogTargetFactory starts a fresh 3-voter LogTarget keeping its data under dir, with the
// timing of profile (RaftProfileLAN or RaftProfileFast), and returns once it accepts writes.
type LogTargetFactory func(ctx context.Context, dir, profile string) (LogTarget, error)

// BareRaft is three hashicorp/raft voters in this process, each with a raft-wal log and
// stable store, a file snapshot store and a TCP transport on 127.0.0.1, and an FSM that only
// counts records: what raft and raft-wal alone can do on this machine.
type BareRaft struct {
	nodes []*bareNode

	wg        sync.WaitGroup // killed leaders shutting down
	closeOnce sync.Once
	closeErr  error
}

type bareNode struct {
	id    raft.ServerID
	r     *raft.Raft
	trans *raft.NetworkTransport
	wal   *wal.WAL
	fsm   *countFSM
	dead  atomic.Bool
}

// NewBareRaft is a LogTargetFactory for BareRaft.
func NewBareRaft(ctx context.Context, dir, profile string) (LogTarget, error) {
	b := &BareRaft{}
	ok := false
	defer func() {
		if !ok {
			_ = b.Close()
		}
	}()
	logger := hclog.NewNullLogger()
	var servers []raft.Server
	for i := range 3 {
		trans, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, logger)
		if err != nil {
			return nil, fmt.Errorf("bare raft: transport: %w", err)
		}
		n := &bareNode{id: raft.ServerID(fmt.Sprintf("r%d", i)), trans: trans, fsm: &countFSM{}}
		b.nodes = append(b.nodes, n)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: n.id, Address: trans.LocalAddr()})
	}
	for _, n := range b.nodes {
		nd := filepath.Join(dir, string(n.id))
		if err := os.MkdirAll(filepath.Join(nd, "wal"), 0o755); err != nil {
			return nil, fmt.Errorf("bare raft: %w", err)
		}
		w, err := wal.Open(filepath.Join(nd, "wal"), wal.WithLogger(logger))
		if err != nil {
			return nil, fmt.Errorf("bare raft: open raft-wal in %s: %w", nd, err)
		}
		n.wal = w
		snaps, err := raft.NewFileSnapshotStoreWithLogger(nd, 2, logger)
		if err != nil {
			return nil, fmt.Errorf("bare raft: snapshot store: %w", err)
		}
		conf := raft.DefaultConfig()
		conf.LocalID = n.id
		conf.Logger = logger
		if profile == RaftProfileFast {
			conf.HeartbeatTimeout = 500 * time.Millisecond
			conf.ElectionTimeout = 500 * time.Millisecond
			conf.LeaderLeaseTimeout = 250 * time.Millisecond
		}
		if err := raft.BootstrapCluster(conf, w, w, snaps, n.trans, raft.Configuration{Servers: servers}); err != nil {
			return nil, fmt.Errorf("bare raft: bootstrap %s: %w", n.id, err)
		}
		if n.r, err = raft.NewRaft(conf, n.fsm, w, w, snaps, n.trans); err != nil {
			return nil, fmt.Errorf("bare raft: start %s: %w", n.id, err)
		}
	}
	if err := waitWritable(ctx, b, 30*time.Second); err != nil {
		return nil, fmt.Errorf("bare raft: %w", err)
	}
	ok = true
	return b, nil
}

func (b *BareRaft) leader() *bareNode {
	for _, n := range b.nodes {
		if !n.dead.Load() && n.r != nil && n.r.State() == raft.Leader {
			return n
		}
	}
	return nil
}

// Append implements LogTarget: one raft entry holding every record.
func (b *BareRaft) Append(ctx context.Context, records [][]byte) error {
	n := b.leader()
	if n == nil {
		return ErrNoLeader
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	return n.r.Apply(encodeRecords(records), timeout).Error()
}

// KillLeader implements LogTarget: the leader's transport is closed at once, then it shuts
// down in the background (Close waits for that).
func (b *BareRaft) KillLeader(context.Context) error {
	n := b.leader()
	if n == nil {
		return ErrNoLeader
	}
	n.dead.Store(true)
	n.trans.CloseStreams()
	_ = n.trans.Close()
	b.wg.Go(func() { _ = n.r.Shutdown().Error() })
	return nil
}

// Committed implements LogTarget.
func (b *BareRaft) Committed(ctx context.Context) (int64, error) {
	n := b.leader()
	if n == nil {
		return 0, ErrNoLeader
	}
	if err := n.r.Barrier(10 * time.Second).Error(); err != nil {
		return 0, fmt.Errorf("bare raft: barrier: %w", err)
	}
	want := n.fsm.records.Load()
	deadline := time.Now().Add(10 * time.Second)
	for {
		least := want
		for _, m := range b.nodes {
			if !m.dead.Load() {
				least = min(least, m.fsm.records.Load())
			}
		}
		if least == want || time.Now().After(deadline) {
			return least, nil
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return least, err
		}
	}
}

// Close implements LogTarget.
func (b *BareRaft) Close() error {
	b.closeOnce.Do(func() {
		var errs []error
		for _, n := range b.nodes {
			if n.r != nil && !n.dead.Load() {
				errs = append(errs, n.r.Shutdown().Error())
			}
		}
		b.wg.Wait()
		for _, n := range b.nodes {
			_ = n.trans.Close()
			if n.wal != nil {
				errs = append(errs, n.wal.Close())
			}
		}
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
}

// encodeRecords packs records as a 4-byte count followed by each record with a 4-byte length.
func encodeRecords(records [][]byte) []byte {
	size := 4
	for _, r := range records {
		size += 4 + len(r)
	}
	buf := make([]byte, 4, size)
	binary.BigEndian.PutUint32(buf, uint32(len(records)))
	for _, r := range records {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r)))
		buf = append(buf, r...)
	}
	return buf
}

// countFSM counts the records of the entries it applies; raft calls Apply from one goroutine.
type countFSM struct{ records atomic.Int64 }

// Apply implements raft.FSM.
func (f *countFSM) Apply(l *raft.Log) any {
	if len(l.Data) >= 4 {
		f.records.Add(int64(binary.BigEndian.Uint32(l.Data)))
	}
	return nil
}

// Snapshot implements raft.FSM.
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnapshot(f.records.Load()), nil }

// Restore implements raft.FSM.
func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var buf [8]byte
	if _, err := io.ReadFull(rc, buf[:]); err != nil {
		return fmt.Errorf("restore record count: %w", err)
	}
	f.records.Store(int64(binary.BigEndian.Uint64(buf[:])))
	return nil
}

type countSnapshot int64

// Persist implements raft.FSMSnapshot.
func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(s))
	if _, err := sink.Write(buf[:]); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (countSnapshot) Release() {}

// waitWritable appends one record until it succeeds or timeout passes.
func waitWritable(ctx context.Context, t LogTarget, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	rec := [][]byte{[]byte("bench: writable?")}
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := t.Append(actx, rec)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no write accepted within %s: %w", timeout, err)
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
}

// IngestResult is one MeasureIngest run.
type IngestResult struct {
	Records   int64           // acknowledged records
	Entries   int64           // acknowledged Append calls
	Errors    int64           // failed Append calls
	Elapsed   time.Duration   // measured time
	Latencies []time.Duration // per acknowledged Append
	Lost      int64           // acknowledged records the replicas do not hold

	// Aggregator is what the target's Raft leader did during the run, when the target
	// reports it (PicketLog); zero otherwise.
	Aggregator ApplyStats
}

// RecordsPerSecond is acknowledged records per second.
func (r IngestResult) RecordsPerSecond() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// MeasureIngest has clients goroutines append batches of perEntry records of size bytes
// to t for d, each waiting for its acknowledgement before the next, then checks that the
// replicas hold every acknowledged record.
func MeasureIngest(ctx context.Context, t LogTarget, clients, perEntry, size int, d time.Duration) (IngestResult, error) {
	c0, err := t.Committed(ctx)
	if err != nil {
		return IngestResult{}, err
	}
	records := make([][]byte, perEntry)
	for i := range records {
		records[i] = make([]byte, size)
		for j := range records[i] {
			records[i][j] = byte('a' + (i+j)%26)
		}
	}
	var res IngestResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Go(func() {
			var lat []time.Duration
			var entries, errs int64
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err := t.Append(ctx, records); err != nil {
					errs++
					_ = sleepCtx(ctx, 10*time.Millisecond)
					continue
				}
				lat = append(lat, time.Since(t0))
				entries++
			}
			mu.Lock()
			res.Latencies = append(res.Latencies, lat...)
			res.Entries += entries
			res.Errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Records = res.Entries * int64(perEntry)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	c1, err := t.Committed(ctx)
	if err != nil {
		return res, err
	}
	res.Lost = max(res.Records-(c1-c0), 0)
	return res, nil
}

// MeasureFailover kills t's leader and returns the time until an Append succeeds again.
func MeasureFailover(ctx context.Context, t LogTarget) (time.Duration, error) {
	if err := waitWritable(ctx, t, 30*time.Second); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := t.KillLeader(ctx); err != nil {
		return 0, fmt.Errorf("kill the leader: %w", err)
	}
	if err := waitWritable(ctx, t, 60*time.Second); err != nil {
		return 0, fmt.Errorf("after killing the leader: %w", err)
	}
	return time.Since(start), nil
}
