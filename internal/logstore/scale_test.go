package logstore

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

// million fills a store with n records from 8 nodes: 20% debug, 60% info, 15% warn,
// 5% error; one record in 10,000 mentions "panic".
func million(tb testing.TB, n int) *Store {
	tb.Helper()
	s := open(tb, config.Retention{MaxRecords: 1_000_000, MaxBytes: 256 << 20, MaxAge: config.Duration(168 * time.Hour)})
	rng := rand.New(rand.NewPCG(1, 2))
	seqs := make([]uint64, 8)
	batch := make([]Record, 0, 1000)
	at := t0
	for i := range n {
		node := rng.IntN(8)
		seqs[node]++
		level := "info"
		switch p := rng.IntN(100); {
		case p < 20:
			level = "debug"
		case p >= 95:
			level = "error"
		case p >= 80:
			level = "warn"
		}
		msg := fmt.Sprintf("GET /api/v1/items/%d 200 %dms user=%d", rng.IntN(1e6), rng.IntN(500), rng.IntN(1e4))
		if i%10_000 == 5_000 {
			msg = "panic: runtime error: index out of range"
		}
		at = at.Add(time.Millisecond)
		batch = append(batch, Record{Node: fmt.Sprintf("n%d", node), Seq: seqs[node], Level: level, Message: msg, Time: at})
		if len(batch) == cap(batch) || i == n-1 {
			mustApply(tb, s, Batch{Records: batch, Now: at})
			batch = batch[:0]
		}
	}
	return s
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestScaleMillion(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("1M-record scale test: run without -short and without -race")
	}
	before := heapAlloc()
	start := time.Now()
	s := million(t, 1_000_000)
	fillTime := time.Since(start)
	heap := int64(heapAlloc()) - int64(before)
	st := stats(t, s)
	t.Logf("1M records applied in %v; heap %.1f MiB (estimate %.1f MiB), %d segments, %.1f MiB on disk",
		fillTime, float64(heap)/(1<<20), float64(st.MemoryBytes)/(1<<20), st.Segments, float64(st.DiskBytes)/(1<<20))
	if st.Records != 1_000_000 {
		t.Fatalf("%d records retained", st.Records)
	}
	if heap >= 64<<20 {
		t.Errorf("heap for 1M records is %d bytes, want < 64 MiB", heap)
	}
	queries := []struct {
		name string
		q    Query
		max  time.Duration // generous: catches a full disk scan, not a slow machine
	}{
		{"level+node newest 100", Query{Level: "error", Node: "n3"}, 200 * time.Millisecond},
		{"level error 10000", Query{Level: "error", Limit: MaxLimit}, time.Second},
		{"node + time window", Query{Node: "n5", Since: t0.Add(500 * time.Second), Until: t0.Add(510 * time.Second), Limit: MaxLimit}, 500 * time.Millisecond},
		{"rare level+node+time, full index scan", Query{Level: "error", Node: "n1", Until: t0.Add(time.Second)}, 500 * time.Millisecond},
		{"contains over all (disk scan)", Query{Contains: "PANIC"}, 10 * time.Second},
	}
	for _, c := range queries {
		start := time.Now()
		res, err := s.Query(c.q)
		d := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("query %-40s %5d results in %v", c.name, len(res), d)
		if d > c.max {
			t.Errorf("query %s took %v, want under %v", c.name, d, c.max)
		}
	}
	start = time.Now()
	recs, err := s.Since(500_000, MaxLimit)
	if err != nil || len(recs) != MaxLimit {
		t.Fatalf("Since: %d records, %v", len(recs), err)
	}
	t.Logf("Since 10000 records in %v", time.Since(start))
}

func BenchmarkApply(b *testing.B) {
	s := open(b, config.Retention{MaxRecords: 1_000_000})
	msg := string(make([]byte, 256))
	batch := make([]Record, 64)
	var seq uint64
	b.SetBytes(64 * 256)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			seq++
			batch[i] = Record{Node: "n1", Seq: seq, Level: "info", Message: msg, Time: t0, Attrs: map[string]string{"k": "v"}}
		}
		if _, err := s.Apply(Batch{Records: batch, Now: t0}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQueryLevelNode(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 1M-record store")
	}
	s := million(b, 1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		res, err := s.Query(Query{Level: "error", Node: "n3", Limit: 100})
		if err != nil || len(res) != 100 {
			b.Fatalf("%d results, %v", len(res), err)
		}
	}
}
