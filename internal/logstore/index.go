package logstore

import "unsafe"

// entry is the in-memory index of one retained record: 24 bytes, so a million
// records cost about 23 MiB. Everything a level/node/time filter needs is here;
// the message and attributes stay on disk.
type entry struct {
	time int64  // record time, unix nanoseconds
	seg  uint32 // segment id
	off  uint32 // frame offset in the segment
	size uint32 // frame size in bytes
	meta uint32 // node id << 8 | level code
}

func (e *entry) level() uint8                  { return uint8(e.meta) }
func (e *entry) node() uint32                  { return e.meta >> 8 }
func packMeta(node uint32, level uint8) uint32 { return node<<8 | uint32(level) }

// maxNodes is the number of distinct node names the 24-bit node id can hold.
const maxNodes = 1 << 24

const chunkLen = 4096

const entrySize = int64(unsafe.Sizeof(entry{}))

// entries is a FIFO of index entries in fixed-size chunks: pushing never copies
// existing entries and popping frees whole chunks, so memory tracks the retained
// count without the 2x slack of a growing slice. Not safe for concurrent use.
type entries struct {
	chunks []*[chunkLen]entry
	head   int // position of the first entry in chunks[0]
	n      int
}

func (q *entries) len() int { return q.n }

// at returns the i-th entry, 0 being the oldest.
func (q *entries) at(i int) *entry {
	j := q.head + i
	return &q.chunks[j/chunkLen][j%chunkLen]
}

func (q *entries) push(e entry) {
	j := q.head + q.n
	if j/chunkLen == len(q.chunks) {
		q.chunks = append(q.chunks, new([chunkLen]entry))
	}
	q.chunks[j/chunkLen][j%chunkLen] = e
	q.n++
}

func (q *entries) popFront() {
	q.head++
	q.n--
	if q.head == chunkLen {
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.head = 0
	}
	if q.n == 0 && len(q.chunks) > 0 {
		// Keep at most the current chunk; start again at its beginning.
		q.chunks = append(q.chunks[:0:0], q.chunks[0])
		q.head = 0
	}
}

// memBytes estimates the heap the index holds.
func (q *entries) memBytes() int64 {
	return int64(len(q.chunks))*(chunkLen*entrySize) + int64(cap(q.chunks))*8
}
