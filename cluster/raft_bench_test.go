package cluster

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/picket-dev/picket/internal/config"
	"github.com/picket-dev/picket/internal/logstore"
)

// BENCHMARKS.md P7: durable log ingestion with 3 voters on loopback, 256-byte records,
// 64 concurrent posters. b.N counts records. Run both sides in one go:
//
//	go test -run '^$' -bench 'LogIngest|RaftBaseline' -benchtime 200000x ./cluster/
//
// and compare records/s of BenchmarkLogIngest/batch=64 with lines/s of
// BenchmarkRaftBaseline (target ≥ 0.7×, p99 ack ≤ 50 ms).

const (
	benchPosters    = 64
	benchRecordSize = 256
	benchShippers   = 1
)

// benchLatencies collects per-call latencies from many goroutines.
type benchLatencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *benchLatencies) add(d time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d)
	l.mu.Unlock()
}

func (l *benchLatencies) p99() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 {
		return 0
	}
	slices.Sort(l.all)
	return l.all[min(len(l.all)-1, len(l.all)*99/100)]
}

func BenchmarkLogIngest(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchLogIngest(b, batch) })
	}
}

func benchLogIngest(b *testing.B, batch int) {
	c := newRaftTestCluster(b, 3, false)
	c.cfg.Profile = ProfileLAN // benchmark load must not trigger elections
	c.ret = config.Default().Logs.Retention
	c.walSegment = 0
	c.level = 8 // quiet
	c.start(3)
	l := c.waitLeader(20 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	var ships []*Shipper
	var runs sync.WaitGroup
	for i := range benchShippers {
		s, err := NewShipper(ShipperOptions{Node: fmt.Sprint("bench", i), Dir: b.TempDir(), SpoolMaxBytes: 64 << 20, Sink: l.r})
		if err != nil {
			b.Fatal(err)
		}
		ships = append(ships, s)
		runs.Go(func() { _ = s.Run(ctx) })
	}
	defer func() {
		cancel()
		runs.Wait()
		for _, s := range ships {
			_ = s.Close()
		}
	}()

	msg := strings.Repeat("x", benchRecordSize-40)
	posts := max(b.N/batch, benchPosters)
	var next atomic.Int64
	var lat benchLatencies
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range benchPosters {
		s := ships[p%len(ships)]
		wg.Go(func() {
			recs := make([]logstore.Record, batch)
			for i := range recs {
				recs[i] = logstore.Record{Level: "info", Message: msg, Attrs: map[string]string{"k": "v"}}
			}
			for next.Add(1) <= int64(posts) {
				t := time.Now()
				if _, err := s.Post(ctx, "", recs); err != nil {
					failed.Add(1)
					continue
				}
				lat.add(time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	total := posts * batch
	b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(lat.p99().Microseconds())/1000, "p99_ms")
	if failed.Load() > 0 {
		b.Fatalf("%d posts failed", failed.Load())
	}
	// Nothing lost: every voter has every record.
	if err := l.r.Barrier(context.Background()); err != nil {
		b.Fatal(err)
	}
	for _, n := range c.running() {
		if err := n.r.WaitApplied(context.Background(), l.r.AppliedIndex()); err != nil {
			b.Fatal(err)
		}
		if st, _ := n.r.Store().Stats(); st.Records != total || st.Duplicates != 0 {
			b.Fatalf("%s holds %d records (%d duplicates dropped), want %d", n.name, st.Records, st.Duplicates, total)
		}
	}
}

// countFSM is the baseline's FSM: it only counts entries.
type countFSM struct{ n atomic.Int64 }

func (f *countFSM) Apply(*raft.Log) any                 { f.n.Add(1); return nil }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnap{}, nil }
func (f *countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type countSnap struct{}

func (countSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (countSnap) Release()                          {}

// BenchmarkRaftBaseline is bare hashicorp/raft + raft-wal over the same loopback Mux:
// 64 goroutines apply entries of 64 lines of 256 bytes. b.N counts lines.
func BenchmarkRaftBaseline(b *testing.B) {
	const lines = 64
	type node struct {
		r     *raft.Raft
		trans *raft.NetworkTransport
		mux   *Mux
		w     *wal.WAL
		meta  *metadb.BoltMetaDB
	}
	var nodes []*node
	var servers []raft.Server
	for i := range 3 {
		mux, err := ListenRPC("127.0.0.1:0", nil, nil, raftDiscard())
		if err != nil {
			b.Fatal(err)
		}
		n := &node{mux: mux, meta: &metadb.BoltMetaDB{}}
		nodes = append(nodes, n)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint("b", i)), Address: raft.ServerAddress(mux.Addr().String())})
	}
	for i, n := range nodes {
		dir := b.TempDir()
		hl := newRaftLogger(raftDiscard())
		var err error
		n.w, err = wal.Open(dir, wal.WithLogger(hl), wal.WithMetaStore(n.meta), wal.WithSegmentSize(walSegmentSize))
		if err != nil {
			b.Fatal(err)
		}
		snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snap"), 1, hl)
		if err != nil {
			b.Fatal(err)
		}
		n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: n.mux.RaftLayer(), MaxPool: 4, Timeout: 10 * time.Second, Logger: hl})
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.Logger = hl
		conf.NoLegacyTelemetry = true
		conf.BatchApplyCh = true
		conf.MaxAppendEntries = 256
		n.r, err = raft.NewRaft(conf, &countFSM{}, n.w, n.w, snaps, n.trans)
		if err != nil {
			b.Fatal(err)
		}
		if err := n.r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		for _, n := range nodes {
			_ = n.r.Shutdown().Error()
			n.trans.CloseStreams()
			_ = n.w.Close()
			_ = n.meta.Close()
			n.mux.Close()
		}
	}()
	var leader *raft.Raft
	raftWaitFor(b, 20*time.Second, "a baseline leader", func() bool {
		for _, n := range nodes {
			if n.r.State() == raft.Leader {
				leader = n.r
				return true
			}
		}
		return false
	})
	entry := make([]byte, lines*benchRecordSize)
	for i := range entry {
		entry[i] = 'x'
	}
	entries := max(b.N/lines, benchPosters)
	var next atomic.Int64
	var lat benchLatencies
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range benchPosters {
		wg.Go(func() {
			for next.Add(1) <= int64(entries) {
				t := time.Now()
				if err := leader.Apply(entry, 0).Error(); err != nil {
					b.Error(err)
					return
				}
				lat.add(time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(entries*lines)/elapsed.Seconds(), "lines/s")
	b.ReportMetric(float64(lat.p99().Microseconds())/1000, "p99_ms")
}
