// Package spool is each agent's durable, bounded outbox: a FIFO of opaque items (log
// records waiting for the aggregator) kept in append-only segment files in a directory.
//
// Delivery is in order and at least once: Peek hands out the oldest items, Ack removes
// them after the aggregator has committed them. An item may be handed out again after
// a crash or a failed delivery; the aggregator's (node, seq) dedupe makes the end
// result exactly once.
//
// Crash guarantees:
//   - When Append returns, the items are written to the operating system: they survive
//     the process being killed (kill -9), not necessarily a power loss or kernel crash.
//   - When Sync returns, everything appended before the call is on stable storage
//     (segments, their directory entries and the acknowledged position are fsynced).
//     Concurrent Sync calls share one fsync (group commit).
//   - Acknowledgements are written at once and fsynced by Sync and Close; after a crash,
//     items acknowledged since the last Sync may be delivered again.
//   - A torn or corrupt tail (a crash during a write) is found at Open by each item's
//     length and checksum, truncated, counted in picket_logs_dropped_total{reason="corrupt"}
//     and logged.
//
// The spool never holds more than maxBytes of items (8 bytes of framing included): when
// an Append does not fit, the oldest items are dropped, counted in
// picket_logs_dropped_total{reason="spool_full"} and logged. Files on disk can exceed
// maxBytes by about one segment (maxBytes/8) because segments are deleted whole.
package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("spool closed")
	// ErrTooLarge marks an item bigger than the whole spool; it is dropped and counted.
	ErrTooLarge = errors.New("item larger than the spool")
	// ErrCorrupt marks spool data whose length or checksum is wrong.
	ErrCorrupt = errors.New("spool data corrupt")
)

// Drop reasons, the "reason" attribute of picket_logs_dropped_total.
const (
	ReasonFull       = "spool_full"
	ReasonOversize   = "oversize"
	ReasonCorrupt    = "corrupt"
	ReasonWriteError = "write_error"
)

const (
	frameHeader    = 8
	headFileName   = "head"
	segmentSuffix  = ".spool"
	minSegmentSize = 4 << 10
	maxSegmentSize = 16 << 20
	// dropLogEvery bounds how often drops are logged; they are counted every time.
	// Logging every drop could feed the spool with its own complaints.
	dropLogEvery = 10 * time.Second
)

// Spool is a durable bounded FIFO. All methods are safe for concurrent use; Append,
// Peek and Ack hold one mutex briefly (a write or a read of the peeked items), Sync
// does its fsyncs outside it. A Spool starts no goroutines.
type Spool struct {
	dir      string
	maxBytes int64
	segSize  int64
	logger   *slog.Logger
	dropped  metric.Int64Counter
	reg      metric.Registration
	full     dropLog // spool_full drops, logged at most every dropLogEvery
	writeErr dropLog // write_error drops, likewise

	mu       sync.Mutex
	closed   bool
	segs     []*segment // oldest first; the head is in segs[0], the tail is the last one
	nextSeg  uint64
	headOff  int64  // offset of the oldest item in segs[0]
	headID   uint64 // item number of the oldest item; numbers count from 0 at Open
	tailID   uint64 // number the next appended item gets
	headByte int64  // bytes removed from the head since Open
	tailByte int64  // bytes appended since Open, plus those found at Open
	head     *os.File
	headDirt bool
	dirDirt  bool
	version  uint64 // bumped by every change Sync must make durable
	claimed  uint64 // the version the latest Sync started making durable
	changed  chan struct{}

	syncMu sync.Mutex
	synced uint64
}

type segment struct {
	id    uint64
	path  string
	f     *os.File
	size  int64
	dirty bool // written since the last Sync
}

// Token identifies what a Peek handed out; pass it to Ack.
type Token struct {
	sp      *Spool
	endID   uint64
	endByte int64
	endSeg  uint64
	endOff  int64
}

// Open opens (or creates) the spool in dir, which the spool owns, bounded to maxBytes.
// Items left by an earlier process that were not acknowledged are kept, in order.
// A nil logger discards; a nil meter records nothing.
func Open(dir string, maxBytes int64, logger *slog.Logger, meter metric.Meter) (*Spool, error) {
	if maxBytes <= frameHeader {
		return nil, fmt.Errorf("spool %s: max_bytes %d is too small; use a size like 64MiB", dir, maxBytes)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("spool")
	}
	s := &Spool{
		dir:      dir,
		maxBytes: maxBytes,
		segSize:  min(max(maxBytes/8, minSegmentSize), maxSegmentSize),
		logger:   logger.With("component", "spool"),
		changed:  make(chan struct{}),
	}
	s.full = dropLog{every: dropLogEvery, reason: ReasonFull,
		msg: "spool full: oldest log records dropped to make room (the aggregator is unreachable or slow); raise logs.spool.max_bytes to ride out longer outages"}
	s.writeErr = dropLog{every: dropLogEvery, reason: ReasonWriteError,
		msg: "spool write failed: log records dropped; check the disk under data_dir"}
	var err error
	s.dropped, err = meter.Int64Counter("picket_logs_dropped",
		metric.WithDescription("Log records dropped before reaching the cluster log, by reason."))
	if err != nil {
		return nil, fmt.Errorf("spool metrics: %w", err)
	}
	// Every reason starts at 0, so dashboards and alerts see the series before a first drop.
	for _, r := range []string{ReasonFull, ReasonOversize, ReasonCorrupt, ReasonWriteError} {
		s.dropped.Add(context.Background(), 0, metric.WithAttributes(attribute.String("reason", r)))
	}
	spooled, err := meter.Int64ObservableGauge("picket_logs_spooled",
		metric.WithDescription("Log records waiting in this agent's spool for the aggregator."))
	if err != nil {
		return nil, fmt.Errorf("spool metrics: %w", err)
	}
	if err := s.load(); err != nil {
		return nil, errors.Join(err, s.closeFiles())
	}
	s.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(spooled, int64(s.Len()))
		return nil
	}, spooled)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("spool metrics: %w", err), s.closeFiles())
	}
	return s, nil
}

func (s *Spool) segmentPath(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x%s", id, segmentSuffix))
}

// load reads the directory: the acknowledged position, then every frame after it.
func (s *Spool) load() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create spool directory: %w", err)
	}
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read spool directory: %w", err)
	}
	var ids []uint64
	for _, e := range names {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)

	s.head, err = os.OpenFile(filepath.Join(s.dir, headFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open spool head file: %w", err)
	}
	headSeg, headOff, ok := s.readHead()
	s.nextSeg = headSeg
	if !ok && len(ids) > 0 {
		s.logger.Warn("spool head position unreadable; delivering from the oldest segment (some items may be sent twice)",
			"dir", s.dir)
		headSeg, headOff = ids[0], 0
	}
	for _, id := range ids {
		p := s.segmentPath(id)
		if id < headSeg {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove acknowledged spool segment: %w", err)
			}
			continue
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0o600)
		if err != nil {
			return fmt.Errorf("open spool segment: %w", err)
		}
		seg := &segment{id: id, path: p, f: f}
		s.segs = append(s.segs, seg)
		start := int64(0)
		if id == headSeg {
			start = headOff
		}
		if err := s.scan(seg, start); err != nil {
			return err
		}
	}
	if len(s.segs) > 0 {
		s.nextSeg = s.segs[len(s.segs)-1].id + 1
		if s.segs[0].id == headSeg {
			s.headOff = min(headOff, s.segs[0].size)
		}
	}
	// Drop what no longer fits (max_bytes lowered since the last run).
	var full int
	for s.tailByte-s.headByte > s.maxBytes {
		if err := s.dropHead(); err != nil {
			return err
		}
		full++
	}
	if err := s.settle(); err != nil {
		return err
	}
	if full > 0 {
		s.count(ReasonFull, full)
		s.logger.Warn("spool holds more than max_bytes; oldest items dropped", "dropped", full, "max_bytes", s.maxBytes)
	}
	if n := s.tailID - s.headID; n > 0 {
		s.logger.Info("spool reopened with items waiting", "items", n, "bytes", s.tailByte-s.headByte)
	}
	return nil
}

// scan validates the frames of seg from start on, counting them as waiting items. A bad
// frame truncates the segment there.
func (s *Spool) scan(seg *segment, start int64) error {
	st, err := seg.f.Stat()
	if err != nil {
		return fmt.Errorf("stat spool segment: %w", err)
	}
	seg.size = st.Size()
	if start > seg.size {
		start = seg.size
	}
	r := newFrameReader(seg.f, start, seg.size)
	off := start
	for off < seg.size {
		item, err := r.next()
		if err != nil {
			lost := seg.size - off
			s.logger.Warn("spool segment damaged (likely a crash during a write); truncating it",
				"path", seg.path, "offset", off, "bytes_lost", lost, "error", err)
			s.count(ReasonCorrupt, 1)
			if err := seg.f.Truncate(off); err != nil {
				return fmt.Errorf("truncate damaged spool segment %s: %w", seg.path, err)
			}
			seg.size = off
			seg.dirty = true
			s.version++
			return nil
		}
		n := int64(frameHeader + len(item))
		off += n
		s.tailID++
		s.tailByte += n
	}
	return nil
}

// readHead returns the acknowledged position; ok is false when there is none or it is damaged.
func (s *Spool) readHead() (seg uint64, off int64, ok bool) {
	var b [20]byte
	n, _ := s.head.ReadAt(b[:], 0)
	if n != len(b) || crc32.Checksum(b[:16], crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(b[16:]) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), int64(binary.LittleEndian.Uint64(b[8:])), true
}

// writeHead records the acknowledged position (not fsynced; Sync does that).
func (s *Spool) writeHead() error {
	var b [20]byte
	var seg uint64
	if len(s.segs) > 0 {
		seg = s.segs[0].id
	} else {
		seg = s.nextSeg
	}
	binary.LittleEndian.PutUint64(b[:], seg)
	binary.LittleEndian.PutUint64(b[8:], uint64(s.headOff))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], crc32.MakeTable(crc32.Castagnoli)))
	if _, err := s.head.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("write spool head: %w", err)
	}
	s.headDirt = true
	s.version++
	return nil
}

// settle persists the head position, then deletes segments the head has passed.
func (s *Spool) settle() error {
	n := 0
	for n < len(s.segs)-1 && s.headOff >= s.segs[n].size {
		n++
		s.headOff = 0
	}
	if n == 0 {
		return s.writeHead()
	}
	gone := s.segs[:n]
	s.segs = slices.Clone(s.segs[n:])
	err := s.writeHead()
	for _, seg := range gone {
		err = errors.Join(err, seg.f.Close(), os.Remove(seg.path))
	}
	if err != nil {
		return fmt.Errorf("remove delivered spool segment: %w", err)
	}
	s.dirDirt = true
	return nil
}

// dropHead removes the oldest item without reading its payload. Caller holds mu.
func (s *Spool) dropHead() error {
	if len(s.segs) > 1 && s.headOff >= s.segs[0].size {
		if err := s.settle(); err != nil {
			return err
		}
	}
	seg := s.segs[0]
	var h [frameHeader]byte
	if _, err := seg.f.ReadAt(h[:], s.headOff); err != nil {
		return fmt.Errorf("read spool item header in %s: %w", seg.path, err)
	}
	n := frameHeader + int64(binary.LittleEndian.Uint32(h[:]))
	s.headOff += n
	s.headID++
	s.headByte += n
	return nil
}

// Append adds items at the tail. When they do not fit, the oldest items (older ones
// first, then the leading items of this call) are dropped to make room. An item bigger
// than the spool is dropped and reported with an error wrapping ErrTooLarge; the
// others are still appended. Items are copied; the caller keeps its slices.
func (s *Spool) Append(items ...[]byte) error {
	var tooLarge []int
	fit := items[:0:0]
	for _, it := range items {
		if int64(frameHeader+len(it)) > s.maxBytes || uint64(len(it)) > math.MaxUint32 {
			tooLarge = append(tooLarge, len(it))
			continue
		}
		fit = append(fit, it)
	}
	full, lost, werr := s.appendFit(fit)
	if full > 0 {
		s.count(ReasonFull, full)
		s.full.note(s.logger, full, nil)
	}
	var err error
	if len(tooLarge) > 0 {
		s.count(ReasonOversize, len(tooLarge))
		s.logger.Warn("log record larger than the whole spool dropped; raise logs.spool.max_bytes or send smaller records",
			"records", len(tooLarge), "largest_bytes", slices.Max(tooLarge), "max_bytes", s.maxBytes)
		err = fmt.Errorf("spool %s: %d item(s) of up to %d bytes dropped, the spool holds %d bytes: %w",
			s.dir, len(tooLarge), slices.Max(tooLarge), s.maxBytes, ErrTooLarge)
	}
	if werr != nil {
		if !errors.Is(werr, ErrClosed) && lost > 0 {
			s.count(ReasonWriteError, lost)
			s.writeErr.note(s.logger, lost, werr)
		}
		err = errors.Join(err, werr)
	}
	return err
}

// appendFit writes items that each fit the spool. It returns how many items it dropped
// to make room and, on error, how many of the call's items were not written.
func (s *Spool) appendFit(items [][]byte) (dropped, lost int, err error) {
	if len(items) == 0 {
		return 0, 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, len(items), ErrClosed
	}
	var need int64
	for _, it := range items {
		need += frameHeader + int64(len(it))
	}
	for need > s.maxBytes { // this call alone overflows: its leading items go first
		need -= frameHeader + int64(len(items[0]))
		items = items[1:]
		dropped++
	}
	for s.tailByte-s.headByte+need > s.maxBytes {
		if err := s.dropHead(); err != nil {
			return dropped, len(items), err
		}
		dropped++
	}
	if dropped > 0 {
		if err := s.settle(); err != nil {
			return dropped, len(items), err
		}
	}
	buf := make([]byte, 0, need)
	for _, it := range items {
		buf = appendFrame(buf, it)
	}
	if err := s.write(buf); err != nil {
		return dropped, len(items), err
	}
	s.tailID += uint64(len(items))
	s.tailByte += need
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
	return dropped, 0, nil
}

// write puts frames at the tail, starting new segments at segSize. On error every
// byte it wrote is truncated away. Caller holds mu.
func (s *Spool) write(buf []byte) (err error) {
	nsegs := len(s.segs)
	var prev *segment
	var prevSize int64
	if nsegs > 0 {
		prev = s.segs[nsegs-1]
		prevSize = prev.size
	}
	defer func() {
		if err == nil {
			return
		}
		for _, seg := range s.segs[nsegs:] {
			err = errors.Join(err, seg.f.Close(), os.Remove(seg.path))
		}
		s.segs = s.segs[:nsegs]
		if prev != nil && prev.size != prevSize {
			err = errors.Join(err, prev.f.Truncate(prevSize))
			prev.size = prevSize
		}
	}()
	for len(buf) > 0 {
		var seg *segment
		if n := len(s.segs); n > 0 {
			seg = s.segs[n-1]
		}
		first := frameHeader + int64(binary.LittleEndian.Uint32(buf))
		if seg == nil || (seg.size > 0 && seg.size+first > s.segSize) {
			id := s.nextSeg
			f, err := os.OpenFile(s.segmentPath(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("create spool segment: %w", err)
			}
			s.nextSeg++
			seg = &segment{id: id, path: s.segmentPath(id), f: f}
			s.segs = append(s.segs, seg)
			s.dirDirt = true
		}
		// Take whole frames up to the segment size (at least one).
		n := first
		for n < int64(len(buf)) {
			next := frameHeader + int64(binary.LittleEndian.Uint32(buf[n:]))
			if seg.size+n+next > s.segSize {
				break
			}
			n += next
		}
		if _, err := seg.f.WriteAt(buf[:n], seg.size); err != nil {
			return fmt.Errorf("write spool segment %s: %w", seg.path, err)
		}
		seg.size += n
		seg.dirty = true
		buf = buf[n:]
	}
	return nil
}

// Peek returns the oldest items, in order, without removing them: at most maxItems,
// and no more than maxBytes of payload unless the first item alone is bigger
// (maxBytes <= 0: no byte limit). It returns no items when the spool is empty.
// Peeking again without Ack returns the same items (plus any appended since).
func (s *Spool) Peek(maxItems int, maxBytes int64) ([][]byte, Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, Token{}, ErrClosed
	}
	if maxItems <= 0 || s.tailID == s.headID {
		return nil, Token{}, nil
	}
	var items [][]byte
	var payload int64
	tok := Token{sp: s, endID: s.headID, endByte: s.headByte}
	off := s.headOff
	for _, seg := range s.segs {
		if off >= seg.size {
			off = 0
			continue
		}
		r := newFrameReader(seg.f, off, seg.size)
		for off < seg.size {
			item, err := r.next()
			if err != nil {
				return nil, Token{}, fmt.Errorf("spool segment %s at offset %d (reopen the spool to truncate it): %w", seg.path, off, err)
			}
			if len(items) > 0 && (len(items) == maxItems || (maxBytes > 0 && payload+int64(len(item)) > maxBytes)) {
				return items, tok, nil
			}
			items = append(items, item)
			payload += int64(len(item))
			off += frameHeader + int64(len(item))
			tok.endID++
			tok.endByte += frameHeader + int64(len(item))
			tok.endSeg, tok.endOff = seg.id, off
		}
		off = 0
	}
	return items, tok, nil
}

// Ack removes the items a Peek returned (and nothing appended after them). Items that
// were dropped meanwhile are simply gone; acking twice, or the token of an empty Peek,
// is harmless.
func (s *Spool) Ack(t Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if t.sp == nil {
		return nil
	}
	if t.sp != s {
		return fmt.Errorf("spool %s: Ack with a token from another spool", s.dir)
	}
	if t.endID <= s.headID {
		return nil
	}
	// The head has not passed the token's end, so its segment is still here.
	i := slices.IndexFunc(s.segs, func(seg *segment) bool { return seg.id == t.endSeg })
	if i < 0 {
		return fmt.Errorf("spool %s: acknowledged segment %d is gone", s.dir, t.endSeg)
	}
	s.headID, s.headByte = t.endID, t.endByte
	return s.moveHead(i, t.endOff)
}

// moveHead makes (segs[i], off) the head, deleting the segments before it.
func (s *Spool) moveHead(i int, off int64) error {
	gone := s.segs[:i]
	s.segs = slices.Clone(s.segs[i:])
	s.headOff = off
	var err error
	for _, seg := range gone {
		err = errors.Join(err, seg.f.Close(), os.Remove(seg.path))
	}
	if len(gone) > 0 {
		s.dirDirt = true
	}
	return errors.Join(err, s.settle())
}

// Len returns the number of items waiting.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.tailID - s.headID)
}

// Bytes returns the size of the items waiting, framing included; never above maxBytes.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tailByte - s.headByte
}

// Changed returns a channel closed by the next Append that adds items, or by Close.
func (s *Spool) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Dirty reports whether changes were made since the latest Sync started: whether a Sync
// now would have anything to do.
func (s *Spool) Dirty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version > s.claimed
}

// Sync makes everything appended and acknowledged before the call durable. Calls that
// overlap share fsyncs: a caller whose data another Sync already covered returns at once.
func (s *Spool) Sync() error {
	s.mu.Lock()
	want := s.version
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced >= want {
		return nil // a Sync that started after our changes covered them
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	var files []*os.File
	for _, seg := range s.segs {
		if seg.dirty {
			files = append(files, seg.f)
			seg.dirty = false
		}
	}
	if s.headDirt {
		files = append(files, s.head)
		s.headDirt = false
	}
	dir := s.dirDirt
	s.dirDirt = false
	target := s.version
	s.claimed = target
	s.mu.Unlock()

	var errs []error
	for _, f := range files {
		// A segment acknowledged and removed meanwhile needs no sync.
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("sync spool file %s: %w", f.Name(), err))
		}
	}
	if dir {
		errs = append(errs, syncDir(s.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.synced = target
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync spool directory: %w", err)
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// Close syncs and closes the spool. Items not acknowledged stay for the next Open.
// Close is idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.changed)
	s.mu.Unlock()

	// Nothing touches the files once closed is set, except a Sync already running.
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	var errs []error
	for _, seg := range s.segs {
		if seg.dirty {
			errs = append(errs, seg.f.Sync())
		}
	}
	if s.headDirt {
		errs = append(errs, s.head.Sync())
	}
	if s.dirDirt {
		errs = append(errs, syncDir(s.dir))
	}
	errs = append(errs, s.reg.Unregister(), s.closeFiles())
	s.full.flush(s.logger)
	s.writeErr.flush(s.logger)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close spool %s: %w", s.dir, err)
	}
	return nil
}

func (s *Spool) closeFiles() error {
	var errs []error
	for _, seg := range s.segs {
		errs = append(errs, seg.f.Close())
	}
	if s.head != nil {
		errs = append(errs, s.head.Close())
	}
	return errors.Join(errs...)
}

func (s *Spool) count(reason string, n int) {
	s.dropped.Add(context.Background(), int64(n), metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason))))
}

// Frame layout: u32 payload length | u32 checksum | payload. The checksum is CRC-32C
// over the length and the payload, inverted, so that zeroed space (what a file system
// may leave after a crash) never reads as a valid empty item.
func appendFrame(dst, item []byte) []byte {
	var h [frameHeader]byte
	binary.LittleEndian.PutUint32(h[:], uint32(len(item)))
	binary.LittleEndian.PutUint32(h[4:], frameSum(h[:4], item))
	return append(append(dst, h[:]...), item...)
}

func frameSum(length, item []byte) uint32 {
	t := crc32.MakeTable(crc32.Castagnoli)
	return ^crc32.Update(crc32.Checksum(length, t), t, item)
}

// frameReader reads frames from a byte range of a segment.
type frameReader struct {
	r    *bufio.Reader
	left int64
	hdr  [frameHeader]byte
}

func newFrameReader(f *os.File, from, to int64) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(io.NewSectionReader(f, from, to-from), 64<<10), left: to - from}
}

func (fr *frameReader) next() ([]byte, error) {
	if fr.left < frameHeader {
		return nil, fmt.Errorf("%w: %d bytes left, too few for an item header", ErrCorrupt, fr.left)
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, fmt.Errorf("read item header: %w", err)
	}
	n := int64(binary.LittleEndian.Uint32(fr.hdr[:]))
	if n > fr.left-frameHeader {
		return nil, fmt.Errorf("%w: item length %d exceeds the %d bytes left", ErrCorrupt, n, fr.left-frameHeader)
	}
	item := make([]byte, n)
	if _, err := io.ReadFull(fr.r, item); err != nil {
		return nil, fmt.Errorf("read item: %w", err)
	}
	if frameSum(fr.hdr[:4], item) != binary.LittleEndian.Uint32(fr.hdr[4:]) {
		return nil, fmt.Errorf("%w: item checksum mismatch", ErrCorrupt)
	}
	fr.left -= frameHeader + n
	return item, nil
}

// dropLog rate-limits the log lines about one kind of drop: the first is logged at once,
// later ones at most every `every`, summed. (If the agent's own logs feed this spool, a
// line per drop could keep the spool full by itself.) Drops are counted in the metric
// regardless.
type dropLog struct {
	every  time.Duration
	reason string
	msg    string

	mu      sync.Mutex
	last    time.Time
	pending int
	err     error
}

func (d *dropLog) note(l *slog.Logger, n int, err error) {
	d.mu.Lock()
	d.pending += n
	if err != nil {
		d.err = err
	}
	now := time.Now()
	if !d.last.IsZero() && now.Sub(d.last) < d.every {
		d.mu.Unlock()
		return
	}
	d.last = now
	n, err = d.pending, d.err
	d.pending, d.err = 0, nil
	d.mu.Unlock()
	d.log(l, n, err)
}

// flush logs drops not logged yet.
func (d *dropLog) flush(l *slog.Logger) {
	d.mu.Lock()
	n, err := d.pending, d.err
	d.pending, d.err = 0, nil
	d.mu.Unlock()
	if n > 0 {
		d.log(l, n, err)
	}
}

func (d *dropLog) log(l *slog.Logger, n int, err error) {
	args := []any{"reason", d.reason, "dropped", n}
	if err != nil {
		args = append(args, "error", err)
	}
	l.Warn(d.msg, args...)
}
