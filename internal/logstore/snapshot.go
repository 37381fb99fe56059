package logstore

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
)

// Snapshot stream layout:
//
//	"PKTLOGS\x01" | u32 meta length | u32 CRC-32C of meta | meta (JSON) | frames
//
// The frames are the retained records exactly as stored on disk, oldest first;
// meta says how many there are and their total size.
const snapshotMagic = "PKTLOGS\x01"

type snapshotMeta struct {
	Next     uint64     `json:"next"`
	Records  int        `json:"records"`
	Bytes    int64      `json:"bytes"`
	Nodes    []nodeMeta `json:"nodes"` // in node-id order
	Keys     []keyMeta  `json:"keys"`  // oldest first
	Counters counters   `json:"counters"`
}

type nodeMeta struct {
	Name string `json:"name"`
	Seq  uint64 `json:"seq"`
}

type keyMeta struct {
	Key      string `json:"key"`
	Accepted int    `json:"accepted"`
	At       int64  `json:"at"`
}

type part struct {
	seg      *segment
	off, end int64
}

// Snapshot is a frozen point-in-time view of a Store, shaped for raft.FSMSnapshot:
// take it in FSM.Snapshot (cheap: copies the small tables and pins the segment files
// under the lock), stream it with WriteTo in Persist while Apply goes on, and call
// Release when done. WriteTo may be called from any one goroutine; Release is idempotent.
type Snapshot struct {
	meta    snapshotMeta
	parts   []part
	logger  *slog.Logger
	release sync.Once
}

// Snapshot freezes the store's current state.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.st
	if st == nil {
		return nil, ErrClosed
	}
	m := snapshotMeta{
		Next:     st.next,
		Records:  st.idx.len(),
		Bytes:    st.bytes,
		Nodes:    make([]nodeMeta, len(st.nodeNames)),
		Keys:     make([]keyMeta, 0, len(st.keys)),
		Counters: st.c,
	}
	for id, name := range st.nodeNames {
		m.Nodes[id] = nodeMeta{Name: name, Seq: st.nodeSeqs[id]}
	}
	for _, k := range st.keyOrder[st.keyHead:] {
		rec := st.keys[k]
		m.Keys = append(m.Keys, keyMeta{Key: k, Accepted: rec.accepted, At: rec.at})
	}
	snap := &Snapshot{meta: m, logger: s.opt.logger}
	if st.idx.len() > 0 {
		for k, seg := range st.segs {
			p := part{seg: seg, end: seg.size}
			if k == 0 {
				p.off = int64(st.idx.at(0).off)
			}
			seg.acquire()
			snap.parts = append(snap.parts, p)
		}
	}
	return snap, nil
}

// WriteTo streams the snapshot to w.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	meta, err := json.Marshal(sn.meta)
	if err != nil {
		return 0, fmt.Errorf("encode log snapshot: %w", err)
	}
	head := make([]byte, 0, len(snapshotMagic)+8)
	head = append(head, snapshotMagic...)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(meta)))
	head = binary.LittleEndian.AppendUint32(head, checksum(meta))
	var total int64
	for _, b := range [][]byte{head, meta} {
		n, err := w.Write(b)
		total += int64(n)
		if err != nil {
			return total, fmt.Errorf("write log snapshot: %w", err)
		}
	}
	var frames int64
	for _, p := range sn.parts {
		n, err := io.Copy(w, io.NewSectionReader(p.seg.f, p.off, p.end-p.off))
		total += n
		frames += n
		if err != nil {
			return total, fmt.Errorf("write log snapshot from %s: %w", p.seg.path, err)
		}
	}
	if frames != sn.meta.Bytes {
		return total, fmt.Errorf("%w: log snapshot streamed %d record bytes, expected %d", ErrCorrupt, frames, sn.meta.Bytes)
	}
	return total, nil
}

// Release unpins the segment files. Safe to call more than once.
func (sn *Snapshot) Release() {
	sn.release.Do(func() {
		for _, p := range sn.parts {
			if err := p.seg.release(); err != nil {
				sn.logger.Warn("log segment not removed after snapshot; it will be removed at the next start",
					"path", p.seg.path, "error", err)
			}
		}
		sn.parts = nil
	})
}

// WriteSnapshot is Snapshot, WriteTo and Release in one call.
func (s *Store) WriteSnapshot(w io.Writer) error {
	sn, err := s.Snapshot()
	if err != nil {
		return err
	}
	defer sn.Release()
	_, err = sn.WriteTo(w)
	return err
}

// Restore replaces the whole state with a snapshot stream written by WriteTo. The new
// state is built beside the old one and swapped in at the end, so on error the store
// is unchanged. Changed fires after a successful restore.
func (s *Store) Restore(r io.Reader) error {
	s.mu.Lock()
	if s.st == nil {
		s.mu.Unlock()
		return ErrClosed
	}
	st, err := s.newState()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.fill(st, bufio.NewReaderSize(r, 1<<20)); err != nil {
		return errors.Join(fmt.Errorf("restore log store: %w", err), s.dropState(st))
	}
	s.mu.Lock()
	old := s.st
	if old == nil {
		s.mu.Unlock()
		return errors.Join(ErrClosed, s.dropState(st))
	}
	s.st = st
	s.notify()
	err = s.dropState(old)
	s.mu.Unlock()
	return err
}

// fill loads a snapshot stream into the empty state st, which nobody else sees yet.
func (s *Store) fill(st *state, r *bufio.Reader) error {
	head := make([]byte, len(snapshotMagic)+8)
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("read snapshot header: %w", err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("%w: not a log store snapshot (bad magic)", ErrCorrupt)
	}
	metaLen := binary.LittleEndian.Uint32(head[len(snapshotMagic):])
	if metaLen > 1<<30 {
		return fmt.Errorf("%w: snapshot metadata length %d", ErrCorrupt, metaLen)
	}
	metaBytes := make([]byte, metaLen)
	if _, err := io.ReadFull(r, metaBytes); err != nil {
		return fmt.Errorf("read snapshot metadata: %w", err)
	}
	if checksum(metaBytes) != binary.LittleEndian.Uint32(head[len(snapshotMagic)+4:]) {
		return fmt.Errorf("%w: snapshot metadata checksum mismatch", ErrCorrupt)
	}
	var m snapshotMeta
	if err := json.Unmarshal(metaBytes, &m); err != nil {
		return fmt.Errorf("%w: snapshot metadata: %v", ErrCorrupt, err)
	}
	if m.Next == 0 || m.Records < 0 || uint64(m.Records) > m.Next-1 || m.Bytes < 0 {
		return fmt.Errorf("%w: snapshot says %d records, %d bytes, next index %d", ErrCorrupt, m.Records, m.Bytes, m.Next)
	}

	for _, n := range m.Nodes {
		if _, dup := st.nodeIDs[n.Name]; dup || n.Name == "" {
			return fmt.Errorf("%w: snapshot node table has %q twice or empty", ErrCorrupt, n.Name)
		}
		id, err := st.nodeID(n.Name)
		if err != nil {
			return err
		}
		st.nodeSeqs[id] = n.Seq
	}
	for _, k := range m.Keys {
		if _, dup := st.keys[k.Key]; dup {
			return fmt.Errorf("%w: snapshot key %q twice", ErrCorrupt, k.Key)
		}
		st.keys[k.Key] = keyRec{accepted: k.Accepted, at: k.At}
		st.keyOrder = append(st.keyOrder, k.Key)
	}
	st.c = m.Counters

	w := restoreWriter{s: s, st: st}
	index := m.Next - uint64(m.Records)
	hdr := make([]byte, frameHeader)
	for range m.Records {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return fmt.Errorf("read snapshot record %d: %w", index, err)
		}
		n := binary.LittleEndian.Uint32(hdr)
		if n > MaxRecordBytes {
			return fmt.Errorf("%w: snapshot record %d has length %d", ErrCorrupt, index, n)
		}
		frame := make([]byte, frameHeader+int(n))
		copy(frame, hdr)
		if _, err := io.ReadFull(r, frame[frameHeader:]); err != nil {
			return fmt.Errorf("read snapshot record %d: %w", index, err)
		}
		payload, _, err := splitFrame(frame)
		if err != nil {
			return fmt.Errorf("snapshot record %d: %w", index, err)
		}
		h, err := decodeHead(payload)
		if err != nil {
			return fmt.Errorf("snapshot record %d: %w", index, err)
		}
		id, ok := st.nodeIDs[string(h.node)]
		if h.index != index || !ok {
			return fmt.Errorf("%w: snapshot record %d has index %d and node %q", ErrCorrupt, index, h.index, h.node)
		}
		if err := w.add(frame, entry{time: h.unixNano, size: uint32(len(frame)), meta: packMeta(id, h.level)}, index); err != nil {
			return err
		}
		index++
	}
	if err := w.flush(); err != nil {
		return err
	}
	st.next = m.Next
	if st.bytes != m.Bytes {
		return fmt.Errorf("%w: snapshot records add up to %d bytes, metadata says %d", ErrCorrupt, st.bytes, m.Bytes)
	}
	return nil
}

// restoreWriter appends frames to a state's segments through a bounded buffer.
type restoreWriter struct {
	s   *Store
	st  *state
	seg *segment
	buf []byte
}

func (w *restoreWriter) add(frame []byte, e entry, index uint64) error {
	st := w.st
	if w.seg == nil || (w.seg.size+int64(len(w.buf)) > 0 && w.seg.size+int64(len(w.buf)+len(frame)) > w.s.opt.segmentSize) {
		if err := w.flush(); err != nil {
			return err
		}
		seg, err := createSegment(st.dir, st.nextSeg)
		if err != nil {
			return err
		}
		st.nextSeg++
		st.segs = append(st.segs, seg)
		w.seg = seg
	}
	e.seg, e.off = w.seg.id, uint32(w.seg.size+int64(len(w.buf)))
	w.buf = append(w.buf, frame...)
	w.seg.last = index
	st.idx.push(e)
	st.bytes += int64(e.size)
	if len(w.buf) >= 1<<20 {
		return w.flush()
	}
	return nil
}

func (w *restoreWriter) flush() error {
	if w.seg == nil || len(w.buf) == 0 {
		return nil
	}
	err := w.seg.write(w.buf)
	w.buf = w.buf[:0]
	return err
}
