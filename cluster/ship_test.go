package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/logstore"
)

// startShipper runs a Shipper until the returned stop is called (also at cleanup).
func startShipper(t *testing.T, o ShipperOptions) (*Shipper, func()) {
	t.Helper()
	if o.SpoolMaxBytes == 0 {
		o.SpoolMaxBytes = 1 << 20
	}
	s, err := NewShipper(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("shipper Run: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("shipper Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func ownRecord(i int) logstore.Record {
	return logstore.Record{Level: "warn", Message: fmt.Sprintf("own %d", i), Attrs: map[string]string{"i": fmt.Sprint(i)}}
}

func TestSeqCounter(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	c, err := openSeqCounter(dir, now, raftDiscard())
	if err != nil {
		t.Fatal(err)
	}
	first, _ := c.take()
	if first < uint64(now.UnixMicro()) {
		t.Errorf("first seq %d below the clock %d", first, now.UnixMicro())
	}
	var last uint64
	for range seqLease + 10 { // crosses a lease
		v, err := c.take()
		if err != nil || v <= last && last != 0 {
			t.Fatalf("take: %d after %d, %v", v, last, err)
		}
		last = v
	}
	// A restart with the clock behind continues above everything handed out.
	c2, err := openSeqCounter(dir, now.Add(-time.Hour), raftDiscard())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c2.take(); v <= last {
		t.Errorf("after restart seq %d, not above %d", v, last)
	}
	// A damaged counter falls back to the clock.
	if err := os.WriteFile(filepath.Join(dir, seqFileName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	c3, err := openSeqCounter(dir, later, raftDiscard())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c3.take(); v < uint64(later.UnixMicro()) {
		t.Errorf("damaged counter: seq %d below the clock", v)
	}
}

// singleLeader starts a one-voter cluster and returns its leader.
func singleLeader(t *testing.T) *raftTestNode {
	t.Helper()
	c := newRaftTestCluster(t, 1, true)
	c.start(1)
	return c.waitLeader(10 * time.Second)
}

func TestShipperOrderAndExactlyOnce(t *testing.T) {
	l := singleLeader(t)
	s, _ := startShipper(t, ShipperOptions{Node: "a1", Dir: t.TempDir(), Sink: l.r})
	ctx := context.Background()
	var wg sync.WaitGroup
	var posted atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				if g%2 == 0 {
					if err := s.Log(ownRecord(g*1000 + i)); err != nil {
						t.Error(err)
					}
					continue
				}
				recs := []logstore.Record{{Level: "info", Message: "p"}, {Level: "ERROR", Message: "q"}}
				n, err := s.Post(ctx, "", recs)
				if err != nil || n != 2 {
					t.Errorf("post: %d, %v", n, err)
				}
				posted.Add(2)
			}
		})
	}
	wg.Wait()
	want := 4*25 + int(posted.Load())
	raftWaitFor(t, 10*time.Second, "every record", func() bool { return len(allRecords(t, l.r.Store())) == want })
	st, _ := l.r.Store().Stats()
	// Sent in seq order without a retry: nothing was dropped as out of order.
	if st.Duplicates != 0 {
		t.Errorf("%d records dropped as duplicates (sent out of seq order?)", st.Duplicates)
	}
	for _, seqs := range seqCount(allRecords(t, l.r.Store())) {
		for seq, k := range seqs {
			if k != 1 {
				t.Errorf("seq %d stored %d times", seq, k)
			}
		}
	}
	if s.spool.Len() != 0 {
		t.Errorf("%d records left in the spool", s.spool.Len())
	}
}

func TestShipperCollectRace(t *testing.T) {
	// A post queued and then an own record spooled while collect is between reading the
	// queue and reading the spool: the record (higher seq) must wait for the post.
	l := singleLeader(t)
	s, err := NewShipper(ShipperOptions{Node: "a1", Dir: t.TempDir(), SpoolMaxBytes: 1 << 20, Sink: l.r})
	if err != nil {
		t.Fatal(err)
	}
	p := &shipPost{recs: []logstore.Record{{Node: "a1", Level: "info", Message: "post", Time: fsmNow}}, bytes: 100, done: make(chan shipResult, 1)}
	var once sync.Once
	s.collectHook = func() {
		once.Do(func() {
			if err := s.enqueue(context.Background(), p); err != nil {
				t.Error(err)
			}
			if err := s.Log(ownRecord(1)); err != nil {
				t.Error(err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	s.Kick()
	select {
	case res := <-p.done:
		if res.err != nil {
			t.Fatal(res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("post not committed")
	}
	raftWaitFor(t, 10*time.Second, "both records", func() bool { return len(allRecords(t, l.r.Store())) == 2 })
	if st, _ := l.r.Store().Stats(); st.Duplicates != 0 {
		t.Errorf("%d records dropped as out of order", st.Duplicates)
	}
}

func TestShipperIdempotencyKeyAndValidation(t *testing.T) {
	l := singleLeader(t)
	s, _ := startShipper(t, ShipperOptions{Node: "a1", Dir: t.TempDir(), Sink: l.r})
	ctx := context.Background()
	recs := []logstore.Record{{Level: "info", Message: "1"}, {Level: "info", Message: "2"}, {Level: "info", Message: "3"}}
	if n, err := s.Post(ctx, "key-1", recs); err != nil || n != 3 {
		t.Fatalf("first post: %d, %v", n, err)
	}
	// A client retry: new seqs, same key; committed at most once, original count.
	if n, err := s.Post(ctx, "key-1", recs[:1]); err != nil || n != 3 {
		t.Errorf("retried post: %d, %v; want 3", n, err)
	}
	if got := len(allRecords(t, l.r.Store())); got != 3 {
		t.Errorf("%d records, want 3", got)
	}
	for _, tc := range []struct {
		name string
		key  string
		recs []logstore.Record
	}{
		{"bad level", "", []logstore.Record{{Level: "fatal", Message: "x"}}},
		{"huge record", "", []logstore.Record{{Level: "info", Message: string(make([]byte, logstore.MaxRecordBytes))}}},
		{"long key", string(make([]byte, logstore.MaxKeyBytes)), []logstore.Record{{Level: "info"}}},
	} {
		if _, err := s.Post(ctx, tc.key, tc.recs); !errors.Is(err, logstore.ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", tc.name, err)
		}
	}
	if err := s.Log(logstore.Record{Level: "nope"}); !errors.Is(err, logstore.ErrInvalid) {
		t.Errorf("invalid own record: %v", err)
	}
}

func TestShipperSpoolsWithoutLeaderThenDeliversOnce(t *testing.T) {
	c := newRaftTestCluster(t, 3, true)
	c.start(3)
	l := c.waitLeader(10 * time.Second)
	s, _ := startShipper(t, ShipperOptions{Node: "a1", Dir: t.TempDir(), Sink: leaderSink{c}, NoLeaderWait: 300 * time.Millisecond})
	ctx := context.Background()
	if n, err := s.Post(ctx, "", []logstore.Record{{Level: "info", Message: "before"}}); err != nil || n != 1 {
		t.Fatalf("post with a leader: %d, %v", n, err)
	}
	// Lose the quorum: no leader anywhere.
	var down []*raftTestNode
	for _, n := range c.running() {
		if n != l {
			c.kill(n)
			down = append(down, n)
		}
	}
	raftWaitFor(t, 5*time.Second, "the leader to step down", func() bool { return c.leader() == nil })
	for i := range 50 {
		if err := s.Log(ownRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	_, err := s.Post(ctx, "k", []logstore.Record{{Level: "info", Message: "during"}})
	if !errors.Is(err, ErrNoLeader) {
		t.Errorf("post without a leader: %v, want ErrNoLeader", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("post without a leader took %s to fail; want about NoLeaderWait", took)
	}
	raftHoldsFor(t, 300*time.Millisecond, "own records staying spooled", func() bool { return s.spool.Len() == 50 })

	// A leader appears again: the spooled records arrive exactly once.
	for _, n := range down {
		c.restart(n)
	}
	nl := c.waitLeader(10 * time.Second)
	s.Kick()
	raftWaitFor(t, 10*time.Second, "the spooled records", func() bool {
		recs, err := nl.r.QueryLogs(logstore.Query{Contains: "own", Limit: 100})
		return err == nil && len(recs) == 50
	})
	// The failed post was sent while no leader existed; it may have been committed
	// since (it stays queued once sent) — but never twice.
	if n, err := s.Post(ctx, "k", []logstore.Record{{Level: "info", Message: "during"}}); err != nil || n != 1 {
		t.Errorf("retried post: %d, %v", n, err)
	}
	recs := allRecords(t, nl.r.Store())
	during := 0
	for _, r := range recs {
		if r.Message == "during" {
			during++
		}
	}
	if during != 1 {
		t.Errorf("the retried post is stored %d times, want 1", during)
	}
	for _, seqs := range seqCount(recs) {
		for seq, k := range seqs {
			if k != 1 {
				t.Errorf("seq %d stored %d times", seq, k)
			}
		}
	}
}

// lossySink commits through the leader but loses the answers of the first calls (the
// connection broke after the commit).
type lossySink struct {
	to    LogSink
	lose  atomic.Int32 // answers still to lose
	calls atomic.Int32
}

func (s *lossySink) AppendLogStream(ctx context.Context, node string, pos StreamPos, groups []LogGroup) ([]int, error) {
	s.calls.Add(1)
	acc, err := s.to.AppendLogStream(ctx, node, pos, groups)
	if err != nil {
		return nil, err
	}
	if s.lose.Add(-1) >= 0 {
		return nil, errors.New("connection reset (test)")
	}
	return acc, nil
}

func TestShipperRestartResendsWithoutDuplicates(t *testing.T) {
	l := singleLeader(t)
	dir := t.TempDir()
	sink := &lossySink{to: l.r}
	sink.lose.Store(3)
	s, stop := startShipper(t, ShipperOptions{Node: "a1", Dir: dir, Sink: sink})
	for i := range 100 {
		if err := s.Log(ownRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	raftWaitFor(t, 10*time.Second, "delivery despite lost answers", func() bool { return s.spool.Len() == 0 })
	if sink.calls.Load() < 4 {
		t.Errorf("%d calls; the lost answers were not retried", sink.calls.Load())
	}

	// The agent stops after its records were committed but before it learnt so.
	sink.lose.Store(math.MaxInt32)
	for i := 100; i < 150; i++ {
		if err := s.Log(ownRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	raftWaitFor(t, 10*time.Second, "the commit of the second lot", func() bool { return len(allRecords(t, l.r.Store())) == 150 })
	stop()

	// Restarted, it sends the unacknowledged records again: no duplicates.
	s2, _ := startShipper(t, ShipperOptions{Node: "a1", Dir: dir, Sink: l.r})
	if s2.spool.Len() != 50 {
		t.Errorf("%d records spooled after restart, want the 50 unacknowledged", s2.spool.Len())
	}
	raftWaitFor(t, 10*time.Second, "resend after restart", func() bool { return s2.spool.Len() == 0 })
	if err := s2.Log(ownRecord(150)); err != nil {
		t.Fatal(err)
	}
	raftWaitFor(t, 10*time.Second, "a new record after restart", func() bool { return len(allRecords(t, l.r.Store())) == 151 })
	recs := allRecords(t, l.r.Store())
	for _, seqs := range seqCount(recs) {
		for seq, k := range seqs {
			if k != 1 {
				t.Errorf("seq %d stored %d times", seq, k)
			}
		}
	}
	if last := recs[len(recs)-1]; last.Message != "own 150" || last.Seq <= recs[len(recs)-2].Seq {
		t.Errorf("new record after restart: %+v (previous seq %d)", last, recs[len(recs)-2].Seq)
	}
	st, _ := l.r.Store().Stats()
	if st.Duplicates == 0 {
		t.Error("the resend was not deduplicated by the store (test did not exercise the retry)")
	}
}

func TestShipperPostAbandonedBeforeSending(t *testing.T) {
	// A sink that never answers: once maxShipInflight calls are in flight, posts queue
	// up; one whose caller gives up before it is sent is removed and never committed.
	block := make(chan struct{})
	defer close(block)
	sink := logSinkFunc(func(ctx context.Context, node string, groups []LogGroup) ([]int, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, fmt.Errorf("%w: test", ErrNoLeader)
	})
	s, _ := startShipper(t, ShipperOptions{Node: "a1", Dir: t.TempDir(), Sink: sink, NoLeaderWait: time.Hour})
	firstCtx, cancelFirst := context.WithCancel(context.Background())
	firstDone := make(chan error, maxShipInflight)
	for i := range maxShipInflight {
		go func() {
			_, err := s.Post(firstCtx, "", []logstore.Record{{Level: "info", Message: fmt.Sprint("first ", i)}})
			firstDone <- err
		}()
		raftWaitFor(t, 5*time.Second, "the first posts to be sent, one call each", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.queue) == i+1 && s.queue[i].attempted
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := s.Post(ctx, "", []logstore.Record{{Level: "info", Message: "second"}})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("abandoned post: %v", err)
	}
	s.mu.Lock()
	n := len(s.queue)
	s.mu.Unlock()
	if n != maxShipInflight {
		t.Errorf("%d posts queued; the unsent abandoned one should be gone, the %d sent ones kept", n, maxShipInflight)
	}
	cancelFirst()
	for range maxShipInflight {
		if err := <-firstDone; !errors.Is(err, context.Canceled) {
			t.Errorf("first post: %v", err)
		}
	}
}

type logSinkFunc func(ctx context.Context, node string, groups []LogGroup) ([]int, error)

func (f logSinkFunc) AppendLogStream(ctx context.Context, node string, _ StreamPos, groups []LogGroup) ([]int, error) {
	return f(ctx, node, groups)
}

// feedbackHandler sends warn+ records into a Shipper, as the agent's logger does.
type feedbackHandler struct {
	s     *atomic.Pointer[Shipper]
	seen  *atomic.Int64
	attrs []slog.Attr
}

func (h feedbackHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h feedbackHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return nil
	}
	h.seen.Add(1)
	if s := h.s.Load(); s != nil {
		_ = s.Log(logstore.Record{Level: "warn", Message: r.Message})
	}
	return nil
}

func (h feedbackHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(slices.Clone(h.attrs), as...)
	return h
}
func (h feedbackHandler) WithGroup(string) slog.Handler { return h }

func TestShipperOwnLogsFeedBackWithoutDeadlock(t *testing.T) {
	var ptr atomic.Pointer[Shipper]
	var seen atomic.Int64
	logger := slog.New(feedbackHandler{s: &ptr, seen: &seen})
	noLeader := logSinkFunc(func(context.Context, string, []LogGroup) ([]int, error) {
		return nil, fmt.Errorf("%w: test", ErrNoLeader)
	})
	s, _ := startShipper(t, ShipperOptions{Node: "a1", Dir: t.TempDir(), SpoolMaxBytes: 4 << 10, Sink: noLeader, Logger: logger})
	ptr.Store(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 { // overflows the 4 KiB spool: the spool logs drops at warn
			_ = s.Log(ownRecord(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log deadlocked when the spool's warnings fed back into it")
	}
	if seen.Load() == 0 {
		t.Error("no warning was logged (the test did not exercise the feedback)")
	}
	if s.spool.Bytes() > 4<<10 {
		t.Errorf("spool holds %d bytes, above its bound", s.spool.Bytes())
	}
}

// streamSink forwards calls to a sink after a delay, records their stream positions and
// how many were in flight at once, and can lose chosen calls on the way (the request
// never reaches the aggregator).
type streamSink struct {
	to    LogSink
	delay time.Duration
	lose  func(call int, pos StreamPos) bool // nil: lose none

	mu        sync.Mutex
	calls     int
	inflight  int
	maxFlight int
	positions []StreamPos
	errs      []error
}

func (s *streamSink) AppendLogStream(ctx context.Context, node string, pos StreamPos, groups []LogGroup) ([]int, error) {
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.inflight++
	s.maxFlight = max(s.maxFlight, s.inflight)
	s.positions = append(s.positions, pos)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.mu.Unlock()
	}()
	time.Sleep(s.delay)
	if s.lose != nil && s.lose(call, pos) {
		return nil, errors.New("connection reset before the request arrived (test)")
	}
	acc, err := s.to.AppendLogStream(ctx, node, pos, groups)
	if err != nil {
		s.mu.Lock()
		s.errs = append(s.errs, err)
		s.mu.Unlock()
	}
	return acc, err
}

// postConcurrently posts n records from each of posters goroutines, one record per post,
// and fails the test on any error.
func postConcurrently(t *testing.T, s *Shipper, posters, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range posters {
		wg.Go(func() {
			for i := range n {
				recs := []logstore.Record{{Level: "info", Message: fmt.Sprintf("p%d-%d", g, i)}}
				if acc, err := s.Post(context.Background(), fmt.Sprintf("key-%d-%d", g, i), recs); err != nil || acc != 1 {
					t.Errorf("post: %d, %v", acc, err)
				}
			}
		})
	}
	wg.Wait()
}

// checkExactlyOnce checks that store holds want records of node, each once, in
// increasing seq order.
func checkExactlyOnce(t *testing.T, store *logstore.Store, node string, want int) {
	t.Helper()
	var last uint64
	n := 0
	for _, r := range allRecords(t, store) {
		if r.Node != node {
			continue
		}
		if r.Seq <= last {
			t.Fatalf("seq %d stored after %d", r.Seq, last)
		}
		last = r.Seq
		n++
	}
	if n != want {
		t.Errorf("%d records of %s stored, want %d", n, node, want)
	}
}

func TestShipperPipelinesCallsInOneStream(t *testing.T) {
	l := singleLeader(t)
	sink := &streamSink{to: l.r, delay: 20 * time.Millisecond}
	s, _ := startShipper(t, ShipperOptions{Node: "a1", Dir: t.TempDir(), Sink: sink})
	postConcurrently(t, s, 32, 20)
	checkExactlyOnce(t, l.r.Store(), "a1", 32*20)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.maxFlight < 2 || sink.maxFlight > maxShipInflight {
		t.Errorf("at most %d calls in flight, want 2 to %d", sink.maxFlight, maxShipInflight)
	}
	if len(sink.errs) > 0 {
		t.Errorf("calls failed: %v", sink.errs)
	}
	// Each epoch (a new one starts whenever no call is in flight) numbers its calls 1, 2, ...
	byEpoch := map[uint64][]uint64{}
	var epochs []uint64
	for _, p := range sink.positions {
		if len(byEpoch[p.Epoch]) == 0 {
			if len(epochs) > 0 && p.Epoch <= epochs[len(epochs)-1] {
				t.Fatalf("epoch %d after %d", p.Epoch, epochs[len(epochs)-1])
			}
			epochs = append(epochs, p.Epoch)
		}
		byEpoch[p.Epoch] = append(byEpoch[p.Epoch], p.Pos)
	}
	for _, e := range epochs {
		ps := slices.Sorted(slices.Values(byEpoch[e]))
		for i, p := range ps {
			if p != uint64(i+1) {
				t.Fatalf("epoch %d has calls %v", e, ps)
			}
		}
	}
}

func TestShipperLostCallLosesNothing(t *testing.T) {
	// The third call never reaches the aggregator while the ones after it do: they must
	// not be committed before it (its records would then be dropped as duplicates of
	// theirs on the resend), and every record must end up committed once.
	l := singleLeader(t)
	sink := &streamSink{to: l.r, delay: 10 * time.Millisecond}
	sink.lose = func(call int, _ StreamPos) bool {
		if call != 3 {
			return false
		}
		// Lose it only once the call after it is on its way (not raftWaitFor: this is
		// not the test's goroutine).
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			sink.mu.Lock()
			n := sink.calls
			sink.mu.Unlock()
			if n >= 4 {
				return true
			}
		}
		t.Error("no fourth call while the third was in flight")
		return true
	}
	s, _ := startShipper(t, ShipperOptions{Node: "a1", Dir: t.TempDir(), Sink: sink})
	postConcurrently(t, s, 32, 10)
	checkExactlyOnce(t, l.r.Store(), "a1", 32*10)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	refused := 0
	for _, err := range sink.errs {
		if !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("unexpected error: %v", err)
		}
		refused++
	}
	if refused == 0 {
		t.Error("no call was refused as out of order: the test did not exercise the fence")
	}
	epochs := map[uint64]bool{}
	for _, p := range sink.positions {
		epochs[p.Epoch] = true
	}
	if len(epochs) < 2 {
		t.Errorf("the stream did not start over after the lost call: %v", sink.positions)
	}
}

func TestShipperFallsBackWithoutStreams(t *testing.T) {
	// A Raft group whose members gossip no Meta.LogStreams (an older picket among them):
	// ordered calls are refused before anything is applied, and the shipper goes on with
	// one unordered call at a time.
	c := newRaftTestCluster(t, 3, true)
	c.noStreams = true
	c.start(3)
	l := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	if _, err := l.r.AppendLogStream(ctx, "w", StreamPos{Epoch: 1, Pos: 1}, []LogGroup{{Records: testRecords("w", 1, 1)}}); !errors.Is(err, ErrStreamUnsupported) {
		t.Fatalf("ordered call: %v, want ErrStreamUnsupported", err)
	}
	if _, err := l.r.AppendLogs(ctx, "w", []LogGroup{{Records: testRecords("w", 1, 1)}}); err != nil {
		t.Fatalf("unordered call: %v", err)
	}

	sink := &streamSink{to: leaderSink{c}, delay: 5 * time.Millisecond}
	s, _ := startShipper(t, ShipperOptions{Node: "a1", Dir: t.TempDir(), Sink: sink})
	postConcurrently(t, s, 16, 10)
	checkExactlyOnce(t, l.r.Store(), "a1", 16*10)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.errs) == 0 || !errors.Is(sink.errs[0], ErrStreamUnsupported) {
		t.Fatalf("first errors %v, want ErrStreamUnsupported", sink.errs)
	}
	last := sink.positions[len(sink.positions)-1]
	if last != (StreamPos{}) || sink.maxFlight > maxShipInflight {
		t.Errorf("last call at %+v, at most %d in flight; want unordered calls", last, sink.maxFlight)
	}
	for _, err := range sink.errs {
		if !errors.Is(err, ErrStreamUnsupported) {
			t.Errorf("unexpected error: %v", err)
		}
	}
}
