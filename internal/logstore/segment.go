package logstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
)

// segment is one append-only file of frames. Frames are never rewritten; a segment
// is deleted whole once every record in it has been evicted.
//
// Lifetime: the store holds one reference from creation until the segment is evicted
// (or the store closes or restores); each Snapshot holds one more while it streams.
// The file is closed and removed when the last reference is released, so a snapshot
// can keep reading a segment that retention has already dropped.
type segment struct {
	id   uint32
	path string
	f    *os.File
	refs atomic.Int32

	// Guarded by Store.mu.
	size int64  // bytes written
	last uint64 // index of the last frame written
}

func segmentPath(dir string, id uint32) string {
	return filepath.Join(dir, fmt.Sprintf("%08x.seg", id))
}

func createSegment(dir string, id uint32) (*segment, error) {
	p := segmentPath(dir, id)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create log segment: %w", err)
	}
	s := &segment{id: id, path: p, f: f}
	s.refs.Store(1)
	return s, nil
}

func (s *segment) acquire() { s.refs.Add(1) }

// release drops one reference; the last one closes and removes the file.
func (s *segment) release() error {
	if s.refs.Add(-1) != 0 {
		return nil
	}
	return errors.Join(s.f.Close(), os.Remove(s.path))
}

// write appends b at the end of the segment. On a short or failed write the file is
// truncated back so no partial frame stays behind.
func (s *segment) write(b []byte) error {
	if _, err := s.f.WriteAt(b, s.size); err != nil {
		return errors.Join(fmt.Errorf("write log segment %s: %w", s.path, err), s.f.Truncate(s.size))
	}
	s.size += int64(len(b))
	return nil
}
