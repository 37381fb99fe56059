package logstore

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
	"pgregory.net/rapid"
)

// model is the store's specification over plain slices and maps.
type model struct {
	ret      config.Retention
	window   time.Duration
	maxKeys  int
	nodeSeq  map[string]uint64
	keys     map[string]keyRec
	keyOrder []string
	stored   []Record
	bytes    int64
	next     uint64
	c        struct{ committed, dups, replays uint64 }
	evicted  Evictions
	judged   int64 // Now of the last Apply that ran retention
}

func (m *model) trimKeys(now int64) {
	for len(m.keyOrder) > 0 {
		k := m.keyOrder[0]
		if len(m.keys) <= m.maxKeys && m.keys[k].at >= now-int64(m.window) {
			return
		}
		delete(m.keys, k)
		m.keyOrder = m.keyOrder[1:]
	}
}

func (m *model) apply(b Batch) int {
	now := b.Now.UnixNano()
	m.trimKeys(now)
	if k, ok := m.keys[b.IdempotencyKey]; ok && b.IdempotencyKey != "" {
		m.c.replays++
		return k.accepted
	}
	m.judged = now
	accepted := 0
	for _, r := range b.Records {
		if r.Seq <= m.nodeSeq[r.Node] {
			m.c.dups++
			continue
		}
		m.nodeSeq[r.Node] = r.Seq
		accepted++
		if r.Time.IsZero() {
			r.Time = b.Now
		}
		if m.ret.MaxAge > 0 && r.Time.UnixNano() < now-int64(m.ret.MaxAge) {
			m.evicted.MaxAge++
			continue
		}
		r.Index, r.Time = m.next, r.Time.UTC()
		r.Level, _ = NormalizeLevel(r.Level)
		lvl, _ := levelCode(r.Level)
		m.bytes += int64(len(appendFrame(nil, &r, r.Index, r.Time.UnixNano(), lvl)))
		m.stored = append(m.stored, r)
		m.next++
	}
	m.c.committed += uint64(accepted)
	if b.IdempotencyKey != "" {
		m.keys[b.IdempotencyKey] = keyRec{accepted: accepted, at: now}
		m.keyOrder = append(m.keyOrder, b.IdempotencyKey)
		m.trimKeys(now)
	}
	for len(m.stored) > 0 {
		r := &m.stored[0]
		switch {
		case m.ret.MaxRecords > 0 && len(m.stored) > m.ret.MaxRecords:
			m.evicted.MaxRecords++
		case m.ret.MaxBytes > 0 && m.bytes > int64(m.ret.MaxBytes):
			m.evicted.MaxBytes++
		case m.ret.MaxAge > 0 && r.Time.UnixNano() < now-int64(m.ret.MaxAge):
			m.evicted.MaxAge++
		default:
			return accepted
		}
		lvl, _ := levelCode(r.Level)
		m.bytes -= int64(len(appendFrame(nil, r, r.Index, r.Time.UnixNano(), lvl)))
		m.stored = m.stored[1:]
	}
	return accepted
}

// harness drives a primary store, replicas restored from its snapshots, and the model
// through the life of agents that send, lose and retry batches.
type harness struct {
	tb       testing.TB
	base     string
	ret      config.Retention
	opts     []Option
	stores   []*Store
	m        *model
	now      time.Time
	nodes    []string
	nextSeq  map[string]uint64
	made     map[string]Record // every record ever produced, by node/seq
	history  []Batch
	waiting  []Batch // sent but not acknowledged; their nodes send nothing new
	busy     map[string]bool
	keyN     int
	snap     *Snapshot
	sinceSn  []Batch // batches applied to the primary after snap was taken
	restores int
}

func (h *harness) open(t *rapid.T) *Store {
	dir, err := os.MkdirTemp(h.base, "s")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, h.ret, h.opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(); _ = os.RemoveAll(dir) })
	return s
}

func (h *harness) deliver(t *rapid.T, b Batch) {
	want := h.m.apply(b)
	for i, s := range h.stores {
		got, err := s.Apply(b)
		if err != nil {
			t.Fatalf("store %d Apply: %v", i, err)
		}
		if got != want {
			t.Fatalf("store %d accepted %d, model %d (batch %+v)", i, got, want, b)
		}
	}
	if h.snap != nil {
		h.sinceSn = append(h.sinceSn, b)
	}
}

func (h *harness) send(t *rapid.T) {
	var free []string
	for _, n := range h.nodes {
		if !h.busy[n] {
			free = append(free, n)
		}
	}
	if len(free) == 0 {
		t.Skip("every node waits for an acknowledgement")
	}
	senders := rapid.SliceOfNDistinct(rapid.SampledFrom(free), 1, 2, rapid.ID[string]).Draw(t, "senders")
	var b Batch
	for _, n := range senders {
		for range rapid.IntRange(1, 4).Draw(t, "records") {
			h.nextSeq[n] += uint64(rapid.IntRange(1, 3).Draw(t, "seq step"))
			r := Record{
				Node:    n,
				Seq:     h.nextSeq[n],
				Level:   rapid.SampledFrom([]string{"debug", "info", "warn", "error", "WARNING"}).Draw(t, "level"),
				Message: rapid.StringMatching(`[a-zA-Z ]{0,40}`).Draw(t, "message"),
			}
			if rapid.IntRange(0, 4).Draw(t, "timed") > 0 {
				r.Time = h.now.Add(-time.Duration(rapid.IntRange(0, 720).Draw(t, "age s")) * time.Second)
			}
			if rapid.Bool().Draw(t, "attrs") {
				r.Attrs = map[string]string{"k": rapid.StringMatching(`[a-z]{0,8}`).Draw(t, "attr")}
			}
			h.made[fmt.Sprintf("%s/%d", n, r.Seq)] = r
			b.Records = append(b.Records, r)
		}
	}
	if rapid.Bool().Draw(t, "keyed") {
		h.keyN++
		b.IdempotencyKey = fmt.Sprintf("k%d", h.keyN)
	}
	b.Now = h.now
	h.history = append(h.history, b)
	switch rapid.SampledFrom([]string{"ok", "request lost", "response lost"}).Draw(t, "outcome") {
	case "ok":
		h.deliver(t, b)
		return
	case "response lost":
		h.deliver(t, b)
	}
	h.waiting = append(h.waiting, b)
	for _, n := range senders {
		h.busy[n] = true
	}
}

// retry re-sends an unacknowledged batch (same key) until it is acknowledged.
func (h *harness) retry(t *rapid.T) {
	if len(h.waiting) == 0 {
		t.Skip("nothing waiting")
	}
	i := rapid.IntRange(0, len(h.waiting)-1).Draw(t, "waiting")
	b := h.waiting[i]
	b.Now = h.now
	h.deliver(t, b)
	h.waiting = slices.Delete(h.waiting, i, i+1)
	for _, r := range b.Records {
		h.busy[r.Node] = false
	}
}

// lateDuplicate delivers any earlier batch again: a retry that arrives late, with the
// same key, another key or none.
func (h *harness) lateDuplicate(t *rapid.T) {
	if len(h.history) == 0 {
		t.Skip("no history")
	}
	b := rapid.SampledFrom(h.history).Draw(t, "old batch")
	switch rapid.SampledFrom([]string{"same key", "no key", "new key"}).Draw(t, "key") {
	case "no key":
		b.IdempotencyKey = ""
	case "new key":
		h.keyN++
		b.IdempotencyKey = fmt.Sprintf("k%d", h.keyN)
	}
	b.Now = h.now
	h.deliver(t, b)
}

func (h *harness) tick(t *rapid.T) {
	// Mostly forward; a little backwards now and then (a new leader with a slower clock).
	h.now = h.now.Add(time.Duration(rapid.IntRange(-20, 240).Draw(t, "tick s")) * time.Second)
}

// snapshot freezes the primary; restore (later) streams it into a replica and replays
// the batches applied since, as Raft does.
func (h *harness) snapshot(t *rapid.T) {
	if h.snap != nil {
		t.Skip("snapshot pending")
	}
	sn, err := h.stores[0].Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	h.snap, h.sinceSn = sn, nil
}

func (h *harness) restore(t *rapid.T) {
	if h.snap == nil {
		t.Skip("no snapshot")
	}
	var buf bytes.Buffer
	if _, err := h.snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	h.snap.Release()
	h.snap = nil
	var r *Store
	if len(h.stores) > 2 && rapid.Bool().Draw(t, "reuse replica") {
		r = h.stores[len(h.stores)-1] // Restore over existing content
		h.stores = h.stores[:len(h.stores)-1]
	} else {
		r = h.open(t)
	}
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	for _, b := range h.sinceSn {
		if _, err := r.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	h.sinceSn = nil
	h.stores = append(h.stores, r)
	h.restores++
}

// check compares every store with the model and checks the invariants directly.
func (h *harness) check(t *rapid.T) {
	now := h.now.UnixNano()
	for i, s := range h.stores {
		got := all(t, s)
		if len(got) != len(h.m.stored) {
			t.Fatalf("store %d holds %d records, model %d", i, len(got), len(h.m.stored))
		}
		seen := map[string]bool{}
		for j, r := range got {
			if !recordsEqual(r, h.m.stored[j]) {
				t.Fatalf("store %d record %d: %+v, model %+v", i, j, r, h.m.stored[j])
			}
			id := fmt.Sprintf("%s/%d", r.Node, r.Seq)
			if seen[id] {
				t.Fatalf("store %d holds %s twice", i, id)
			}
			seen[id] = true
			if made := h.made[id]; made.Message != r.Message || made.Attrs["k"] != r.Attrs["k"] {
				t.Fatalf("store %d: %s is %+v, produced as %+v", i, id, r, made)
			}
		}
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		var committed uint64
		for _, n := range st.Committed {
			committed += n
		}
		if committed != h.m.c.committed || st.Duplicates != h.m.c.dups || st.Replays != h.m.c.replays ||
			st.Evicted != h.m.evicted || st.Bytes != h.m.bytes || st.Keys != len(h.m.keys) ||
			st.LastIndex != h.m.next-1 {
			t.Fatalf("store %d stats %+v, model %+v evicted %+v bytes %d keys %d", i, st, h.m.c, h.m.evicted, h.m.bytes, len(h.m.keys))
		}
		// Nothing lost, nothing counted twice.
		if committed != uint64(st.Records)+st.Evicted.Total() {
			t.Fatalf("store %d: committed %d != retained %d + evicted %d", i, committed, st.Records, st.Evicted.Total())
		}
		// Retention bounds hold.
		if (h.ret.MaxRecords > 0 && st.Records > h.ret.MaxRecords) || (h.ret.MaxBytes > 0 && st.Bytes > int64(h.ret.MaxBytes)) {
			t.Fatalf("store %d over its bounds: %+v", i, st)
		}
		if h.ret.MaxAge > 0 && st.Records > 0 && st.OldestTime.UnixNano() < h.m.judged-int64(h.ret.MaxAge) {
			t.Fatalf("store %d: oldest record %s is past max_age", i, st.OldestTime)
		}
		q := Query{
			Level:    rapid.SampledFrom([]string{"", "info", "warn", "error"}).Draw(t, "q level"),
			Node:     rapid.SampledFrom(append([]string{""}, h.nodes...)).Draw(t, "q node"),
			Contains: rapid.SampledFrom([]string{"", "a", "AB", " "}).Draw(t, "q contains"),
			Limit:    rapid.IntRange(0, 50).Draw(t, "q limit"),
		}
		if rapid.Bool().Draw(t, "q since") {
			q.Since = time.Unix(0, now).Add(-5 * time.Minute)
		}
		res, err := s.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		if want := reference(h.m.stored, q); !slices.Equal(indices(res), indices(want)) {
			t.Fatalf("store %d query %+v: %v, want %v", i, q, indices(res), indices(want))
		}
	}
}

func TestPropertyExactlyOnce(t *testing.T) {
	base := t.TempDir()
	rapid.Check(t, func(rt *rapid.T) {
		ret := config.Retention{
			MaxRecords: rapid.SampledFrom([]int{0, 5, 17, 40}).Draw(rt, "max_records"),
			MaxBytes:   config.Size(rapid.SampledFrom([]int64{0, 300, 1500, 6000}).Draw(rt, "max_bytes")),
			MaxAge:     config.Duration(time.Duration(rapid.SampledFrom([]int{0, 3, 10}).Draw(rt, "max_age min")) * time.Minute),
		}
		maxKeys := rapid.IntRange(1, 6).Draw(rt, "max_keys")
		h := &harness{
			tb:   t,
			base: base,
			ret:  ret,
			opts: []Option{WithSegmentSize(minSegmentSize), WithKeyWindow(5*time.Minute, maxKeys)},
			m: &model{ret: ret, window: 5 * time.Minute, maxKeys: maxKeys, next: 1,
				nodeSeq: map[string]uint64{}, keys: map[string]keyRec{}},
			now:     t0,
			nodes:   []string{"n1", "n2", "n3"},
			nextSeq: map[string]uint64{},
			made:    map[string]Record{},
			busy:    map[string]bool{},
		}
		h.stores = []*Store{h.open(rt)}
		rt.Cleanup(func() {
			if h.snap != nil {
				h.snap.Release()
			}
		})
		rt.Repeat(map[string]func(*rapid.T){
			"send":           h.send,
			"retry":          h.retry,
			"late duplicate": h.lateDuplicate,
			"tick":           h.tick,
			"snapshot":       h.snapshot,
			"restore":        h.restore,
			"":               h.check,
		})
		// Every agent eventually gets its acknowledgement.
		for len(h.waiting) > 0 {
			h.retry(rt)
		}
		h.check(rt)
		// Every record produced is committed exactly once: retained or evicted, never both.
		for i, s := range h.stores {
			st, err := s.Stats()
			if err != nil {
				rt.Fatal(err)
			}
			var committed uint64
			for _, n := range st.Committed {
				committed += n
			}
			if committed != uint64(len(h.made)) {
				rt.Fatalf("store %d committed %d records, %d were produced", i, committed, len(h.made))
			}
		}
	})
}
