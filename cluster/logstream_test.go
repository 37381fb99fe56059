package cluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/picket-dev/picket/internal/logstore"
)

func TestStreamTurnsOrderOvertakenCalls(t *testing.T) {
	var turns streamTurns
	const n = 8
	var mu sync.Mutex
	var order []uint64
	var wg sync.WaitGroup
	// The calls start in reverse order; they must take their turns 1, 2, ..., n.
	for pos := uint64(n); pos >= 1; pos-- {
		wg.Go(func() {
			p := StreamPos{Epoch: 7, Pos: pos}
			if err := turns.take(context.Background(), "a", p, 5*time.Second); err != nil {
				t.Errorf("take %d: %v", pos, err)
				return
			}
			mu.Lock()
			order = append(order, pos)
			mu.Unlock()
			turns.done("a", p, true)
		})
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	for i, pos := range order {
		if pos != uint64(i+1) {
			t.Fatalf("turns taken in order %v", order)
		}
	}
}

func TestStreamTurnsRefusals(t *testing.T) {
	ctx := context.Background()
	var turns streamTurns
	take := func(epoch, pos uint64, wait time.Duration) error {
		return turns.take(ctx, "a", StreamPos{Epoch: epoch, Pos: pos}, wait)
	}
	mustTake := func(epoch, pos uint64) {
		t.Helper()
		if err := take(epoch, pos, time.Second); err != nil {
			t.Fatalf("take %d/%d: %v", epoch, pos, err)
		}
		turns.done("a", StreamPos{Epoch: epoch, Pos: pos}, true)
	}
	mustTake(5, 1)
	mustTake(5, 2)
	for _, tc := range []struct {
		what       string
		epoch, pos uint64
	}{
		{"a call taken already", 5, 2},
		{"a call of an older epoch", 4, 3},
	} {
		if err := take(tc.epoch, tc.pos, time.Second); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("%s: %v, want ErrOutOfOrder", tc.what, err)
		}
	}
	// A predecessor that never comes: refused after the wait.
	start := time.Now()
	if err := take(5, 4, 50*time.Millisecond); !errors.Is(err, ErrOutOfOrder) || time.Since(start) < 50*time.Millisecond {
		t.Errorf("missing predecessor: %v after %s", err, time.Since(start))
	}
	// A call that failed before it was queued closes the stream at once.
	waiting := make(chan error, 1)
	go func() { waiting <- take(5, 4, 5*time.Second) }()
	if err := take(5, 3, time.Second); err != nil {
		t.Fatal(err)
	}
	turns.done("a", StreamPos{Epoch: 5, Pos: 3}, false)
	if err := <-waiting; !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("after a failed call: %v, want ErrOutOfOrder", err)
	}
	// fail of a call that had not got its turn closes it too.
	turns.fail("a", StreamPos{Epoch: 6, Pos: 2})
	if err := take(6, 3, time.Second); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("after fail: %v, want ErrOutOfOrder", err)
	}
	// Pos 1 always starts over; a newer epoch's call waits for its first one.
	go func() { waiting <- take(9, 2, 5*time.Second) }()
	time.Sleep(10 * time.Millisecond)
	mustTake(9, 1)
	if err := <-waiting; err != nil {
		t.Errorf("call 2 of a new epoch: %v", err)
	}
	turns.done("a", StreamPos{Epoch: 9, Pos: 2}, true)
	// Another node's stream is its own.
	if err := turns.take(ctx, "b", StreamPos{Epoch: 1, Pos: 1}, time.Second); err != nil {
		t.Error(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := turns.take(cctx, "a", StreamPos{Epoch: 9, Pos: 5}, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// fsmApplyCalls applies a log batch of calls as raft would.
func fsmApplyCalls(t *testing.T, f *fsm, index uint64, calls ...logCall) []groupResult {
	t.Helper()
	data, err := encodeLogCalls(nil, fsmNow, calls)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).([]groupResult)
	return res
}

func TestFSMStreamFence(t *testing.T) {
	f := newTestFSM(t)
	call := func(epoch, pos uint64, from, n int) logCall {
		return logCall{node: "a", stream: StreamPos{Epoch: epoch, Pos: pos}, groups: []LogGroup{
			{Records: testRecords("a", from, n)},
			{Key: "a/k" + string(rune('0'+from)), Records: nil},
		}}
	}
	index := uint64(0)
	apply := func(c logCall) error {
		index++
		res := fsmApplyCalls(t, f, index, c)
		if len(res) != len(c.groups) {
			t.Fatalf("%d results for %d groups", len(res), len(c.groups))
		}
		for _, r := range res[1:] {
			if (r.err == nil) != (res[0].err == nil) {
				t.Fatalf("groups of one call answered differently: %v", res)
			}
		}
		return res[0].err
	}
	steps := []struct {
		what string
		c    logCall
		ok   bool
	}{
		{"first call", call(10, 1, 1, 5), true},
		{"a call whose predecessor failed", call(10, 3, 11, 5), false},
		{"the next call", call(10, 2, 6, 5), true},
		{"the same call again", call(10, 2, 6, 5), false},
		{"a call of an older epoch", call(9, 3, 11, 5), false},
		{"a new epoch's first call, resending", call(11, 1, 6, 10), true},
		{"the old epoch's next call, late", call(10, 3, 11, 5), false},
		{"the new epoch's next call", call(11, 2, 16, 5), true},
	}
	for _, s := range steps {
		err := apply(s.c)
		if s.ok && err != nil || !s.ok && !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("%s: %v", s.what, err)
		}
	}
	// An unordered call applies regardless of the stream, and leaves it alone.
	index++
	if res := fsmApplyCalls(t, f, index, logCall{node: "a", groups: []LogGroup{{Records: testRecords("a", 21, 1)}}}); res[0].err != nil {
		t.Fatal(res[0].err)
	}
	if err := apply(call(11, 3, 22, 3)); err != nil {
		t.Fatalf("stream after an unordered call: %v", err)
	}
	// Records 1..24, each once: the refused calls stored nothing, and the resend of 6..10
	// found them there.
	recs := allRecords(t, f.store)
	if len(recs) != 24 {
		t.Fatalf("%d records stored, want 24", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
	}

	// The stream survives a snapshot.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink fsmMemSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := g.st.Streams["a"]; got != (StreamPos{Epoch: 11, Pos: 3}) {
		t.Errorf("restored stream at %+v", got)
	}
	index++
	res := fsmApplyCalls(t, g, index, call(11, 4, 25, 1))
	if res[0].err != nil {
		t.Errorf("next call after restore: %v", res[0].err)
	}
}

func TestLogCallsCodecRoundTrip(t *testing.T) {
	calls := []logCall{
		{node: "n1", stream: StreamPos{Epoch: 1 << 62, Pos: 3}, groups: []LogGroup{
			{Key: "n1/k", Records: testRecords("n1", 1, 2)},
			{Records: []logstore.Record{{Node: "n1", Seq: 9, Level: "warn", Message: "m", Attrs: map[string]string{"a": "b"}}}},
		}},
		{node: "n2", groups: []LogGroup{{Records: testRecords("n2", 5, 1)}}},
		{node: "n3", stream: StreamPos{Epoch: 1, Pos: 1}, groups: []LogGroup{}},
	}
	data, err := encodeLogCalls(nil, fsmNow, calls)
	if err != nil {
		t.Fatal(err)
	}
	if data[0] != cmdLogCalls {
		t.Fatalf("kind %d, want cmdLogCalls", data[0])
	}
	now, got, err := decodeLogCalls(data[1:])
	if err != nil {
		t.Fatal(err)
	}
	if !now.Equal(fsmNow) || !reflect.DeepEqual(got, calls) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, calls)
	}
	for i := range len(data) - 1 {
		if _, _, err := decodeLogCalls(data[1 : i+1]); !errors.Is(err, errBadCommand) {
			t.Fatalf("decode of %d/%d bytes: err %v, want errBadCommand", i, len(data)-1, err)
		}
	}
	// Without a stream position the batch is a plain cmdLogs, which voters of the previous
	// version apply.
	plain, err := encodeLogCalls(nil, fsmNow, []logCall{{node: "n1", groups: calls[0].groups}, {node: "n2", groups: calls[1].groups}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := encodeLogs(nil, fsmNow, append(append([]LogGroup{}, calls[0].groups...), calls[1].groups...))
	if !reflect.DeepEqual(plain, want) {
		t.Error("unordered calls not encoded as cmdLogs")
	}
}

func FuzzDecodeLogCalls(f *testing.F) {
	data, _ := encodeLogCalls(nil, fsmNow, []logCall{{node: "n1", stream: StreamPos{Epoch: 3, Pos: 2},
		groups: []LogGroup{{Key: "k", Records: testRecords("n1", 1, 3)}}}})
	f.Add(data[1:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		now, calls, err := decodeLogCalls(b)
		if err != nil {
			return
		}
		for i := range calls {
			if calls[i].stream == (StreamPos{}) {
				calls[i].stream.Pos = 1 // keep the cmdLogCalls form for the comparison
			}
		}
		again, err := encodeLogCalls(nil, now, calls)
		if err != nil {
			t.Fatalf("decoded calls do not encode: %v", err)
		}
		_, calls2, err := decodeLogCalls(again[1:])
		if err != nil || !reflect.DeepEqual(calls, calls2) {
			t.Fatalf("re-encoding changed the calls: %v", err)
		}
	})
}

func TestLogCallWireRoundTrip(t *testing.T) {
	groups := []LogGroup{{Key: "n1/k", Records: testRecords("n1", 1, 3)}, {Records: []logstore.Record{}}}
	pos := StreamPos{Epoch: 12345, Pos: 7}
	b, err := EncodeLogCall(nil, "n1", pos, groups)
	if err != nil {
		t.Fatal(err)
	}
	node, gotPos, got, err := DecodeLogCall(b)
	if err != nil || node != "n1" || gotPos != pos || !reflect.DeepEqual(got, groups) {
		t.Fatalf("round trip: %q %+v %+v, %v", node, gotPos, got, err)
	}
	for i := range len(b) - 1 {
		if _, _, _, err := DecodeLogCall(b[:i]); !errors.Is(err, logstore.ErrInvalid) {
			t.Fatalf("decode of %d/%d bytes: err %v, want ErrInvalid", i, len(b), err)
		}
	}
	if _, _, _, err := DecodeLogCall(append([]byte{2}, b[1:]...)); !errors.Is(err, logstore.ErrInvalid) {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := EncodeLogCall(nil, "n1", pos, []LogGroup{{Records: []logstore.Record{{Node: "n1", Seq: 1, Level: "INFO"}}}}); !errors.Is(err, logstore.ErrInvalid) {
		t.Errorf("non-canonical level: %v", err)
	}
}

func FuzzDecodeLogCall(f *testing.F) {
	b, _ := EncodeLogCall(nil, "n1", StreamPos{Epoch: 3, Pos: 2}, []LogGroup{{Key: "k", Records: testRecords("n1", 1, 3)}})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		node, pos, groups, err := DecodeLogCall(b)
		if err != nil {
			return
		}
		again, err := EncodeLogCall(nil, node, pos, groups)
		if err != nil {
			t.Fatalf("decoded call does not encode: %v", err)
		}
		node2, pos2, groups2, err := DecodeLogCall(again)
		if err != nil || node2 != node || pos2 != pos || !reflect.DeepEqual(groups, groups2) {
			t.Fatalf("re-encoding changed the call: %v", err)
		}
	})
}

func TestAppendLogStreamOrdersAndRefuses(t *testing.T) {
	l := singleLeader(t)
	ctx := context.Background()
	// Call 2 arrives before call 1: it waits for its turn, and both commit in order.
	second := make(chan error, 1)
	go func() {
		_, err := l.r.AppendLogStream(ctx, "w", StreamPos{Epoch: 1, Pos: 2}, []LogGroup{{Records: testRecords("w", 11, 10)}})
		second <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := l.r.AppendLogStream(ctx, "w", StreamPos{Epoch: 1, Pos: 1}, []LogGroup{{Records: testRecords("w", 1, 10)}}); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, l.r.Store(), "w", 20)
	// A call refused before it is proposed (invalid) takes the calls after it down at once.
	if _, err := l.r.AppendLogStream(ctx, "w", StreamPos{Epoch: 1, Pos: 3}, []LogGroup{{Records: []logstore.Record{{Node: "w", Seq: 0, Level: "info"}}}}); !errors.Is(err, logstore.ErrInvalid) {
		t.Fatalf("invalid call: %v", err)
	}
	start := time.Now()
	if _, err := l.r.AppendLogStream(ctx, "w", StreamPos{Epoch: 1, Pos: 4}, []LogGroup{{Records: testRecords("w", 21, 1)}}); !errors.Is(err, ErrOutOfOrder) || time.Since(start) > streamTurnWait/2 {
		t.Fatalf("call after the invalid one: %v after %s", err, time.Since(start))
	}
	if _, err := l.r.AppendLogStream(ctx, "w", StreamPos{Epoch: 1, Pos: 0}, nil); !errors.Is(err, logstore.ErrInvalid) {
		t.Errorf("pos 0 of an epoch: %v", err)
	}
	// The stream starts over with a new epoch.
	if _, err := l.r.AppendLogStream(ctx, "w", StreamPos{Epoch: 2, Pos: 1}, []LogGroup{{Records: testRecords("w", 21, 1)}}); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, l.r.Store(), "w", 21)
}
