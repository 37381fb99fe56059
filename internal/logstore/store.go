// Package logstore is the cluster log store that picket's Raft FSM wraps: an
// exactly-once, retention-bounded log of records kept on disk by each voter.
//
// The store is deterministic: its state depends only on the sequence of Apply and
// Restore calls (and the retention settings), never on a wall clock, so every voter
// that applies the same Raft log holds the same records with the same indices.
// Time enters only through Batch.Now, the proposer's clock.
//
// Records live in append-only segment files under the store's directory; memory
// holds a 24-byte index entry per record (time, level, node, position), so filters
// on level, node and time scan memory and only matching records are read from disk.
//
// Durability is Raft's job, not the store's: Open always starts empty (it removes
// whatever an earlier process left in the directory), and the FSM rebuilds the state
// from the latest Raft snapshot (Restore) plus the Raft log after it (Apply). Segment
// writes are therefore never fsynced.
package logstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

// Defaults for the idempotency-key window.
const (
	DefaultKeyWindow = 24 * time.Hour
	DefaultMaxKeys   = 100_000
)

const (
	minSegmentSize = 4 << 10
	maxSegmentSize = 1 << 30 // frame offsets are uint32
)

// Option adjusts a Store at Open.
type Option func(*options)

type options struct {
	segmentSize int64
	keyWindow   time.Duration
	maxKeys     int
	logger      *slog.Logger
}

// WithSegmentSize sets the size at which a new segment file is started (default:
// max_bytes/16 clamped to 1..64 MiB, or 64 MiB without a byte bound). Disk use can
// exceed max_bytes by up to one segment, because segments are deleted whole.
func WithSegmentSize(n int64) Option { return func(o *options) { o.segmentSize = n } }

// WithKeyWindow sets how long (by Batch.Now) and how many idempotency keys are
// remembered; the oldest are forgotten first. Defaults: DefaultKeyWindow, DefaultMaxKeys.
func WithKeyWindow(window time.Duration, maxKeys int) Option {
	return func(o *options) { o.keyWindow, o.maxKeys = window, maxKeys }
}

// WithLogger sets where I/O problems that do not fail a call (a segment file that
// cannot be removed) are logged. Default: discarded.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Store is the cluster log store. All methods are safe for concurrent use. Apply and
// Restore are serialised; Query, Since, Stats and Snapshot run alongside each other
// and block Apply only for short, bounded steps.
type Store struct {
	root string
	ret  config.Retention
	opt  options

	mu      sync.RWMutex
	st      *state // nil once closed
	gen     int    // generation directory counter
	changed chan struct{}
	scratch applyScratch // Apply's reusable buffers, guarded by mu
}

type applyScratch struct {
	buf  []byte
	pend []pending
	seqs []nodeSeq
}

type pending struct {
	e     entry
	index uint64
	start int // offset of the frame in scratch.buf
}

type nodeSeq struct {
	node uint32
	seq  uint64
}

// state is everything a Restore replaces at once.
type state struct {
	dir     string
	segs    []*segment // oldest first; the last one takes new frames
	nextSeg uint32
	idx     entries
	next    uint64 // index the next stored record gets; the first is 1
	bytes   int64  // sum of retained frame sizes

	nodeIDs   map[string]uint32
	nodeNames []string // by node id
	nodeSeqs  []uint64 // by node id: highest seq ever accepted, kept after eviction

	keys     map[string]keyRec
	keyOrder []string // insertion order from keyHead on
	keyHead  int

	c counters
}

type keyRec struct {
	accepted int
	at       int64 // Batch.Now, unix nanos
}

// counters are replicated state: they travel in snapshots.
type counters struct {
	Committed  [numLevels]uint64 `json:"committed"`
	Duplicates uint64            `json:"duplicates"`
	Replays    uint64            `json:"replays"`
	EvRecords  uint64            `json:"evicted_records"`
	EvBytes    uint64            `json:"evicted_bytes"`
	EvAge      uint64            `json:"evicted_age"`
}

// Open creates the store in dir, starting empty: directories named "gen-*" that an
// earlier process left there are removed; anything else in dir is left alone.
// Zero fields of ret mean no bound of that kind.
func Open(dir string, ret config.Retention, opts ...Option) (*Store, error) {
	o := options{keyWindow: DefaultKeyWindow, maxKeys: DefaultMaxKeys}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.segmentSize <= 0 {
		o.segmentSize = 64 << 20
		if ret.MaxBytes > 0 {
			o.segmentSize = min(max(int64(ret.MaxBytes)/16, 1<<20), 64<<20)
		}
	}
	o.segmentSize = min(max(o.segmentSize, minSegmentSize), maxSegmentSize)
	if ret.MaxRecords < 0 || ret.MaxBytes < 0 || ret.MaxAge < 0 {
		return nil, fmt.Errorf("log retention %+v has a negative bound; use 0 for no bound", ret)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create log store directory: %w", err)
	}
	old, err := filepath.Glob(filepath.Join(dir, "gen-*"))
	if err != nil {
		return nil, fmt.Errorf("list log store directory %s: %w", dir, err)
	}
	for _, p := range old {
		if err := os.RemoveAll(p); err != nil {
			return nil, fmt.Errorf("clear old log store data (the store starts empty and is rebuilt from Raft): %w", err)
		}
	}
	s := &Store{root: dir, ret: ret, opt: o, changed: make(chan struct{})}
	st, err := s.newState()
	if err != nil {
		return nil, err
	}
	s.st = st
	return s, nil
}

// newState makes an empty state in a fresh generation directory.
func (s *Store) newState() (*state, error) {
	s.gen++
	dir := filepath.Join(s.root, fmt.Sprintf("gen-%d", s.gen))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create log store directory: %w", err)
	}
	return &state{
		dir:     dir,
		next:    1,
		nodeIDs: map[string]uint32{},
		keys:    map[string]keyRec{},
	}, nil
}

// Close releases the store's files and removes its data. Snapshots taken before
// stay readable until released. Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil
	}
	err := s.dropState(s.st)
	s.st = nil
	close(s.changed)
	return err
}

// dropState releases the store's references to a replaced or closed state.
func (s *Store) dropState(st *state) error {
	var errs []error
	for _, seg := range st.segs {
		errs = append(errs, seg.release())
	}
	st.segs = nil
	if err := os.Remove(st.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		// A snapshot may still hold a segment; Open clears the leftovers.
		s.opt.logger.Debug("log store directory not removed yet", "dir", st.dir, "error", err)
	}
	return errors.Join(errs...)
}

// Changed returns a channel that is closed at the next change that adds records
// (Apply or Restore) or at Close. Followers wait on it, then call Since.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

func (s *Store) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (st *state) first() uint64 { return st.next - uint64(st.idx.len()) }

func (st *state) nodeID(name string) (uint32, error) {
	if id, ok := st.nodeIDs[name]; ok {
		return id, nil
	}
	if len(st.nodeNames) >= maxNodes {
		return 0, fmt.Errorf("%w: more than %d distinct node names", ErrInvalid, maxNodes)
	}
	// The store keeps the name: a copy, not the caller's string, which may be a slice of
	// a much larger buffer (the FSM decodes a whole Raft entry into one string).
	name = strings.Clone(name)
	id := uint32(len(st.nodeNames))
	st.nodeIDs[name] = id
	st.nodeNames = append(st.nodeNames, name)
	st.nodeSeqs = append(st.nodeSeqs, 0)
	return id, nil
}

// Apply adds the batch's new records and then enforces retention. It returns how
// many records were new (not duplicates); for a batch whose idempotency key was seen
// within the key window it changes nothing and returns the first call's count.
//
// A record is a duplicate, and dropped, when its Seq is not above the highest Seq
// already accepted for its Node (even if that record has since been evicted): each
// node's records must be applied in increasing Seq order; gaps are fine.
// A new record already older than max_age (by Batch.Now) is counted as accepted and
// as evicted for age, without being stored.
//
// Retention is judged by Batch.Now even when the batch adds nothing, so a leader can
// propose an empty batch now and then to age records out of a quiet cluster.
//
// An invalid batch (see Batch.Validate) returns an error wrapping ErrInvalid and
// changes nothing. A disk error also changes nothing (partial writes are truncated).
func (s *Store) Apply(b Batch) (accepted int, err error) {
	a, err := s.ApplyBatch(b)
	return a.Accepted, err
}

// Applied is what ApplyBatch did with one batch.
type Applied struct {
	// Accepted is what Apply returns: the batch's new records, or for a replayed
	// idempotency key the first application's count.
	Accepted int
	// Replay is true when the batch was skipped for its idempotency key.
	Replay bool
	// New counts the records this call accepted, by level name (debug, info, warn,
	// error); levels without records are absent. Empty for a replay.
	New map[string]int
}

// ApplyBatch is Apply that also says what the batch added, by level.
func (s *Store) ApplyBatch(b Batch) (Applied, error) {
	if err := b.Validate(); err != nil {
		return Applied{}, err
	}
	now := b.Now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if st == nil {
		return Applied{}, ErrClosed
	}
	s.trimKeys(st, now)
	if k := b.IdempotencyKey; k != "" {
		if rec, ok := st.keys[k]; ok {
			st.c.Replays++
			return Applied{Accepted: rec.accepted, Replay: true}, nil
		}
	}

	cutoff, aging := ageCutoff(now, s.ret.MaxAge.D())
	sc := &s.scratch
	sc.buf, sc.pend, sc.seqs = sc.buf[:0], sc.pend[:0], sc.seqs[:0]
	var committed [numLevels]uint64
	var expired uint64
	dups := 0
	for i := range b.Records {
		r := &b.Records[i]
		id, err := st.nodeID(r.Node)
		if err != nil {
			return Applied{}, err
		}
		if r.Seq <= lastSeq(st, sc.seqs, id) {
			dups++
			continue
		}
		sc.seqs = append(sc.seqs, nodeSeq{node: id, seq: r.Seq})
		level, _ := levelCode(r.Level)
		committed[level]++
		t := now
		if !r.Time.IsZero() {
			t = r.Time.UnixNano()
		}
		if aging && t < cutoff {
			expired++
			continue
		}
		index := st.next + uint64(len(sc.pend))
		start := len(sc.buf)
		sc.buf = appendFrame(sc.buf, r, index, t, level)
		sc.pend = append(sc.pend, pending{
			e:     entry{time: t, size: uint32(len(sc.buf) - start), meta: packMeta(id, level)},
			index: index,
			start: start,
		})
	}
	if err := s.write(st, sc); err != nil {
		return Applied{}, err
	}

	for _, p := range sc.pend {
		st.idx.push(p.e)
		st.bytes += int64(p.e.size)
	}
	st.next += uint64(len(sc.pend))
	for _, ns := range sc.seqs {
		st.nodeSeqs[ns.node] = ns.seq
	}
	out := Applied{}
	for l, n := range committed {
		st.c.Committed[l] += n
		out.Accepted += int(n)
		if n > 0 {
			if out.New == nil {
				out.New = make(map[string]int, 1)
			}
			out.New[levelName(uint8(l))] += int(n)
		}
	}
	st.c.Duplicates += uint64(dups)
	st.c.EvAge += expired
	if k := b.IdempotencyKey; k != "" {
		k = strings.Clone(k) // kept for the key window: not a slice of the caller's buffer
		st.keys[k] = keyRec{accepted: out.Accepted, at: now}
		st.keyOrder = append(st.keyOrder, k)
		s.trimKeys(st, now)
	}
	s.evict(st, now)
	if len(sc.pend) > 0 {
		s.notify()
	}
	if cap(sc.buf) > 8<<20 {
		sc.buf, sc.pend = nil, nil // do not keep a huge batch's buffers
	}
	return out, nil
}

// lastSeq is the highest seq of node, counting the batch's records seen so far.
func lastSeq(st *state, batch []nodeSeq, node uint32) uint64 {
	for i := len(batch) - 1; i >= 0; i-- {
		if batch[i].node == node {
			return batch[i].seq
		}
	}
	return st.nodeSeqs[node]
}

// ageCutoff returns the oldest unix-nano time max_age keeps, and whether age applies.
func ageCutoff(now int64, maxAge time.Duration) (int64, bool) {
	if maxAge <= 0 {
		return 0, false
	}
	if now < -1<<63+int64(maxAge) {
		return -1 << 63, true
	}
	return now - int64(maxAge), true
}

// write puts the pending frames into segments, filling in their positions. On error
// it undoes everything it wrote.
func (s *Store) write(st *state, sc *applyScratch) (err error) {
	if len(sc.pend) == 0 {
		return nil
	}
	nsegs, nextSeg := len(st.segs), st.nextSeg
	var prev *segment
	var prevSize int64
	var prevLast uint64
	if nsegs > 0 {
		prev = st.segs[nsegs-1]
		prevSize, prevLast = prev.size, prev.last
	}
	defer func() {
		if err == nil {
			return
		}
		for _, seg := range st.segs[nsegs:] {
			err = errors.Join(err, seg.release())
		}
		st.segs, st.nextSeg = st.segs[:nsegs], nextSeg
		if prev != nil && prev.size != prevSize {
			err = errors.Join(err, prev.f.Truncate(prevSize))
			prev.size, prev.last = prevSize, prevLast
		}
	}()

	limit := s.opt.segmentSize
	for i := 0; i < len(sc.pend); {
		var seg *segment
		if n := len(st.segs); n > 0 {
			seg = st.segs[n-1]
		}
		if seg == nil || (seg.size > 0 && seg.size+int64(sc.pend[i].e.size) > limit) {
			seg, err = createSegment(st.dir, st.nextSeg)
			if err != nil {
				return err
			}
			st.nextSeg++
			st.segs = append(st.segs, seg)
		}
		j, used := i, seg.size
		for j < len(sc.pend) && (j == i || used+int64(sc.pend[j].e.size) <= limit) {
			p := &sc.pend[j]
			p.e.seg, p.e.off = seg.id, uint32(used)
			used += int64(p.e.size)
			j++
		}
		lastP := sc.pend[j-1]
		if err := seg.write(sc.buf[sc.pend[i].start : lastP.start+int(lastP.e.size)]); err != nil {
			return err
		}
		seg.last = lastP.index
		i = j
	}
	return nil
}

// evict drops the oldest records until every retention bound holds, deleting
// segments that become empty.
func (s *Store) evict(st *state, now int64) {
	cutoff, aging := ageCutoff(now, s.ret.MaxAge.D())
	for st.idx.len() > 0 {
		e := st.idx.at(0)
		switch {
		case s.ret.MaxRecords > 0 && st.idx.len() > s.ret.MaxRecords:
			st.c.EvRecords++
		case s.ret.MaxBytes > 0 && st.bytes > int64(s.ret.MaxBytes):
			st.c.EvBytes++
		case aging && e.time < cutoff:
			st.c.EvAge++
		default:
			return
		}
		st.bytes -= int64(e.size)
		index := st.first()
		st.idx.popFront()
		if front := st.segs[0]; front.last == index {
			st.segs = st.segs[1:]
			if err := front.release(); err != nil {
				s.opt.logger.Warn("evicted log segment not removed; it will be removed at the next start",
					"path", front.path, "error", err)
			}
		}
	}
}

// trimKeys forgets idempotency keys beyond the window or the count bound, oldest first.
func (s *Store) trimKeys(st *state, now int64) {
	cutoff, aging := ageCutoff(now, s.opt.keyWindow)
	for st.keyHead < len(st.keyOrder) {
		k := st.keyOrder[st.keyHead]
		if len(st.keys) <= s.opt.maxKeys && (!aging || st.keys[k].at >= cutoff) {
			break
		}
		delete(st.keys, k)
		st.keyOrder[st.keyHead] = ""
		st.keyHead++
	}
	if st.keyHead > 1024 && st.keyHead > len(st.keyOrder)/2 {
		st.keyOrder = append([]string(nil), st.keyOrder[st.keyHead:]...)
		st.keyHead = 0
	}
}

// Evictions counts records removed by retention, by the bound that removed them.
type Evictions struct {
	MaxRecords uint64 `json:"max_records"`
	MaxBytes   uint64 `json:"max_bytes"`
	MaxAge     uint64 `json:"max_age"`
}

// Total is the sum over all reasons.
func (e Evictions) Total() uint64 { return e.MaxRecords + e.MaxBytes + e.MaxAge }

// Stats describes the store. Counters (Committed, Duplicates, Replays, Evicted) are
// replicated state: identical on every voter and carried through snapshots.
type Stats struct {
	Records int   `json:"records"`
	Bytes   int64 `json:"bytes"` // encoded size of the retained records
	// FirstIndex and LastIndex bound the retained records; FirstIndex > LastIndex when empty.
	FirstIndex uint64 `json:"first_index"`
	LastIndex  uint64 `json:"last_index"`
	// OldestTime and NewestTime are the times of the first and last retained records in
	// store order (record times need not be monotonic). Zero when empty.
	OldestTime time.Time `json:"oldest_time"`
	NewestTime time.Time `json:"newest_time"`
	// Committed counts accepted records by level, since the cluster's first record.
	Committed  map[string]uint64 `json:"committed"`
	Duplicates uint64            `json:"duplicates"` // records dropped as already seen
	Replays    uint64            `json:"replays"`    // batches skipped by idempotency key
	Evicted    Evictions         `json:"evicted"`
	Nodes      int               `json:"nodes"`
	Keys       int               `json:"keys"`
	Segments   int               `json:"segments"`
	// DiskBytes is the size of the segment files (at most one segment more than Bytes
	// plus the evicted part of the oldest segment).
	DiskBytes int64 `json:"disk_bytes"`
	// MemoryBytes estimates the heap held by the index, node table and keys.
	MemoryBytes int64 `json:"memory_bytes"`
}

// Len returns the number of retained records (cheaper than Stats).
func (s *Store) Len() (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.st == nil {
		return 0, ErrClosed
	}
	return s.st.idx.len(), nil
}

// Stats returns the store's current figures.
func (s *Store) Stats() (Stats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.st
	if st == nil {
		return Stats{}, ErrClosed
	}
	out := Stats{
		Records:    st.idx.len(),
		Bytes:      st.bytes,
		FirstIndex: st.first(),
		LastIndex:  st.next - 1,
		Committed:  make(map[string]uint64, numLevels),
		Duplicates: st.c.Duplicates,
		Replays:    st.c.Replays,
		Evicted:    Evictions{MaxRecords: st.c.EvRecords, MaxBytes: st.c.EvBytes, MaxAge: st.c.EvAge},
		Nodes:      len(st.nodeNames),
		Keys:       len(st.keys),
		Segments:   len(st.segs),
	}
	for l, n := range st.c.Committed {
		out.Committed[levelName(uint8(l))] = n
	}
	if n := st.idx.len(); n > 0 {
		out.OldestTime = time.Unix(0, st.idx.at(0).time).UTC()
		out.NewestTime = time.Unix(0, st.idx.at(n-1).time).UTC()
	}
	for _, seg := range st.segs {
		out.DiskBytes += seg.size
	}
	mem := st.idx.memBytes()
	for _, n := range st.nodeNames {
		mem += int64(len(n)) + 64
	}
	for k := range st.keys {
		mem += int64(len(k)) + 64
	}
	mem += int64(cap(st.keyOrder))*16 + int64(cap(s.scratch.buf)) + int64(cap(s.scratch.pend))*40
	out.MemoryBytes = mem
	return out, nil
}

// segment finds a live segment by id. Caller holds mu (read or write).
func (st *state) segment(id uint32) (*segment, error) {
	if len(st.segs) == 0 || id < st.segs[0].id || int(id-st.segs[0].id) >= len(st.segs) {
		return nil, fmt.Errorf("%w: segment %d is not in the store", ErrCorrupt, id)
	}
	return st.segs[id-st.segs[0].id], nil
}

// errorf wraps a read error; the arguments name the segment file.
func (st *state) errorf(format string, args ...any) error {
	return fmt.Errorf("log store: "+format, args...)
}

var _ io.WriterTo = (*Snapshot)(nil)
