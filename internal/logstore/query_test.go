package logstore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

// queryFixture stores 300 records over three nodes, all levels, several segments,
// with times that are not monotonic in store order.
func queryFixture(t *testing.T) *Store {
	s := open(t, config.Retention{}, WithSegmentSize(minSegmentSize))
	levels := []string{"debug", "info", "warn", "error"}
	msgs := []string{"request %d ok", "Disk FULL on /var (%d)", "Überlauf im Puffer %d", "conn reset %d"}
	var batch []Record
	seq := map[string]uint64{}
	for i := range 300 {
		node := fmt.Sprintf("n%d", i%3+1)
		seq[node]++
		at := t0.Add(time.Duration(i) * time.Minute)
		if i%10 == 0 {
			at = at.Add(-30 * time.Minute) // late arrival
		}
		r := rec(node, seq[node], levels[i%4], fmt.Sprintf(msgs[(i/4)%4], i), at)
		if i%5 == 0 {
			r.Attrs = map[string]string{"i": fmt.Sprint(i)}
		}
		batch = append(batch, r)
		if len(batch) == 7 {
			mustApply(t, s, Batch{Records: batch, Now: t0})
			batch = nil
		}
	}
	mustApply(t, s, Batch{Records: batch, Now: t0})
	return s
}

// reference is the documented Query semantics over a plain slice.
func reference(recs []Record, q Query) []Record {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	minLevel := uint8(0)
	if q.Level != "" {
		minLevel, _ = levelCode(q.Level)
	}
	var out []Record
	for _, r := range slices.Backward(recs) {
		l, _ := levelCode(r.Level)
		switch {
		case l < minLevel,
			q.Node != "" && r.Node != q.Node,
			!q.Since.IsZero() && r.Time.Before(q.Since),
			!q.Until.IsZero() && !r.Time.Before(q.Until),
			!strings.Contains(strings.ToLower(r.Message), strings.ToLower(q.Contains)),
			r.Index <= q.AfterIndex,
			q.BeforeIndex > 0 && r.Index >= q.BeforeIndex:
			continue
		}
		if out = append(out, r); len(out) == limit {
			break
		}
	}
	return out
}

func indices(recs []Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Index
	}
	return out
}

func TestQuery(t *testing.T) {
	s := queryFixture(t)
	everything := all(t, s)
	cases := []struct {
		name string
		q    Query
		n    int // expected result count, checked besides the reference
	}{
		{"default limit", Query{}, 100},
		{"limit above max", Query{Limit: MaxLimit + 5}, 300},
		{"level warn means warn and error", Query{Level: "warn", Limit: 1000}, 150},
		{"level error", Query{Level: "ERROR", Limit: 1000}, 75},
		{"level debug is everything", Query{Level: "debug", Limit: 1000}, 300},
		{"node", Query{Node: "n2", Limit: 1000}, 100},
		{"unknown node", Query{Node: "nx"}, 0},
		{"since until", Query{Since: t0.Add(100 * time.Minute), Until: t0.Add(110 * time.Minute), Limit: 1000}, 10},
		{"contains ascii any case", Query{Contains: "disk full", Limit: 1000}, 76},
		{"contains unicode", Query{Contains: "ÜBERLAUF", Limit: 1000}, 76},
		{"combined", Query{Level: "error", Node: "n3", Contains: "reset", Limit: 1000}, 6},
		{"combined 2", Query{Level: "warn", Node: "n1", Contains: "FULL", Limit: 3}, 3},
		{"before index pages back", Query{BeforeIndex: 101, Limit: 10}, 10},
		{"after index", Query{AfterIndex: 295}, 5},
		{"after and before", Query{AfterIndex: 10, BeforeIndex: 20}, 9},
		{"after the end", Query{AfterIndex: 1<<64 - 1}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.Query(c.q)
			if err != nil {
				t.Fatal(err)
			}
			want := reference(everything, c.q)
			if !slices.Equal(indices(got), indices(want)) {
				t.Fatalf("got %v\nwant %v", indices(got), indices(want))
			}
			if len(got) != c.n {
				t.Errorf("%d results, want %d", len(got), c.n)
			}
			for i, r := range got {
				if !recordsEqual(r, want[i]) {
					t.Fatalf("record %d: got %+v want %+v", i, r, want[i])
				}
			}
		})
	}
	if _, err := s.Query(Query{Level: "loud"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad level: err = %v, want ErrInvalid", err)
	}
}

func recordsEqual(a, b Record) bool {
	if a.Index != b.Index || !a.Time.Equal(b.Time) || a.Level != b.Level || a.Message != b.Message ||
		a.Node != b.Node || a.Seq != b.Seq || len(a.Attrs) != len(b.Attrs) {
		return false
	}
	for k, v := range a.Attrs {
		if w, ok := b.Attrs[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestSince(t *testing.T) {
	s := open(t, config.Retention{MaxRecords: 10})
	for i := range 25 {
		mustApply(t, s, Batch{Records: []Record{rec("a", uint64(i+1), "info", "x", t0)}, Now: t0})
	}
	cases := []struct {
		cursor uint64
		limit  int
		want   []uint64
	}{
		{0, 3, []uint64{16, 17, 18}}, // evicted records are skipped: a gap after the cursor
		{17, 0, []uint64{18, 19, 20, 21, 22, 23, 24, 25}},
		{24, 5, []uint64{25}},
		{25, 5, nil},
		{99, 5, nil},
		{1<<64 - 1, 5, nil},
	}
	for _, c := range cases {
		got, err := s.Since(c.cursor, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(indices(got), c.want) {
			t.Errorf("Since(%d, %d) = %v, want %v", c.cursor, c.limit, indices(got), c.want)
		}
	}
}

func TestContainsFoldASCII(t *testing.T) {
	cases := []struct {
		hay, needle string
		want        bool
	}{
		{"Disk FULL", "full", true},
		{"Disk FULL", "disk full", true},
		{"Disk FUL", "full", false},
		{"", "", true},
		{"abc", "", true},
		{"ab", "abc", false},
		{"xxaxab", "ab", true},
		{"Über", "ber", true},
	}
	for _, c := range cases {
		if got := containsFoldASCII([]byte(c.hay), c.needle); got != c.want {
			t.Errorf("containsFoldASCII(%q, %q) = %v", c.hay, c.needle, got)
		}
	}
}
