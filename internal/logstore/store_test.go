package logstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

func open(t testing.TB, ret config.Retention, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), ret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rec(node string, seq uint64, level, msg string, at time.Time) Record {
	return Record{Node: node, Seq: seq, Level: level, Message: msg, Time: at}
}

func mustApply(t testing.TB, s *Store, b Batch) int {
	t.Helper()
	n, err := s.Apply(b)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return n
}

func stats(t testing.TB, s *Store) Stats {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// fataler is what the helpers need from *testing.T and *rapid.T.
type fataler interface {
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// all returns every retained record in store order.
func all(t fataler, s *Store) []Record {
	var out []Record
	var cursor uint64
	for {
		recs, err := s.Since(cursor, MaxLimit)
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

func ids(recs []Record) string {
	var b bytes.Buffer
	for i, r := range recs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s/%d", r.Node, r.Seq)
	}
	return b.String()
}

func TestApplyDedupe(t *testing.T) {
	s := open(t, config.Retention{})
	steps := []struct {
		name     string
		recs     []Record
		accepted int
		stored   string
	}{
		{"first", []Record{rec("a", 1, "info", "x", t0), rec("a", 2, "info", "x", t0)}, 2, "a/1 a/2"},
		{"retry whole batch", []Record{rec("a", 1, "info", "x", t0), rec("a", 2, "info", "x", t0)}, 0, "a/1 a/2"},
		{"overlap and gap", []Record{rec("a", 2, "info", "x", t0), rec("a", 5, "info", "x", t0)}, 1, "a/1 a/2 a/5"},
		{"other node same seq", []Record{rec("b", 1, "info", "x", t0)}, 1, "a/1 a/2 a/5 b/1"},
		{"out of order in batch", []Record{rec("b", 3, "info", "x", t0), rec("b", 2, "info", "x", t0), rec("b", 3, "warn", "y", t0)}, 1, "a/1 a/2 a/5 b/1 b/3"},
		{"late lower seq", []Record{rec("a", 4, "error", "x", t0)}, 0, "a/1 a/2 a/5 b/1 b/3"},
		{"empty", nil, 0, "a/1 a/2 a/5 b/1 b/3"},
	}
	for _, st := range steps {
		got := mustApply(t, s, Batch{Records: st.recs, Now: t0})
		if got != st.accepted {
			t.Errorf("%s: accepted %d, want %d", st.name, got, st.accepted)
		}
		if g := ids(all(t, s)); g != st.stored {
			t.Errorf("%s: stored %q, want %q", st.name, g, st.stored)
		}
	}
	recs := all(t, s)
	for i, r := range recs {
		if r.Index != uint64(i+1) {
			t.Errorf("record %d has index %d", i, r.Index)
		}
	}
	got := stats(t, s)
	if got.Duplicates != 6 || got.Committed["info"] != 5 || got.Records != 5 || got.LastIndex != 5 || got.FirstIndex != 1 {
		t.Errorf("stats = %+v", got)
	}
}

func TestApplyBatchReportsLevels(t *testing.T) {
	s := open(t, config.Retention{})
	tests := []struct {
		name string
		b    Batch
		want Applied
	}{
		{"new records", Batch{Now: t0, IdempotencyKey: "k", Records: []Record{
			rec("a", 1, "info", "x", t0), rec("a", 2, "WARNING", "x", t0), rec("a", 3, "info", "x", t0)}},
			Applied{Accepted: 3, New: map[string]int{"info": 2, "warn": 1}}},
		{"duplicates count nothing", Batch{Now: t0, Records: []Record{rec("a", 2, "error", "x", t0)}},
			Applied{}},
		{"replayed key", Batch{Now: t0, IdempotencyKey: "k", Records: []Record{rec("a", 9, "error", "x", t0)}},
			Applied{Accepted: 3, Replay: true}},
	}
	for _, tt := range tests {
		got, err := s.ApplyBatch(tt.b)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got.Accepted != tt.want.Accepted || got.Replay != tt.want.Replay || len(got.New) != len(tt.want.New) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
		for l, n := range tt.want.New {
			if got.New[l] != n {
				t.Errorf("%s: New[%s] = %d, want %d", tt.name, l, got.New[l], n)
			}
		}
	}
	if n, err := s.Len(); n != 3 || err != nil {
		t.Errorf("Len = %d, %v", n, err)
	}
	_ = s.Close()
	if _, err := s.Len(); !errors.Is(err, ErrClosed) {
		t.Errorf("Len after Close: %v", err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	s := open(t, config.Retention{}, WithKeyWindow(time.Hour, 2))
	b := Batch{Records: []Record{rec("a", 1, "info", "x", t0), rec("a", 2, "info", "y", t0)}, IdempotencyKey: "k1", Now: t0}
	if n := mustApply(t, s, b); n != 2 {
		t.Fatalf("first apply accepted %d", n)
	}
	// Same key, different content: the key wins, nothing is stored.
	b2 := Batch{Records: []Record{rec("a", 3, "info", "z", t0)}, IdempotencyKey: "k1", Now: t0.Add(59 * time.Minute)}
	if n := mustApply(t, s, b2); n != 2 {
		t.Errorf("replay accepted %d, want the first count 2", n)
	}
	if g := ids(all(t, s)); g != "a/1 a/2" {
		t.Errorf("after replay: %s", g)
	}
	// After the window the key is forgotten; the batch is applied normally.
	b2.Now = t0.Add(61 * time.Minute)
	if n := mustApply(t, s, b2); n != 1 {
		t.Errorf("after window accepted %d, want 1", n)
	}
	// Count bound: k2, k3, k4 keep only the last two.
	for i, k := range []string{"k2", "k3", "k4"} {
		mustApply(t, s, Batch{Records: []Record{rec("b", uint64(i+1), "info", "", time.Time{})}, IdempotencyKey: k, Now: t0.Add(62 * time.Minute)})
	}
	if st := stats(t, s); st.Keys != 2 || st.Replays != 1 {
		t.Errorf("keys=%d replays=%d, want 2 and 1", st.Keys, st.Replays)
	}
	if n := mustApply(t, s, Batch{Records: []Record{rec("b", 9, "info", "", t0)}, IdempotencyKey: "k2", Now: t0.Add(62 * time.Minute)}); n != 1 {
		t.Errorf("evicted key k2 replay accepted %d, want 1 (key forgotten, record new)", n)
	}
	if n := mustApply(t, s, Batch{IdempotencyKey: "k4", Now: t0.Add(62 * time.Minute)}); n != 1 {
		t.Errorf("kept key k4 replay accepted %d, want 1", n)
	}
}

func TestValidate(t *testing.T) {
	ok := rec("a", 1, "info", "m", t0)
	cases := []struct {
		name string
		b    Batch
		want string
	}{
		{"no now", Batch{Records: []Record{ok}}, "batch has no Now"},
		{"bad level", Batch{Records: []Record{ok, rec("a", 2, "fatal", "m", t0)}, Now: t0}, `record 1: level "fatal"`},
		{"no node", Batch{Records: []Record{rec("", 1, "info", "m", t0)}, Now: t0}, "record 0: node is empty"},
		{"seq zero", Batch{Records: []Record{rec("a", 0, "info", "m", t0)}, Now: t0}, "seq is 0"},
		{"huge", Batch{Records: []Record{rec("a", 1, "info", string(make([]byte, MaxRecordBytes)), t0)}, Now: t0}, "the limit is"},
		{"long key", Batch{IdempotencyKey: string(make([]byte, MaxKeyBytes+1)), Now: t0}, "idempotency key is 257 bytes"},
		{"far time", Batch{Records: []Record{rec("a", 1, "info", "m", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))}, Now: t0}, "outside the years"},
	}
	s := open(t, config.Retention{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Apply(c.b)
			if !errors.Is(err, ErrInvalid) || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, c.want)
			}
		})
	}
	if st := stats(t, s); st.Records != 0 || st.Nodes != 0 {
		t.Errorf("invalid batches changed the store: %+v", st)
	}
	// Level spellings are normalised.
	mustApply(t, s, Batch{Records: []Record{rec("a", 1, "WARNING", "m", time.Time{})}, Now: t0})
	got := all(t, s)
	if len(got) != 1 || got[0].Level != "warn" || !got[0].Time.Equal(t0) {
		t.Errorf("stored %+v, want level warn and time = Now", got)
	}
}

func TestRetention(t *testing.T) {
	msg := string(bytes.Repeat([]byte("m"), 100))
	// Every retained record below has index and seq in 128..16383 (two-byte varints).
	frame := len(appendFrame(nil, &Record{Node: "a", Seq: 150, Message: msg}, 150, t0.UnixNano(), 1))
	cases := []struct {
		name    string
		ret     config.Retention
		n       int
		records int
		ev      Evictions
	}{
		{"records", config.Retention{MaxRecords: 50}, 200, 50, Evictions{MaxRecords: 150}},
		{"bytes", config.Retention{MaxBytes: config.Size(frame*30 + frame/2)}, 200, 30, Evictions{MaxBytes: 170}},
		{"age", config.Retention{MaxAge: config.Duration(60 * time.Second)}, 200, 61, Evictions{MaxAge: 139}},
		{"none", config.Retention{}, 200, 200, Evictions{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, c.ret, WithSegmentSize(minSegmentSize))
			// One record per second; Now follows the record time.
			for i := range c.n {
				at := t0.Add(time.Duration(i) * time.Second)
				mustApply(t, s, Batch{Records: []Record{rec("a", uint64(i+1), "info", msg, at)}, Now: at})
			}
			st := stats(t, s)
			if st.Records != c.records || st.Evicted != c.ev {
				t.Errorf("records=%d evicted=%+v, want %d %+v", st.Records, st.Evicted, c.records, c.ev)
			}
			if st.FirstIndex != uint64(c.n-c.records+1) || st.LastIndex != uint64(c.n) {
				t.Errorf("index range %d..%d", st.FirstIndex, st.LastIndex)
			}
			var sum int64
			for _, r := range all(t, s) {
				sum += int64(len(appendFrame(nil, &r, r.Index, r.Time.UnixNano(), 1)))
			}
			if st.Bytes != sum {
				t.Errorf("bytes=%d, want %d", st.Bytes, sum)
			}
			// Whole segments are deleted: disk holds at most one segment beyond the data.
			if st.DiskBytes > st.Bytes+minSegmentSize {
				t.Errorf("disk=%d for %d retained bytes", st.DiskBytes, st.Bytes)
			}
			files, _ := filepath.Glob(filepath.Join(s.st.dir, "*.seg"))
			if len(files) != st.Segments {
				t.Errorf("%d segment files, stats say %d", len(files), st.Segments)
			}
			if got := all(t, s); len(got) != c.records || got[0].Seq != uint64(c.n-c.records+1) {
				t.Errorf("retained %d records starting at seq %d", len(got), got[0].Seq)
			}
			if st.Evicted.Total()+uint64(st.Records) != st.Committed["info"] {
				t.Errorf("committed %d != retained %d + evicted %d", st.Committed["info"], st.Records, st.Evicted.Total())
			}
		})
	}
}

func TestRetentionEvictsEverything(t *testing.T) {
	s := open(t, config.Retention{MaxBytes: 10}, WithSegmentSize(minSegmentSize))
	n := mustApply(t, s, Batch{Records: []Record{rec("a", 1, "info", "too big for the bound", t0)}, Now: t0})
	st := stats(t, s)
	if n != 1 || st.Records != 0 || st.Evicted.MaxBytes != 1 || st.Segments != 0 || st.FirstIndex != 2 || st.LastIndex != 1 {
		t.Fatalf("accepted=%d stats=%+v", n, st)
	}
	mustApply(t, s, Batch{Records: []Record{rec("a", 1, "info", "dup", t0), rec("a", 2, "info", "x", t0)}, Now: t0})
	if st := stats(t, s); st.Duplicates != 1 || st.Evicted.MaxBytes != 2 {
		t.Fatalf("after second batch: %+v", st)
	}
}

func TestExpiredOnArrival(t *testing.T) {
	s := open(t, config.Retention{MaxAge: config.Duration(time.Hour)})
	n := mustApply(t, s, Batch{Records: []Record{
		rec("a", 1, "info", "old", t0.Add(-2*time.Hour)),
		rec("a", 2, "info", "fresh", t0.Add(-time.Minute)),
	}, Now: t0})
	st := stats(t, s)
	if n != 2 || st.Records != 1 || st.Evicted.MaxAge != 1 {
		t.Fatalf("accepted=%d stats=%+v", n, st)
	}
	// The expired record still counts for dedupe.
	if n := mustApply(t, s, Batch{Records: []Record{rec("a", 1, "info", "old", t0)}, Now: t0}); n != 0 {
		t.Errorf("re-sent expired record accepted %d", n)
	}
}

func TestRecordJSON(t *testing.T) {
	s := open(t, config.Retention{})
	at := time.Date(2026, 1, 2, 15, 4, 5, 123e6, time.FixedZone("x", 3600))
	mustApply(t, s, Batch{Records: []Record{
		{Node: "n2", Seq: 17, Level: "error", Message: "disk full", Time: at, Attrs: map[string]string{"k": "v"}},
		{Node: "n2", Seq: 18, Level: "info", Message: "ok", Time: at},
	}, Now: t0})
	got, err := json.Marshal(all(t, s))
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"index":1,"time":"2026-01-02T14:04:05.123Z","level":"error","message":"disk full","node":"n2","seq":17,"attrs":{"k":"v"}},` +
		`{"index":2,"time":"2026-01-02T14:04:05.123Z","level":"info","message":"ok","node":"n2","seq":18,"attrs":{}}]`
	if string(got) != want {
		t.Errorf("json:\n got %s\nwant %s", got, want)
	}
}

func TestOpenStartsEmpty(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, config.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, Batch{Records: []Record{rec("a", 1, "info", "x", t0)}, Now: t0})
	// Simulate a crash: leave the data behind, plus a file that is not ours.
	leftover := s.st.segs[0].path
	if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, config.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old data %s still there: %v", leftover, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep.txt")); err != nil {
		t.Errorf("foreign file removed: %v", err)
	}
	if st := stats(t, s2); st.Records != 0 || st.LastIndex != 0 {
		t.Errorf("reopened store not empty: %+v", st)
	}
	// Close the first store for goleak-free cleanup; its files are gone already.
	_ = s.Close()
}

func TestCloseAndChanged(t *testing.T) {
	s := open(t, config.Retention{})
	ch := s.Changed()
	mustApply(t, s, Batch{Records: []Record{rec("a", 1, "info", "x", t0)}, Now: t0})
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by an Apply that stored records")
	}
	ch = s.Changed()
	mustApply(t, s, Batch{Records: []Record{rec("a", 1, "info", "x", t0)}, Now: t0})
	select {
	case <-ch:
		t.Fatal("Changed closed by an Apply that stored nothing")
	default:
	}
	dir := s.st.dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	<-ch
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir left after Close: %v", err)
	}
	if _, err := s.Apply(Batch{Now: t0}); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close: %v", err)
	}
	if _, err := s.Query(Query{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Query after Close: %v", err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Errorf("Snapshot after Close: %v", err)
	}
}

func TestApplyWriteErrorChangesNothing(t *testing.T) {
	s := open(t, config.Retention{}, WithSegmentSize(minSegmentSize))
	mustApply(t, s, Batch{Records: []Record{rec("a", 1, "info", "x", t0)}, Now: t0})
	before := stats(t, s)
	// Break the active segment's file so the next write fails.
	seg := s.st.segs[0]
	good := seg.f
	bad, err := os.Open(seg.path) // read-only
	if err != nil {
		t.Fatal(err)
	}
	seg.f = bad
	_, err = s.Apply(Batch{Records: []Record{rec("a", 2, "info", "y", t0)}, IdempotencyKey: "k", Now: t0})
	if err == nil {
		t.Fatal("Apply on a read-only segment succeeded")
	}
	seg.f = good
	_ = bad.Close()
	if after := stats(t, s); after.Records != before.Records || after.LastIndex != before.LastIndex || after.Keys != 0 ||
		after.Committed["info"] != 1 || after.DiskBytes != before.DiskBytes {
		t.Errorf("failed Apply changed the store: before %+v after %+v", before, after)
	}
	// The same batch applies cleanly afterwards.
	if n := mustApply(t, s, Batch{Records: []Record{rec("a", 2, "info", "y", t0)}, IdempotencyKey: "k", Now: t0}); n != 1 {
		t.Errorf("retry accepted %d", n)
	}
	if g := ids(all(t, s)); g != "a/1 a/2" {
		t.Errorf("stored %s", g)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := open(t, config.Retention{MaxRecords: 500}, WithSegmentSize(minSegmentSize))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	reader := func(f func() error) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := f(); err != nil {
				errs <- err
				return
			}
		}
	}
	wg.Add(3)
	go reader(func() error {
		_, err := s.Query(Query{Level: "warn", Contains: "MSG", Limit: 50})
		return err
	})
	go reader(func() error {
		_, err := s.Since(0, 100)
		return err
	})
	go reader(func() error {
		sn, err := s.Snapshot()
		if err != nil {
			return err
		}
		defer sn.Release()
		var buf bytes.Buffer
		if _, err := sn.WriteTo(&buf); err != nil {
			return err
		}
		other, err := Open(t.TempDir(), config.Retention{})
		if err != nil {
			return err
		}
		defer other.Close()
		return other.Restore(&buf)
	})
	levels := []string{"debug", "info", "warn", "error"}
	for i := range 2000 {
		r := rec("n", uint64(i+1), levels[i%4], fmt.Sprintf("msg %d", i), t0.Add(time.Duration(i)*time.Millisecond))
		mustApply(t, s, Batch{Records: []Record{r}, Now: t0})
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := stats(t, s); st.Records != 500 || st.Evicted.MaxRecords != 1500 {
		t.Errorf("stats %+v", st)
	}
}
