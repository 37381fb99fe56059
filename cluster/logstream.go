package cluster

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// streamTurnWait bounds how long a call of an ordered stream waits on the leader for the
// call before it to be queued. The calls of one stream are sent at nearly the same time,
// so the wait is short unless the earlier call was lost on the way; then the later call
// is refused and its sender starts over.
const streamTurnWait = time.Second

// closedTurn is streamTurn.next of a stream that cannot go on: a call of it failed
// before it was queued.
const closedTurn = math.MaxUint64

// streamTurns puts the calls of each sender's ordered stream (StreamPos) into the
// leader's proposal queue in stream order. A sender has several calls in flight, on
// separate goroutines and RPC connections, and a later call may overtake an earlier one
// on the way; the FSM would refuse a call proposed before its predecessor, so a call
// waits here for its predecessor's turn instead, which saves a refused call and a
// restart of the stream.
//
// It is only an optimisation: the FSM's check (StreamPos.follows) is what keeps the
// records safe, and this state is the leader's memory alone, lost when leadership
// moves. Epochs are taken to grow (the Shipper takes them from its seq counter), so a
// call of a newer epoch than the stream's waits for its epoch's first call, and a call
// of an older one is refused at once.
//
// Safe for concurrent use.
type streamTurns struct {
	mu      sync.Mutex
	streams map[string]*streamTurn // by sending node
}

type streamTurn struct {
	epoch uint64
	next  uint64        // the Pos whose turn it is; closedTurn when the stream cannot go on
	moved chan struct{} // closed (and replaced) when epoch or next changes
}

func (st *streamTurn) wake() {
	close(st.moved)
	st.moved = make(chan struct{})
}

// stream returns node's stream, creating it. Caller holds mu.
func (t *streamTurns) stream(node string) *streamTurn {
	if t.streams == nil {
		t.streams = map[string]*streamTurn{}
	}
	st := t.streams[node]
	if st == nil {
		st = &streamTurn{moved: make(chan struct{})}
		t.streams[node] = st
	}
	return st
}

// take waits until it is p's turn in node's stream. A call with Pos 1 starts the stream
// over and never waits. It fails with an error wrapping ErrOutOfOrder when p can no
// longer get its turn (the stream moved past it or to a newer epoch, or a call before it
// failed) or has not got it within maxWait, and with ctx's error when ctx ends. After
// take succeeds the caller must call done once it has queued the call or given up.
func (t *streamTurns) take(ctx context.Context, node string, p StreamPos, maxWait time.Duration) error {
	t.mu.Lock()
	st := t.stream(node)
	if p.Pos == 1 {
		st.epoch, st.next = p.Epoch, 1
		st.wake()
		t.mu.Unlock()
		return nil
	}
	var timeout <-chan time.Time
	for {
		switch {
		case st.epoch == p.Epoch && st.next == p.Pos:
			t.mu.Unlock()
			return nil
		case st.epoch > p.Epoch, st.epoch == p.Epoch && st.next > p.Pos:
			epoch, next := st.epoch, st.next
			t.mu.Unlock()
			if next == closedTurn {
				return fmt.Errorf("%w: call %d of epoch %d from %s follows a call that failed", ErrOutOfOrder, p.Pos, p.Epoch, node)
			}
			return fmt.Errorf("%w: call %d of epoch %d from %s, but the stream is at call %d of epoch %d", ErrOutOfOrder, p.Pos, p.Epoch, node, next, epoch)
		}
		moved := st.moved
		t.mu.Unlock()
		if timeout == nil {
			tm := time.NewTimer(maxWait)
			defer tm.Stop()
			timeout = tm.C
		}
		select {
		case <-moved:
		case <-timeout:
			return fmt.Errorf("%w: call %d of epoch %d from %s: the call before it did not arrive within %s", ErrOutOfOrder, p.Pos, p.Epoch, node, maxWait)
		case <-ctx.Done():
			return ctx.Err()
		}
		t.mu.Lock()
	}
}

// done ends p's turn: the next call's turn comes when p was queued, and the stream is
// closed when it was not (the FSM would refuse every later call of the epoch anyway).
func (t *streamTurns) done(node string, p StreamPos, queued bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.stream(node)
	if st.epoch != p.Epoch || st.next != p.Pos {
		return // the stream started over meanwhile
	}
	st.next = p.Pos + 1
	if !queued {
		st.next = closedTurn
	}
	st.wake()
}

// fail closes p's epoch from p on when p fails before it could take its turn, so that
// the calls after it are refused at once rather than after streamTurnWait.
func (t *streamTurns) fail(node string, p StreamPos) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.stream(node)
	switch {
	case st.epoch < p.Epoch:
		st.epoch, st.next = p.Epoch, closedTurn
	case st.epoch == p.Epoch && st.next <= p.Pos:
		st.next = closedTurn
	default:
		return
	}
	st.wake()
}
