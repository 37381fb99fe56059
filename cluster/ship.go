package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/picket-dev/picket/internal/logstore"
	"github.com/picket-dev/picket/internal/spool"
)

// LogSink delivers log groups to the aggregator: Raft.AppendLogStream there. On a node
// that is the Raft leader it is the local *Raft; elsewhere it is an RPC client to the
// leader that returns the leader's errors so that errors.Is still works (ErrNotLeader,
// ErrNoLeader, ErrOutOfOrder, logstore.ErrInvalid). A Shipper calls it from several
// goroutines at once, up to maxShipInflight calls of one ordered stream (StreamPos), and
// retries the same records after any error other than logstore.ErrInvalid; an
// implementation must be safe for concurrent use.
type LogSink interface {
	AppendLogStream(ctx context.Context, node string, pos StreamPos, groups []LogGroup) (accepted []int, err error)
}

var _ LogSink = (*Raft)(nil)

// Shipper defaults.
const (
	DefaultNoLeaderWait  = 2 * time.Second
	DefaultMaxQueueBytes = 64 << 20
	// maxShipInflight is how many calls a Shipper has in flight at once. A few cover the
	// time a batch spends in replication and fsync, while more only lengthen the queue
	// (and the work thrown away after a failed call).
	maxShipInflight = 4
	// streamRetryAfter is how long a Shipper sends one unordered call at a time after
	// the aggregator refused ordered streams, before it tries them again.
	streamRetryAfter   = time.Minute
	shipAttemptTimeout = 10 * time.Second
	shipBackoffMin     = 50 * time.Millisecond
	shipBackoffMax     = time.Second
	shipLogEvery       = 30 * time.Second
	spoolSyncEvery     = time.Second
	seqFileName        = "seq"
	seqLease           = 1 << 20
)

// ShipperOptions configures NewShipper.
type ShipperOptions struct {
	// Node is this agent's node name: the node of its records. Required.
	Node string
	// Dir is the spool directory (data_dir/spool). It also holds the seq counter. Required.
	Dir string
	// SpoolMaxBytes bounds the spool (logs.spool.max_bytes). Required.
	SpoolMaxBytes int64
	// Sink delivers to the aggregator. Required.
	Sink LogSink
	// NoLeaderWait is how long Post waits while deliveries fail before it gives up with
	// ErrNoLeader. Default DefaultNoLeaderWait.
	NoLeaderWait time.Duration
	// MaxQueueBytes bounds the records of Post calls held in memory. Default
	// DefaultMaxQueueBytes.
	MaxQueueBytes int64
	Logger        *slog.Logger // nil discards
	Meter         metric.Meter // nil records nothing
}

// Shipper is an agent's one ordered, exactly-once pipeline of log records to the
// aggregator. Every record gets its per-node seq from one durable counter when it is
// queued: the agent's own records (Log) go to the durable spool, records posted to
// /v1/logs (Post) wait in memory with their Idempotency-Key. Run sends them in seq order,
// as few calls as possible (up to 1 MiB / 8192 records each), a few in flight at once in
// one ordered stream (see Run), and after a failure or a leader change sends the same
// seqs again; the aggregator drops what it already has, so each record is committed
// exactly once.
//
// The seq counter starts at least at the current time in microseconds and is persisted
// in leases, so seqs keep growing across restarts, and even when the data directory was
// lost (a node whose seqs restarted at 1 would have its records dropped as duplicates).
//
// All methods are safe for concurrent use. Run must be running for anything to be
// delivered; Close after Run has returned.
type Shipper struct {
	o     ShipperOptions
	log   *slog.Logger
	spool *spool.Spool

	mu         sync.Mutex // guards seq, queue and spool appends (seq order = queue order)
	seq        *seqCounter
	queue      []*shipPost
	queueBytes int64
	room       chan struct{} // closed when the queue shrinks
	failSince  time.Time     // zero while deliveries succeed
	lastErr    error
	stopped    bool // Run has ended: Post refuses
	closed     bool // Close was called: Log refuses too

	kick     chan struct{}
	running  atomic.Bool
	lastWarn time.Time // guarded by mu
	deferred deferredLogs

	shipErrors metric.Int64Counter
	dropped    metric.Int64Counter
	closeOnce  sync.Once
	closeErr   error

	// collectHook, when set (tests), runs in collect between taking the queue and
	// reading the spool: where a concurrent Post and Log can interleave.
	collectHook func()
}

// shipPost is one Post call's records.
type shipPost struct {
	key       string
	recs      []logstore.Record
	bytes     int64
	attempted bool // sent at least once: it stays queued until committed
	inflight  bool // in a call not yet returned: collect leaves it for the next batch
	done      chan shipResult
}

type shipResult struct {
	accepted int
	err      error
}

// NewShipper opens the spool and the seq counter in o.Dir.
func NewShipper(o ShipperOptions) (*Shipper, error) {
	switch {
	case o.Node == "":
		return nil, errors.New("shipper: node name is empty")
	case o.Dir == "":
		return nil, errors.New("shipper: spool directory is empty (data_dir/spool)")
	case o.Sink == nil:
		return nil, errors.New("shipper: no log sink")
	}
	if o.NoLeaderWait <= 0 {
		o.NoLeaderWait = DefaultNoLeaderWait
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Meter == nil {
		o.Meter = noop.NewMeterProvider().Meter("shipper")
	}
	s := &Shipper{o: o, log: o.Logger.With("component", "shipper"), room: make(chan struct{}), kick: make(chan struct{}, 1)}
	var err error
	if s.shipErrors, err = o.Meter.Int64Counter("picket_logs_ship_errors",
		metric.WithDescription("Failed deliveries of log records to the aggregator (retried)."),
	); err != nil {
		return nil, fmt.Errorf("shipper metrics: %w", err)
	}
	if s.dropped, err = o.Meter.Int64Counter("picket_logs_dropped",
		metric.WithDescription("Log records dropped before reaching the cluster log, by reason."),
	); err != nil {
		return nil, fmt.Errorf("shipper metrics: %w", err)
	}
	// The spool logs drops from inside Append, which Log calls with mu held; when the
	// agent feeds its warn+ lines back into Log, logging them there would deadlock.
	spoolLog := slog.New(deferHandler{next: o.Logger.Handler(), d: &s.deferred})
	s.spool, err = spool.Open(o.Dir, o.SpoolMaxBytes, spoolLog, o.Meter)
	if err != nil {
		return nil, fmt.Errorf("open log spool: %w", err)
	}
	s.seq, err = openSeqCounter(o.Dir, time.Now(), s.log)
	if err != nil {
		return nil, errors.Join(err, s.spool.Close())
	}
	return s, nil
}

// Close closes the spool; records not delivered stay in it for the next start. Call it
// after Run has returned. Idempotent.
func (s *Shipper) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.stopped, s.closed = true, true
		s.mu.Unlock()
		s.closeErr = s.spool.Close()
	})
	return s.closeErr
}

// Kick makes Run try again now (call it when a new leader is known).
func (s *Shipper) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Shipper) count(reason string, n int) {
	s.dropped.Add(context.Background(), int64(n), metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason))))
}

// prepare canonicalises records for this node and checks them as the store would.
func (s *Shipper) prepare(recs []logstore.Record, key string, now time.Time) (int64, error) {
	var size int64
	for i := range recs {
		r := &recs[i]
		r.Node = s.o.Node
		r.Index = 0
		r.Seq = 1 // placeholder for Validate; the real seq is assigned when queued
		if r.Time.IsZero() {
			r.Time = now
		}
		lv, err := logstore.NormalizeLevel(r.Level)
		if err != nil {
			return 0, fmt.Errorf("%w: record %d: %v", logstore.ErrInvalid, i, err)
		}
		r.Level = lv
		size += int64(recordEncodedSize(r))
	}
	if key != "" {
		key = s.o.Node + "/" + key
	}
	if err := (logstore.Batch{Records: recs, IdempotencyKey: key, Now: now}).Validate(); err != nil {
		return 0, err
	}
	if size > MaxLogGroupBytes {
		return 0, fmt.Errorf("%w: %d records are about %d bytes encoded, the limit per request is %d; send fewer records per request",
			logstore.ErrInvalid, len(recs), size, MaxLogGroupBytes)
	}
	return size, nil
}

// Log queues one of this agent's own records (its warn+ log lines, membership and check
// events) in the durable spool. It does not wait for delivery, and works before Run
// starts and after it ends (the records wait in the spool), until Close. When the spool is full
// the oldest records are dropped (counted and logged by the spool). An invalid record
// is dropped, counted as reason "invalid" and returned as an error.
func (s *Shipper) Log(r logstore.Record) error {
	recs := []logstore.Record{r}
	if _, err := s.prepare(recs, "", time.Now()); err != nil {
		s.count("invalid", 1)
		return fmt.Errorf("log record not spooled: %w", err)
	}
	s.mu.Lock()
	s.deferred.hold()
	err := s.logLocked(recs[0])
	pending := s.deferred.release()
	s.mu.Unlock()
	pending.emit()
	s.Kick()
	return err
}

func (s *Shipper) logLocked(r logstore.Record) error {
	if s.closed {
		return spool.ErrClosed
	}
	seq, err := s.seq.take()
	if err != nil {
		s.count(spool.ReasonWriteError, 1)
		return err
	}
	r.Seq = seq
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode log record: %w", err)
	}
	return s.spool.Append(data) // drops are counted and logged by the spool
}

// Post queues records posted to /v1/logs on this agent and waits until they are
// committed by a Raft majority; it returns how many were accepted (for a key already
// committed, the first commit's count). The records get this node's name and the
// next seqs. Errors: logstore.ErrInvalid (a bad record, too large a request; nothing
// queued); ErrNoLeader when deliveries have been failing for NoLeaderWait (retry later,
// with the same Idempotency-Key); ctx's error. After ErrNoLeader or a ctx error the
// records may still be committed if they had been sent: a retry with the same key is
// then a no-op, one without a key may duplicate them.
func (s *Shipper) Post(ctx context.Context, key string, recs []logstore.Record) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	recs = slices.Clone(recs)
	size, err := s.prepare(recs, key, time.Now())
	if err != nil {
		return 0, err
	}
	p := &shipPost{key: key, recs: recs, bytes: size, done: make(chan shipResult, 1)}
	if err := s.enqueue(ctx, p); err != nil {
		return 0, err
	}
	s.Kick()
	t := time.NewTimer(s.o.NoLeaderWait)
	defer t.Stop()
	for {
		select {
		case res := <-p.done:
			return res.accepted, res.err
		case <-ctx.Done():
			if res, ok := s.abandon(p); ok {
				return res.accepted, res.err
			}
			return 0, fmt.Errorf("waiting for the aggregator to commit: %w", ctx.Err())
		case <-t.C:
			s.mu.Lock()
			failing, lastErr := !s.failSince.IsZero(), s.lastErr
			s.mu.Unlock()
			if !failing {
				t.Reset(s.o.NoLeaderWait) // delivering, just busy
				continue
			}
			if res, ok := s.abandon(p); ok {
				return res.accepted, res.err
			}
			return 0, noLeaderError(lastErr)
		}
	}
}

func noLeaderError(last error) error {
	if last == nil || errors.Is(last, ErrNoLeader) {
		return fmt.Errorf("%w (last error: %v)", ErrNoLeader, last)
	}
	return fmt.Errorf("%w: %v", ErrNoLeader, last)
}

// enqueue assigns seqs and queues p, waiting for room while deliveries succeed.
func (s *Shipper) enqueue(ctx context.Context, p *shipPost) error {
	s.mu.Lock()
	for {
		if s.stopped {
			s.mu.Unlock()
			return fmt.Errorf("%w: the log shipper is stopped", ErrNoLeader)
		}
		if s.queueBytes == 0 || s.queueBytes+p.bytes <= s.o.MaxQueueBytes {
			break
		}
		if !s.failSince.IsZero() {
			err := noLeaderError(s.lastErr)
			s.mu.Unlock()
			return err
		}
		room := s.room
		s.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return fmt.Errorf("waiting for room in the log queue: %w", ctx.Err())
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	for i := range p.recs {
		seq, err := s.seq.take()
		if err != nil {
			return err
		}
		p.recs[i].Seq = seq
	}
	s.queue = append(s.queue, p)
	s.queueBytes += p.bytes
	return nil
}

// abandon is called when a Post caller stops waiting. It returns the result if one
// arrived meanwhile; otherwise a post never sent is removed (a gap in the seqs is
// fine), and one already sent stays queued until committed.
func (s *Shipper) abandon(p *shipPost) (shipResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case res := <-p.done:
		return res, true
	default:
	}
	if !p.attempted {
		s.removeLocked(func(q *shipPost) bool { return q == p })
	}
	return shipResult{}, false
}

// removeLocked drops the matching posts from the queue and signals room.
func (s *Shipper) removeLocked(match func(*shipPost) bool) {
	n := len(s.queue)
	s.queue = slices.DeleteFunc(s.queue, func(q *shipPost) bool {
		if match(q) {
			s.queueBytes -= q.bytes
			return true
		}
		return false
	})
	if len(s.queue) != n {
		close(s.room)
		s.room = make(chan struct{})
	}
}

// Run delivers queued records until ctx ends, then fails the posts still waiting.
// Records in the spool stay there for the next start. Run is called once.
//
// Up to maxShipInflight calls are in flight at once, as one ordered stream (StreamPos):
// waiting for each commit before sending the next would leave the aggregator idle for
// a whole replication and fsync round trip per batch. Their results are settled in
// order. After a failed call nothing more is sent until every call in flight has
// returned, and then from the oldest record not yet committed. Whenever no call is in
// flight the stream starts over (a new epoch, whose first call the aggregator applies
// unconditionally); within an epoch the aggregator applies a call only right after the
// one before it, so a later call is never committed while an earlier one is not, and a
// record is never dropped as a duplicate of a later one.
func (s *Shipper) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("shipper: Run called twice")
	}
	// Appends and acknowledgements are fsynced at most spoolSyncEvery later; an idle
	// spool arms no timer.
	syncT := time.NewTimer(spoolSyncEvery)
	defer syncT.Stop()
	syncArmed := true
	armSync := func() {
		if !syncArmed && s.spool.Dirty() {
			syncT.Reset(spoolSyncEvery)
			syncArmed = true
		}
	}
	syncSpool := func() {
		syncArmed = false
		if err := s.spool.Sync(); err != nil && !errors.Is(err, spool.ErrClosed) {
			s.log.Warn("log spool sync failed", "err", err)
		}
	}
	var (
		calls   sync.WaitGroup // every call in flight; Run waits for them before it returns
		flights []*shipFlight  // calls in flight, oldest first
		pos     StreamPos      // of the last call sent
		broken  bool           // a call failed: send nothing until flights is empty
		backoff time.Duration
		// Until then the aggregator is taken not to apply ordered streams (an older picket
		// in its Raft group): one unordered call at a time, as that picket sent them.
		serialUntil time.Time
	)
	for ctx.Err() == nil {
		if len(flights) == 0 {
			broken = false
			if backoff > 0 {
				t := time.NewTimer(backoff)
				select {
				case <-ctx.Done():
				case <-t.C:
				case <-s.kick:
				}
				t.Stop()
				if ctx.Err() != nil {
					continue
				}
			}
		}
		serial := time.Now().Before(serialUntil)
		limit := maxShipInflight
		if serial {
			limit = 1
		}
		var changed <-chan struct{} // the spool's, when collect found nothing more to send
		if !broken && len(flights) < limit && !holdSpool(flights) {
			changed = s.spool.Changed()
			b, err := s.collect()
			if err != nil {
				s.log.Error("reading the log spool failed; retrying", "err", err)
				broken, backoff = true, shipBackoffMax
				continue
			}
			switch {
			case !b.empty() && len(b.groups) == 0:
				// Only undecodable spool items: nothing to send, drop them now.
				s.settle(ctx, b, nil, nil)
				continue
			case !b.empty() && serial:
				flights = append(flights, s.launch(ctx, &calls, b, StreamPos{}))
				continue
			case !b.empty():
				if len(flights) == 0 {
					// A new epoch: above every one before, from the clock, so that the
					// aggregator can tell a stale call from an early one.
					pos = StreamPos{Epoch: max(pos.Epoch+1, uint64(max(time.Now().UnixNano(), 0)))}
				}
				pos.Pos++
				flights = append(flights, s.launch(ctx, &calls, b, pos))
				continue
			case len(flights) == 0:
				backoff = 0
				armSync()
				select {
				case <-ctx.Done():
				case <-s.kick:
				case <-changed:
				case <-syncT.C:
					syncSpool()
				}
				continue
			}
		}
		armSync()
		select {
		case res := <-flights[0].done:
			f := flights[0]
			flights[0] = nil
			flights = flights[1:]
			err := s.settle(ctx, f.b, res.accepted, res.err)
			switch {
			case errors.Is(err, ErrStreamUnsupported):
				broken = true // the calls in flight come back refused too
				if !serial {
					s.log.Info("the aggregator does not take ordered log streams (an older picket in its Raft group); sending one batch at a time",
						"for", streamRetryAfter)
				}
				serialUntil = time.Now().Add(streamRetryAfter)
			case err != nil:
				broken = true
				backoff = min(max(2*backoff, shipBackoffMin), shipBackoffMax)
			case !broken:
				backoff = 0
			}
		case <-ctx.Done():
		case <-s.kick:
		case <-changed:
		case <-syncT.C:
			syncSpool()
		}
	}
	// The calls in flight end with ctx; settle them in order, so that posts committed
	// meanwhile are answered as such.
	for _, f := range flights {
		res := <-f.done
		s.settle(ctx, f.b, res.accepted, res.err)
	}
	calls.Wait()
	s.mu.Lock()
	s.stopped = true
	for _, p := range s.queue {
		p.done <- shipResult{err: fmt.Errorf("%w: the agent is shutting down", ErrNoLeader)}
	}
	s.queue, s.queueBytes = nil, 0
	s.mu.Unlock()
	if err := s.spool.Sync(); err != nil && !errors.Is(err, spool.ErrClosed) {
		return fmt.Errorf("sync log spool: %w", err)
	}
	return nil
}

// shipFlight is one call to the sink in flight.
type shipFlight struct {
	b    *shipBatch
	done chan shipCallResult // buffered 1
}

type shipCallResult struct {
	accepted []int
	err      error
}

// holdSpool reports whether a call in flight carries spool items. Spool items are
// acknowledged from the head of the spool in order, so a batch with spool items is
// only collected when no other one is in flight (they are rare: the agent's own records).
func holdSpool(flights []*shipFlight) bool {
	for _, f := range flights {
		if f.b.spoolRecs > 0 || f.b.corrupt > 0 {
			return true
		}
	}
	return false
}

// launch sends b as the call at pos on a goroutine that calls tracks.
func (s *Shipper) launch(ctx context.Context, calls *sync.WaitGroup, b *shipBatch, pos StreamPos) *shipFlight {
	f := &shipFlight{b: b, done: make(chan shipCallResult, 1)}
	calls.Go(func() {
		actx, cancel := context.WithTimeout(ctx, shipAttemptTimeout)
		defer cancel()
		accepted, err := s.o.Sink.AppendLogStream(actx, s.o.Node, pos, b.groups)
		if err == nil && len(accepted) != len(b.groups) {
			err = fmt.Errorf("aggregator answered %d counts for %d log groups", len(accepted), len(b.groups))
		}
		f.done <- shipCallResult{accepted: accepted, err: err}
	})
	return f
}

// shipBatch is what one call to the sink carries: a prefix of the merged seq order.
type shipBatch struct {
	groups    []LogGroup
	owners    [][]*shipPost // posts of each group (nil for spool records)
	posts     []*shipPost
	spoolTok  spool.Token
	spoolRecs int // spool items taken, undecodable ones included
	corrupt   int // undecodable spool items skipped (acknowledged with the batch)
}

func (b *shipBatch) empty() bool { return len(b.groups) == 0 && b.spoolRecs == 0 && b.corrupt == 0 }

// collect takes the longest prefix, in seq order, of the spool and the post queue that
// fits the batch limits. Every seq up to cut (the last seq handed out when collect
// started) is in one of the two, or was abandoned; spool items above cut are left for
// the next batch, because posts with lower seqs may have been queued after the snapshot.
func (s *Shipper) collect() (*shipBatch, error) {
	s.mu.Lock()
	cut := s.seq.last()
	posts := make([]*shipPost, 0, len(s.queue))
	for _, p := range s.queue {
		if !p.inflight {
			posts = append(posts, p)
		}
	}
	s.mu.Unlock()
	if s.collectHook != nil {
		s.collectHook()
	}

	items, tok, err := s.spool.Peek(maxBatchRecords, maxBatchBytes)
	if err != nil {
		return nil, err
	}
	recs := make([]logstore.Record, 0, len(items))
	corrupt := make([]bool, len(items))
	for i, it := range items {
		var r logstore.Record
		if err := json.Unmarshal(it, &r); err != nil || r.Seq == 0 {
			corrupt[i] = true
			recs = append(recs, logstore.Record{})
			continue
		}
		recs = append(recs, r)
	}

	b := &shipBatch{}
	var size, records int
	full := func(n, more int) bool {
		return records > 0 && (records+n > maxBatchRecords || size+more > maxBatchBytes)
	}
	// Spool records and posts without a key share groups ("runs"); a post with a key
	// is a group of its own, since the key applies to the whole group.
	open := -1
	addToRun := func(rs []logstore.Record, p *shipPost) {
		if open < 0 {
			b.groups = append(b.groups, LogGroup{})
			b.owners = append(b.owners, nil)
			open = len(b.groups) - 1
		}
		b.groups[open].Records = append(b.groups[open].Records, rs...)
		if p != nil {
			b.owners[open] = append(b.owners[open], p)
		}
	}
	si, pi := 0, 0
	for {
		for si < len(items) && corrupt[si] {
			b.corrupt++ // acknowledged with the batch
			si++
		}
		spoolNext := si < len(items) && recs[si].Seq <= cut
		postNext := pi < len(posts)
		if !spoolNext && !postNext {
			break
		}
		if spoolNext && (!postNext || recs[si].Seq < posts[pi].recs[0].Seq) {
			n := recordEncodedSize(&recs[si])
			if full(1, n) {
				break
			}
			addToRun(recs[si:si+1], nil)
			records++
			size += n
			si++
			continue
		}
		p := posts[pi]
		if full(len(p.recs), int(p.bytes)) {
			break
		}
		if p.key == "" {
			addToRun(p.recs, p)
		} else {
			b.groups = append(b.groups, LogGroup{Key: p.key, Records: p.recs})
			b.owners = append(b.owners, []*shipPost{p})
			open = -1
		}
		b.posts = append(b.posts, p)
		records += len(p.recs)
		size += int(p.bytes)
		pi++
	}
	b.spoolRecs = si
	if si == len(items) {
		b.spoolTok = tok
	} else if si > 0 {
		// Acknowledge exactly the items taken: peek them again (only this goroutine
		// consumes the spool; a drop at the head meanwhile shows as different items).
		again, tok2, err := s.spool.Peek(si, 0)
		if err != nil {
			return nil, err
		}
		if len(again) != si || !bytes.Equal(again[0], items[0]) || !bytes.Equal(again[si-1], items[si-1]) {
			return s.collect()
		}
		b.spoolTok = tok2
	}
	s.mu.Lock()
	for _, p := range b.posts {
		p.attempted, p.inflight = true, true
	}
	s.mu.Unlock()
	return b, nil
}

// settle answers what a call of b returned (accepted and err; both nil for a batch
// that needed no call). It returns err unless the batch was settled for good: committed,
// or dropped because the aggregator refused it as invalid.
func (s *Shipper) settle(ctx context.Context, b *shipBatch, accepted []int, err error) error {
	invalid := errors.Is(err, logstore.ErrInvalid)
	if err != nil && !invalid {
		s.shipErrors.Add(context.Background(), 1)
		s.mu.Lock()
		for _, p := range b.posts {
			p.inflight = false // stays queued (attempted) and is sent again
		}
		now := time.Now()
		if s.failSince.IsZero() {
			s.failSince = now
		}
		s.lastErr = err
		// A call refused only because the one before it failed says nothing new, and a
		// refused stream is logged by Run.
		warn := now.Sub(s.lastWarn) >= shipLogEvery && !errors.Is(err, ErrOutOfOrder) && !errors.Is(err, ErrStreamUnsupported)
		if warn {
			s.lastWarn = now
		}
		queued := len(s.queue)
		s.mu.Unlock()
		if warn && ctx.Err() == nil {
			s.log.Warn("log records not delivered to the aggregator yet; retrying (they stay spooled)",
				"err", err, "spooled", s.spool.Len(), "queued_posts", queued)
		}
		return err
	}
	if invalid {
		// Only version skew can get here (records are checked when queued): drop the
		// batch rather than retry it forever.
		n := b.spoolRecs
		for _, g := range b.groups {
			n += len(g.Records)
		}
		s.count("invalid", n)
		s.log.Error("the aggregator refused a log batch; dropped", "records", n, "err", err)
	}
	if b.corrupt > 0 {
		s.count(spool.ReasonCorrupt, b.corrupt)
		s.log.Warn("undecodable log records in the spool dropped", "records", b.corrupt)
	}
	if b.spoolRecs > 0 || b.corrupt > 0 {
		if aerr := s.spool.Ack(b.spoolTok); aerr != nil {
			s.log.Warn("log spool acknowledgement failed; records may be sent again (they are deduplicated)", "err", aerr)
		}
	}
	sent := map[*shipPost]bool{}
	for gi, owners := range b.owners {
		for _, p := range owners {
			sent[p] = true
			res := shipResult{accepted: len(p.recs)}
			switch {
			case err != nil:
				res = shipResult{err: err}
			case p.key != "":
				res.accepted = accepted[gi]
			}
			p.done <- res
		}
	}
	s.mu.Lock()
	s.removeLocked(func(q *shipPost) bool { return sent[q] })
	recovered := !s.failSince.IsZero()
	since := s.failSince
	s.failSince, s.lastErr = time.Time{}, nil
	s.mu.Unlock()
	if recovered && err == nil {
		s.log.Info("log delivery to the aggregator resumed", "after", time.Since(since).Round(time.Millisecond))
	}
	if invalid {
		// Settled for good, but the calls after it in the stream are refused: start over.
		return err
	}
	return nil
}

// seqCounter hands out a node's record seqs. The value on disk is a lease: every seq
// handed out is below it, so after a restart the counter starts there (skipping what the
// last run did not use). It also starts no lower than the current time in
// microseconds. Not safe for concurrent use (the Shipper's mu guards it).
type seqCounter struct {
	path   string
	next   uint64
	leased uint64
}

func openSeqCounter(dir string, now time.Time, log *slog.Logger) (*seqCounter, error) {
	c := &seqCounter{path: filepath.Join(dir, seqFileName)}
	var stored uint64
	b, err := os.ReadFile(c.path)
	switch {
	case err == nil && len(b) == 12 && crc32.Checksum(b[:8], crc32.MakeTable(crc32.Castagnoli)) == binary.LittleEndian.Uint32(b[8:]):
		stored = binary.LittleEndian.Uint64(b)
	case err == nil:
		log.Warn("log seq counter file damaged; continuing from the clock", "path", c.path)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read log seq counter: %w", err)
	}
	c.next = max(stored, uint64(max(now.UnixMicro(), 0)), 1)
	if err := c.persist(c.next + seqLease); err != nil {
		return nil, err
	}
	return c, nil
}

// take returns the next seq, extending the lease on disk when needed.
func (c *seqCounter) take() (uint64, error) {
	if c.next >= c.leased {
		if err := c.persist(c.next + seqLease); err != nil {
			return 0, err
		}
	}
	v := c.next
	c.next++
	return v, nil
}

// last is the highest seq handed out (or below the first).
func (c *seqCounter) last() uint64 { return c.next - 1 }

func (c *seqCounter) persist(v uint64) error {
	b := binary.LittleEndian.AppendUint64(nil, v)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	tmp := c.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write log seq counter: %w", err)
	}
	_, err = f.Write(b)
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, c.path)
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(filepath.Dir(c.path)); err == nil {
			err = errors.Join(d.Sync(), d.Close())
		}
	}
	if err != nil {
		return fmt.Errorf("write log seq counter %s: %w (check the disk under data_dir)", c.path, err)
	}
	c.leased = v
	return nil
}

// deferredLogs holds log records made while the Shipper's lock is held, to be written
// once it is released. Safe for concurrent use.
type deferredLogs struct {
	mu      sync.Mutex
	held    bool
	pending pendingLogs
}

type pendingLogs []pendingLog

type pendingLog struct {
	h slog.Handler
	r slog.Record
}

func (d *deferredLogs) hold() {
	d.mu.Lock()
	d.held = true
	d.mu.Unlock()
}

// release stops deferring and returns what was deferred; emit it after unlocking.
func (d *deferredLogs) release() pendingLogs {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.held = false
	p := d.pending
	d.pending = nil
	return p
}

func (p pendingLogs) emit() {
	for _, l := range p {
		_ = l.h.Handle(context.Background(), l.r)
	}
}

// deferHandler passes records to next, or defers them while d is held.
type deferHandler struct {
	next slog.Handler
	d    *deferredLogs
}

func (h deferHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h deferHandler) Handle(ctx context.Context, r slog.Record) error {
	h.d.mu.Lock()
	if h.d.held {
		h.d.pending = append(h.d.pending, pendingLog{h: h.next, r: r.Clone()})
		h.d.mu.Unlock()
		return nil
	}
	h.d.mu.Unlock()
	return h.next.Handle(ctx, r)
}

func (h deferHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return deferHandler{next: h.next.WithAttrs(as), d: h.d}
}

func (h deferHandler) WithGroup(name string) slog.Handler {
	return deferHandler{next: h.next.WithGroup(name), d: h.d}
}
