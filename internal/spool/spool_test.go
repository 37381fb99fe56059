package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a spool directory with a captured log and a metric reader.
type env struct {
	t      *testing.T
	dir    string
	logs   *syncBuffer
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir(), logs: &syncBuffer{}, reader: sdkmetric.NewManualReader()}
	e.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	t.Cleanup(func() { _ = e.mp.Shutdown(context.Background()) })
	return e
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (e *env) open(maxBytes int64) *Spool {
	e.t.Helper()
	s, err := Open(e.dir, maxBytes, e.logger(), e.mp.Meter("test"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

// dropped returns picket_logs_dropped_total for a reason.
func (e *env) dropped(reason string) int64 {
	return e.metric("picket_logs_dropped", reason)
}

func (e *env) spooled() int64 { return e.metric("picket_logs_spooled", "") }

func (e *env) metric(name, reason string) int64 {
	e.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		e.t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			}
			for _, p := range points {
				if v, _ := p.Attributes.Value(attribute.Key("reason")); v.AsString() == reason {
					return p.Value
				}
			}
		}
	}
	return 0
}

func item(i int) []byte { return fmt.Appendf(nil, `{"seq":%d,"message":"record number %d"}`, i, i) }

func items(from, to int) [][]byte {
	var out [][]byte
	for i := from; i <= to; i++ {
		out = append(out, item(i))
	}
	return out
}

func mustAppend(t *testing.T, s *Spool, its ...[]byte) {
	t.Helper()
	if err := s.Append(its...); err != nil {
		t.Fatal(err)
	}
}

// drain peeks and acks everything, in batches of n.
func drain(t *testing.T, s *Spool, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		got, tok, err := s.Peek(n, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return out
		}
		out = append(out, got...)
		if err := s.Ack(tok); err != nil {
			t.Fatal(err)
		}
	}
}

func equalItems(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d items, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("item %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestOrderPeekAck(t *testing.T) {
	e := newEnv(t)
	s := e.open(64 << 10) // 8 KiB segments: the items span several
	mustAppend(t, s, items(1, 1)...)
	mustAppend(t, s, items(2, 600)...)
	if s.Len() != 600 || e.spooled() != 600 {
		t.Fatalf("Len=%d gauge=%d, want 600", s.Len(), e.spooled())
	}
	var size int64
	for _, it := range items(1, 600) {
		size += frameHeader + int64(len(it))
	}
	if s.Bytes() != size {
		t.Fatalf("Bytes=%d, want %d", s.Bytes(), size)
	}
	if n := len(segments(t, e.dir)); n < 3 {
		t.Fatalf("%d segments, the test wants several", n)
	}
	got, _, err := s.Peek(10, 0)
	if err != nil {
		t.Fatal(err)
	}
	equalItems(t, got, items(1, 10))
	got, tok, err := s.Peek(10, 0) // again without Ack: the same items
	if err != nil {
		t.Fatal(err)
	}
	equalItems(t, got, items(1, 10))
	mustAppend(t, s, item(601))
	if err := s.Ack(tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(tok); err != nil { // twice is harmless
		t.Fatal(err)
	}
	if s.Len() != 591 {
		t.Fatalf("Len after Ack = %d", s.Len())
	}
	equalItems(t, drain(t, s, 37), items(11, 601))
	if s.Len() != 0 || s.Bytes() != 0 {
		t.Fatalf("after drain Len=%d Bytes=%d", s.Len(), s.Bytes())
	}
	if n := len(segments(t, e.dir)); n != 1 {
		t.Errorf("%d segment files after everything was acknowledged, want 1", n)
	}
	if got, tok, err := s.Peek(10, 0); err != nil || got != nil || s.Ack(tok) != nil {
		t.Fatalf("empty Peek = %v, %v", got, err)
	}
}

// TestDirty: appends and acknowledgements make the spool dirty until a Sync starts, so
// an idle shipper needs no sync timer.
func TestDirty(t *testing.T) {
	e := newEnv(t)
	s := e.open(64 << 10)
	mustSync := func() {
		t.Helper()
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	mustSync()
	if s.Dirty() {
		t.Fatal("dirty right after Sync")
	}
	mustAppend(t, s, items(1, 3)...)
	if !s.Dirty() {
		t.Fatal("not dirty after Append")
	}
	mustSync()
	if s.Dirty() {
		t.Fatal("dirty after Sync")
	}
	_, tok, err := s.Peek(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dirty() {
		t.Fatal("Peek made the spool dirty")
	}
	if err := s.Ack(tok); err != nil {
		t.Fatal(err)
	}
	if !s.Dirty() {
		t.Fatal("not dirty after Ack")
	}
	mustSync()
	if s.Dirty() {
		t.Fatal("dirty after the last Sync")
	}
}

func TestPeekByteLimit(t *testing.T) {
	e := newEnv(t)
	s := e.open(1 << 20)
	big := bytes.Repeat([]byte("x"), 500)
	mustAppend(t, s, big, item(1), item(2), item(3))
	cases := []struct {
		maxItems int
		maxBytes int64
		want     int
	}{
		{10, 100, 1}, // the first item alone is over the limit: still returned
		{10, 0, 4},
		{2, 0, 2},
		{10, 500 + int64(len(item(1))), 2},
		{0, 0, 0},
	}
	for _, c := range cases {
		got, _, err := s.Peek(c.maxItems, c.maxBytes)
		if err != nil || len(got) != c.want {
			t.Errorf("Peek(%d, %d) = %d items, %v; want %d", c.maxItems, c.maxBytes, len(got), err, c.want)
		}
	}
}

func TestRestartKeepsUnacked(t *testing.T) {
	e := newEnv(t)
	s := e.open(64 << 10)
	mustAppend(t, s, items(1, 200)...)
	got, tok, err := s.Peek(120, 0)
	if err != nil || len(got) != 120 {
		t.Fatal(len(got), err)
	}
	if err := s.Ack(tok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Peek(5, 0); err != nil { // peeked, not acked: must come back
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s2 := e.open(64 << 10)
	if s2.Len() != 80 {
		t.Fatalf("reopened Len = %d, want 80", s2.Len())
	}
	mustAppend(t, s2, items(201, 210)...)
	equalItems(t, drain(t, s2, 7), items(121, 210))
	if !strings.Contains(e.logs.String(), "spool reopened with items waiting") {
		t.Errorf("no log line about reopened items:\n%s", e.logs)
	}
	if e.dropped(ReasonCorrupt) != 0 {
		t.Errorf("clean restart counted corruption")
	}
}

func TestTornTail(t *testing.T) {
	last := len(item(9)) + frameHeader
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
		keep   int // items 1..keep survive
	}{
		{"cut in the payload", func(t *testing.T, p string, size int64) { truncate(t, p, size-3) }, 8},
		{"cut in the header", func(t *testing.T, p string, size int64) { truncate(t, p, size-int64(last)+5) }, 8},
		{"zeroed space after the data", func(t *testing.T, p string, size int64) { appendBytes(t, p, make([]byte, 4096)) }, 9},
		{"flipped byte in the last item", func(t *testing.T, p string, size int64) { flip(t, p, size-2) }, 8},
		{"garbage length", func(t *testing.T, p string, size int64) {
			appendBytes(t, p, []byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5})
		}, 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.open(1 << 20)
			mustAppend(t, s, items(1, 9)...)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			segs := segments(t, e.dir)
			st, err := os.Stat(segs[len(segs)-1])
			if err != nil {
				t.Fatal(err)
			}
			c.damage(t, segs[len(segs)-1], st.Size())

			s2 := e.open(1 << 20)
			if s2.Len() != c.keep {
				t.Fatalf("Len = %d, want %d", s2.Len(), c.keep)
			}
			mustAppend(t, s2, item(100))
			equalItems(t, drain(t, s2, 4), append(items(1, c.keep), item(100)))
			if got := e.dropped(ReasonCorrupt); got != 1 {
				t.Errorf("corrupt drops = %d, want 1", got)
			}
			if !strings.Contains(e.logs.String(), "spool segment damaged") {
				t.Errorf("damage not logged:\n%s", e.logs)
			}
			// The damage was cut away for good: the next start finds a clean spool.
			mustAppend(t, s2, item(101))
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			s3 := e.open(1 << 20)
			equalItems(t, drain(t, s3, 4), items(101, 101))
			if got := e.dropped(ReasonCorrupt); got != 1 {
				t.Errorf("corrupt drops after a clean restart = %d, want still 1", got)
			}
		})
	}
}

func truncate(t *testing.T, p string, n int64) {
	t.Helper()
	if err := os.Truncate(p, n); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, p string, at int64) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= 0x20
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedHeadFile(t *testing.T) {
	e := newEnv(t)
	s := e.open(1 << 20)
	mustAppend(t, s, items(1, 5)...)
	_, tok, _ := s.Peek(2, 0)
	if err := s.Ack(tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	flip(t, filepath.Join(e.dir, headFileName), 3)
	s2 := e.open(1 << 20)
	// At least once: without a trustworthy position everything is delivered again.
	equalItems(t, drain(t, s2, 10), items(1, 5))
	if !strings.Contains(e.logs.String(), "spool head position unreadable") {
		t.Errorf("damaged head not logged:\n%s", e.logs)
	}
}

func TestOverflowDropsOldest(t *testing.T) {
	e := newEnv(t)
	frame := int64(frameHeader + len(item(100)))
	max := 10 * frame
	s := e.open(max)
	for i := 100; i < 130; i++ {
		mustAppend(t, s, item(i))
		if s.Bytes() > max {
			t.Fatalf("Bytes %d over max %d", s.Bytes(), max)
		}
	}
	if got := e.dropped(ReasonFull); got != 20 {
		t.Errorf("spool_full drops = %d, want 20", got)
	}
	if s.Len() != 10 {
		t.Errorf("Len = %d, want 10", s.Len())
	}
	// A peeked batch whose items are dropped before the Ack: the Ack removes nothing new.
	got, tok, err := s.Peek(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	equalItems(t, got, items(120, 122))
	mustAppend(t, s, items(130, 134)...) // drops 120..124
	if err := s.Ack(tok); err != nil {
		t.Fatal(err)
	}
	// One call bigger than the spool keeps its newest items.
	mustAppend(t, s, items(135, 150)...)
	equalItems(t, drain(t, s, 4), items(141, 150))
	if got := e.dropped(ReasonFull); got != 20+5+16 {
		t.Errorf("spool_full drops = %d, want 41", got)
	}
	if n := strings.Count(e.logs.String(), "spool full"); n != 1 {
		t.Errorf("%d log lines about a full spool within the rate limit, want 1:\n%s", n, e.logs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close logs what the rate limit held back.
	if !strings.Contains(e.logs.String(), "dropped=40") {
		t.Errorf("held-back drops not logged at Close:\n%s", e.logs)
	}
}

func TestReopenSmallerDropsOldest(t *testing.T) {
	e := newEnv(t)
	s := e.open(1 << 20)
	mustAppend(t, s, items(100, 199)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := e.open(10 * int64(frameHeader+len(item(100))))
	equalItems(t, drain(t, s2, 100), items(190, 199))
	if got := e.dropped(ReasonFull); got != 90 {
		t.Errorf("spool_full drops = %d, want 90", got)
	}
}

func TestOversize(t *testing.T) {
	e := newEnv(t)
	s := e.open(1024)
	err := s.Append(item(1), make([]byte, 1024-frameHeader+1), item(2))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if e.dropped(ReasonOversize) != 1 {
		t.Errorf("oversize drops = %d", e.dropped(ReasonOversize))
	}
	if !strings.Contains(e.logs.String(), "larger than the whole spool") {
		t.Errorf("oversize not logged:\n%s", e.logs)
	}
	equalItems(t, drain(t, s, 10), items(1, 2))
	if err := s.Append(make([]byte, 1024-frameHeader)); err != nil {
		t.Errorf("an item exactly the spool size: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.TempDir(), 8, nil, nil); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("tiny max_bytes: %v", err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file, 1<<20, nil, nil); err == nil {
		t.Error("Open on a file succeeded")
	}
}

func TestClosed(t *testing.T) {
	e := newEnv(t)
	s := e.open(1 << 20)
	ch := s.Changed()
	mustAppend(t, s, item(1))
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by Append")
	}
	ch = s.Changed()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-ch
	if err := s.Append(item(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append: %v", err)
	}
	if _, _, err := s.Peek(1, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Peek: %v", err)
	}
	if err := s.Ack(Token{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack: %v", err)
	}
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync: %v", err)
	}
}

func TestTokenFromOtherSpool(t *testing.T) {
	a := newEnv(t).open(1 << 20)
	b := newEnv(t).open(1 << 20)
	mustAppend(t, a, item(1))
	_, tok, _ := a.Peek(1, 0)
	if err := b.Ack(tok); err == nil {
		t.Error("Ack accepted another spool's token")
	}
}

// TestOwnLogsFeedSpool: when the agent's own log lines go into the spool, a full spool
// must not log itself into a loop or a deadlock.
func TestOwnLogsFeedSpool(t *testing.T) {
	e := newEnv(t)
	var sp *Spool
	h := &appendHandler{spool: func() *Spool { return sp }}
	s, err := Open(e.dir, 2048, slog.New(h), e.mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	sp = s
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			_ = s.Append(item(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Append did not return: logging loop or deadlock")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if e.dropped(ReasonFull) == 0 {
		t.Error("no drops counted")
	}
}

type appendHandler struct{ spool func() *Spool }

func (h *appendHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *appendHandler) Handle(_ context.Context, r slog.Record) error {
	if s := h.spool(); s != nil {
		_ = s.Append([]byte(r.Message))
	}
	return nil
}
func (h *appendHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *appendHandler) WithGroup(string) slog.Handler      { return h }

func TestConcurrent(t *testing.T) {
	e := newEnv(t)
	s := e.open(64 << 20)
	const producers, each = 4, 500
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.Append(fmt.Appendf(nil, "%d:%d", p, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	syncDone := make(chan struct{})
	stopSync := make(chan struct{})
	go func() {
		defer close(syncDone)
		tick := time.NewTicker(time.Millisecond) // an agent would sync about every second
		defer tick.Stop()
		for {
			select {
			case <-stopSync:
				return
			case <-tick.C:
			}
			if err := s.Sync(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	next := make([]int, producers)
	deadline := time.Now().Add(20 * time.Second)
	for got := 0; got < producers*each; {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d items", got, producers*each)
		}
		its, tok, err := s.Peek(64, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(its) == 0 {
			select {
			case <-s.Changed():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for _, it := range its {
			var p, i int
			if _, err := fmt.Sscanf(string(it), "%d:%d", &p, &i); err != nil {
				t.Fatalf("bad item %q", it)
			}
			if i != next[p] {
				t.Fatalf("producer %d: got item %d, want %d (order or exactly-once broken)", p, i, next[p])
			}
			next[p]++
		}
		got += len(its)
		if err := s.Ack(tok); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(stopSync)
	<-syncDone
	if s.Len() != 0 || e.dropped(ReasonFull) != 0 {
		t.Errorf("Len=%d drops=%d", s.Len(), e.dropped(ReasonFull))
	}
}

func TestWriteErrorCountedAndUndone(t *testing.T) {
	e := newEnv(t)
	s := e.open(1 << 20)
	mustAppend(t, s, item(1))
	tail := s.segs[len(s.segs)-1]
	good := tail.f
	ro, err := os.Open(tail.path) // writes to it fail
	if err != nil {
		t.Fatal(err)
	}
	tail.f = ro
	err = s.Append(item(2), item(3))
	tail.f = good
	_ = ro.Close()
	if err == nil {
		t.Fatal("Append to a read-only segment succeeded")
	}
	if got := e.dropped(ReasonWriteError); got != 2 {
		t.Errorf("write_error drops = %d, want 2", got)
	}
	if !strings.Contains(e.logs.String(), "spool write failed") {
		t.Errorf("write failure not logged:\n%s", e.logs)
	}
	mustAppend(t, s, item(4))
	equalItems(t, drain(t, s, 10), [][]byte{item(1), item(4)})
}
