package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

func fill(t *testing.T, s *Store, node string, from, to int, now time.Time) {
	t.Helper()
	for i := from; i <= to; i += 10 {
		var b []Record
		for j := i; j < i+10 && j <= to; j++ {
			b = append(b, Record{Node: node, Seq: uint64(j), Level: "info", Message: fmt.Sprintf("message %d", j),
				Time: now, Attrs: map[string]string{"j": fmt.Sprint(j)}})
		}
		mustApply(t, s, Batch{Records: b, Now: now, IdempotencyKey: fmt.Sprintf("%s-%d", node, i)})
	}
}

func snapshotBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func comparable(st Stats) Stats {
	st.Segments, st.DiskBytes, st.MemoryBytes = 0, 0, 0
	return st
}

func sameStore(t *testing.T, a, b *Store) {
	t.Helper()
	ra, rb := all(t, a), all(t, b)
	if len(ra) != len(rb) {
		t.Fatalf("%d records vs %d", len(ra), len(rb))
	}
	for i := range ra {
		if !recordsEqual(ra[i], rb[i]) {
			t.Fatalf("record %d: %+v vs %+v", i, ra[i], rb[i])
		}
	}
	sa, sb := comparable(stats(t, a)), comparable(stats(t, b))
	if fmt.Sprint(sa) != fmt.Sprint(sb) {
		t.Fatalf("stats differ:\n%+v\n%+v", sa, sb)
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	ret := config.Retention{MaxRecords: 100}
	s := open(t, ret, WithSegmentSize(minSegmentSize))
	fill(t, s, "a", 1, 150, t0)
	want := all(t, s)
	wantStats := comparable(stats(t, s))
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	pinned := make([]string, 0, len(sn.parts))
	for _, p := range sn.parts {
		pinned = append(pinned, p.seg.path)
	}
	// Apply goes on and evicts every record the snapshot holds.
	fill(t, s, "a", 151, 400, t0)
	if st := stats(t, s); st.FirstIndex <= uint64(len(want)+50) {
		t.Fatalf("test setup: first index %d, expected the snapshot's records evicted", st.FirstIndex)
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	sn.Release()
	for _, p := range pinned {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("evicted segment %s still on disk after Release: %v", p, err)
		}
	}

	r := open(t, ret, WithSegmentSize(2*minSegmentSize))
	fill(t, r, "z", 1, 30, t0) // content to be replaced
	ch := r.Changed()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	<-ch
	got := all(t, r)
	if len(got) != len(want) {
		t.Fatalf("restored %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !recordsEqual(got[i], want[i]) {
			t.Fatalf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if g := comparable(stats(t, r)); fmt.Sprint(g) != fmt.Sprint(wantStats) {
		t.Fatalf("restored stats\n%+v\nwant\n%+v", g, wantStats)
	}
	// Raft replays the log after the snapshot: the replica catches up exactly.
	fill(t, r, "a", 151, 400, t0)
	sameStore(t, s, r)
	// Keys survived: replaying an old batch is a no-op that reports its first count.
	if n := mustApply(t, r, Batch{Records: []Record{rec("a", 999, "info", "x", t0)}, IdempotencyKey: "a-391", Now: t0}); n != 10 {
		t.Errorf("replayed key accepted %d, want 10", n)
	}
}

func TestSnapshotEmptyStore(t *testing.T) {
	s := open(t, config.Retention{MaxRecords: 1})
	mustApply(t, s, Batch{Records: []Record{rec("a", 5, "info", "x", t0)}, Now: t0})
	mustApply(t, s, Batch{Records: []Record{rec("a", 6, "info", "x", t0)}, Now: t0})
	r := open(t, config.Retention{MaxRecords: 1})
	if err := r.Restore(bytes.NewReader(snapshotBytes(t, s))); err != nil {
		t.Fatal(err)
	}
	sameStore(t, s, r)
	if n := mustApply(t, r, Batch{Records: []Record{rec("a", 5, "info", "x", t0)}, Now: t0}); n != 0 {
		t.Errorf("dedupe state lost in snapshot: accepted %d", n)
	}
}

func TestRestoreRejectsDamage(t *testing.T) {
	src := open(t, config.Retention{})
	fill(t, src, "a", 1, 40, t0)
	good := snapshotBytes(t, src)
	metaEnd := len(snapshotMagic) + 8 + int(uint32(good[8])|uint32(good[9])<<8|uint32(good[10])<<16|uint32(good[11])<<24)
	flip := func(at int) []byte {
		b := slices.Clone(good)
		b[at] ^= 0x40
		return b
	}
	cases := []struct {
		name    string
		data    []byte
		corrupt bool // errors.Is(err, ErrCorrupt), else any error
	}{
		{"empty", nil, false},
		{"bad magic", flip(0), true},
		{"meta byte", flip(len(snapshotMagic) + 8 + 3), true},
		{"record byte", flip(metaEnd + 20), true},
		{"last byte", flip(len(good) - 1), true},
		{"truncated", good[:len(good)-5], false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := open(t, config.Retention{})
			fill(t, dst, "b", 1, 10, t0)
			before := all(t, dst)
			err := dst.Restore(bytes.NewReader(c.data))
			if err == nil || (c.corrupt && !errors.Is(err, ErrCorrupt)) {
				t.Fatalf("Restore = %v", err)
			}
			if after := all(t, dst); ids(after) != ids(before) {
				t.Fatalf("failed Restore changed the store: %s", ids(after))
			}
			if entries, _ := os.ReadDir(dst.root); len(entries) != 1 {
				t.Errorf("failed Restore left %d generation directories", len(entries))
			}
		})
	}
}
