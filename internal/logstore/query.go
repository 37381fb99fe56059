package logstore

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Query limits.
const (
	DefaultLimit = 100
	MaxLimit     = 10_000
)

// Query selects records. Zero fields do not filter.
type Query struct {
	// Level is a minimum: "warn" returns warn and error records, "debug" everything.
	Level string
	// Node is an exact node name.
	Node string
	// Since (inclusive) and Until (exclusive) bound the record time.
	Since, Until time.Time
	// Contains is a case-insensitive substring of the message.
	Contains string
	// Limit is the most records returned: DefaultLimit when 0 or less, at most MaxLimit.
	Limit int
	// AfterIndex and BeforeIndex (both exclusive) bound the store index; BeforeIndex 0
	// means no bound. Page backwards by passing the last result's Index as BeforeIndex.
	AfterIndex  uint64
	BeforeIndex uint64
}

// Limits for one locked step of a query: the index entries scanned and the records
// read from disk before the read lock is released and Apply can go on.
const (
	pageScan    = 1 << 18
	pageRecords = 512
	readGap     = 4 << 10 // frames closer than this are read with one ReadAt
	readSpan    = 1 << 20 // most bytes read at once
)

// Query returns matching records, newest (highest Index) first. Level, node, time
// and index filters scan the in-memory index; only candidates are read from disk,
// and Contains is checked on the message read from disk.
func (s *Store) Query(q Query) ([]Record, error) {
	f, err := compileQuery(q)
	if err != nil {
		return nil, err
	}
	hi := uint64(1<<64 - 1)
	if q.BeforeIndex > 0 {
		hi = q.BeforeIndex
	}
	var out []Record
	for {
		done, err := s.queryPage(&f, &hi, &out)
		if err != nil {
			return nil, err
		}
		if done {
			return out, nil
		}
	}
}

type filter struct {
	q         Query
	minLevel  uint8
	limit     int
	since     int64
	until     int64
	hasSince  bool
	hasUntil  bool
	needle    string // lower case
	asciiOnly bool
}

func compileQuery(q Query) (filter, error) {
	f := filter{q: q, limit: q.Limit}
	if q.Level != "" {
		c, ok := levelCode(q.Level)
		if !ok {
			return f, fmt.Errorf("%w: query level %q is not one of debug, info, warn, error", ErrInvalid, q.Level)
		}
		f.minLevel = c
	}
	if f.limit <= 0 {
		f.limit = DefaultLimit
	}
	f.limit = min(f.limit, MaxLimit)
	if !q.Since.IsZero() {
		f.since, f.hasSince = clampUnixNano(q.Since), true
	}
	if !q.Until.IsZero() {
		f.until, f.hasUntil = clampUnixNano(q.Until), true
	}
	f.needle = strings.ToLower(q.Contains)
	f.asciiOnly = isASCII(f.needle)
	return f, nil
}

func clampUnixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, -1<<63)):
		return -1 << 63
	case t.After(time.Unix(0, 1<<63-1)):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// matchIndex checks the filters the index can answer.
func (f *filter) matchIndex(e *entry, node uint32, byNode bool) bool {
	return e.level() >= f.minLevel &&
		(!byNode || e.node() == node) &&
		(!f.hasSince || e.time >= f.since) &&
		(!f.hasUntil || e.time < f.until)
}

type ref struct {
	index uint64
	e     entry
}

// queryPage scans backwards from *hi under the read lock, appends matches to *out and
// moves *hi down past what it scanned.
func (s *Store) queryPage(f *filter, hi *uint64, out *[]Record) (done bool, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.st
	if st == nil {
		return true, ErrClosed
	}
	if f.q.AfterIndex >= st.next-1 {
		return true, nil
	}
	lo := max(st.first(), f.q.AfterIndex+1)
	*hi = min(*hi, st.next)
	if *hi <= lo {
		return true, nil
	}
	var node uint32
	byNode := f.q.Node != ""
	if byNode {
		id, ok := st.nodeIDs[f.q.Node]
		if !ok {
			return true, nil
		}
		node = id
	}
	want := f.limit - len(*out)
	if f.needle != "" {
		want = pageRecords
	}
	want = min(want, pageRecords)
	first := st.first()
	var cands []ref // descending
	i := *hi
	for scanned := 0; i > lo && len(cands) < want && scanned < pageScan; scanned++ {
		i--
		e := st.idx.at(int(i - first))
		if f.matchIndex(e, node, byNode) {
			cands = append(cands, ref{index: i, e: *e})
		}
	}
	*hi = i
	// Read oldest first so that neighbouring frames share a read, then emit newest first.
	for a, b := 0, len(cands)-1; a < b; a, b = a+1, b-1 {
		cands[a], cands[b] = cands[b], cands[a]
	}
	recs, err := s.read(st, cands, f.keep)
	if err != nil {
		return true, err
	}
	for k := len(recs) - 1; k >= 0 && len(*out) < f.limit; k-- {
		*out = append(*out, recs[k])
	}
	return len(*out) >= f.limit || *hi <= lo, nil
}

// keep checks the message filter on a frame payload.
func (f *filter) keep(payload []byte) (bool, error) {
	if f.needle == "" {
		return true, nil
	}
	msg, err := decodeMessage(payload)
	if err != nil {
		return false, err
	}
	if f.asciiOnly {
		return containsFoldASCII(msg, f.needle), nil
	}
	return strings.Contains(strings.ToLower(string(msg)), f.needle), nil
}

// Since returns up to limit records with Index > cursor in store order (oldest first):
// the follow and export cursor. limit is clamped like Query.Limit. When records after
// cursor were evicted meanwhile, the first record's Index is above cursor+1.
func (s *Store) Since(cursor uint64, limit int) ([]Record, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.st
	if st == nil {
		return nil, ErrClosed
	}
	if cursor >= st.next-1 {
		return nil, nil
	}
	first := st.first()
	lo := max(first, cursor+1)
	hi := min(st.next, lo+uint64(limit))
	refs := make([]ref, 0, hi-lo)
	for i := lo; i < hi; i++ {
		refs = append(refs, ref{index: i, e: *st.idx.at(int(i - first))})
	}
	return s.read(st, refs, nil)
}

// read loads the frames of refs (ascending positions) and decodes those keep accepts.
// Neighbouring frames of one segment are read with a single ReadAt. Caller holds mu.
func (s *Store) read(st *state, refs []ref, keep func([]byte) (bool, error)) ([]Record, error) {
	var out []Record
	var buf []byte
	for i := 0; i < len(refs); {
		seg, err := st.segment(refs[i].e.seg)
		if err != nil {
			return nil, err
		}
		start := int64(refs[i].e.off)
		end := start + int64(refs[i].e.size)
		j := i + 1
		for j < len(refs) {
			n := &refs[j].e
			if n.seg != seg.id || int64(n.off) < end || int64(n.off) > end+readGap ||
				int64(n.off)+int64(n.size)-start > readSpan {
				break
			}
			end = int64(n.off) + int64(n.size)
			j++
		}
		if int64(cap(buf)) < end-start {
			buf = make([]byte, end-start)
		}
		buf = buf[:end-start]
		if _, err := seg.f.ReadAt(buf, start); err != nil {
			return nil, st.errorf("read segment %s: %w", seg.path, err)
		}
		for k := i; k < j; k++ {
			off := int64(refs[k].e.off) - start
			payload, _, err := splitFrame(buf[off : off+int64(refs[k].e.size)])
			if err != nil {
				return nil, st.errorf("record %d in %s: %w", refs[k].index, seg.path, err)
			}
			if keep != nil {
				ok, err := keep(payload)
				if err != nil {
					return nil, st.errorf("record %d in %s: %w", refs[k].index, seg.path, err)
				}
				if !ok {
					continue
				}
			}
			r, err := decodeRecord(payload)
			if err != nil {
				return nil, st.errorf("record %d in %s: %w", refs[k].index, seg.path, err)
			}
			out = append(out, r)
		}
		i = j
	}
	return out, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// containsFoldASCII reports whether needle (ASCII, lower case) occurs in hay,
// ignoring ASCII letter case, without allocating.
func containsFoldASCII(hay []byte, needle string) bool {
	if len(needle) == 0 {
		return true
	}
	for i := 0; i+len(needle) <= len(hay); i++ {
		if lowerASCII(hay[i]) != needle[0] {
			continue
		}
		j := 1
		for j < len(needle) && lowerASCII(hay[i+j]) == needle[j] {
			j++
		}
		if j == len(needle) {
			return true
		}
	}
	return false
}
