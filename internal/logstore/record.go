package logstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"time"
)

// Level names, lowest severity first. A record's level is always one of these.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Limits enforced by Batch.Validate.
const (
	// MaxRecordBytes bounds one record's encoded size (message, node, attributes).
	MaxRecordBytes = 1 << 20
	// MaxKeyBytes bounds an idempotency key.
	MaxKeyBytes = 256
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrInvalid marks a batch that Apply refuses as a whole (nothing of it is applied).
	ErrInvalid = errors.New("invalid log batch")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("log store closed")
	// ErrCorrupt marks stored or restored data whose checksum or framing is wrong.
	ErrCorrupt = errors.New("log data corrupt")
)

// Record is one log record of the cluster log. Its JSON form is the /v1/logs shape:
// {"index","time","level","message","node","seq","attrs"}.
type Record struct {
	// Index is the store position assigned by Apply: 1, 2, 3, ... in commit order,
	// identical on every voter. Ignored on input.
	Index uint64 `json:"index"`
	// Time is when the record was produced. A zero Time is replaced by Batch.Now.
	Time time.Time `json:"time"`
	// Level is debug, info, warn or error ("warning" and any letter case are accepted
	// on input and stored in canonical form).
	Level   string `json:"level"`
	Message string `json:"message"`
	// Node is the node that produced (or received) the record. Required.
	Node string `json:"node"`
	// Seq is the per-node sequence number, starting at 1. (Node, Seq) identifies the record.
	Seq   uint64            `json:"seq"`
	Attrs map[string]string `json:"attrs"`
}

// MarshalJSON writes the record with "attrs" always an object, never null.
func (r Record) MarshalJSON() ([]byte, error) {
	type plain Record
	p := plain(r)
	if p.Attrs == nil {
		p.Attrs = map[string]string{}
	}
	return json.Marshal(p)
}

// NormalizeLevel returns the canonical level name for s (case-insensitive; "warning"
// means "warn"), or an error naming the accepted values.
func NormalizeLevel(s string) (string, error) {
	c, ok := levelCode(s)
	if !ok {
		return "", fmt.Errorf("level %q is not one of debug, info, warn, error", s)
	}
	return levelName(c), nil
}

func levelCode(s string) (uint8, bool) {
	switch s { // canonical names first: every record is checked several times on its way
	case LevelDebug:
		return 0, true
	case LevelInfo:
		return 1, true
	case LevelWarn:
		return 2, true
	case LevelError:
		return 3, true
	}
	switch strings.ToLower(s) {
	case "debug":
		return 0, true
	case "info":
		return 1, true
	case "warn", "warning":
		return 2, true
	case "error":
		return 3, true
	}
	return 0, false
}

func levelName(c uint8) string {
	switch c {
	case 0:
		return LevelDebug
	case 1:
		return LevelInfo
	case 2:
		return LevelWarn
	default:
		return LevelError
	}
}

const numLevels = 4

// Batch is one unit of Apply: what a Raft log entry carries.
type Batch struct {
	Records []Record
	// IdempotencyKey, when not empty, makes a repeated batch with the same key (within the
	// key window) a no-op that reports the first application's accepted count. Keys are
	// global: the caller namespaces them (e.g. "node/key").
	IdempotencyKey string
	// Now is the proposer's clock when the batch was proposed. It is the only clock the
	// store knows: age retention, key expiry and zero record times use it. Required.
	Now time.Time
}

// Validate reports why Apply would refuse b, wrapping ErrInvalid; nil when b is acceptable.
// Callers check it before proposing so that committed batches never fail validation.
func (b Batch) Validate() error {
	if b.Now.IsZero() {
		return fmt.Errorf("%w: batch has no Now time (the proposer must set it)", ErrInvalid)
	}
	if !fitsUnixNano(b.Now) {
		return fmt.Errorf("%w: batch Now %s is outside the years 1678..2262", ErrInvalid, b.Now)
	}
	if len(b.IdempotencyKey) > MaxKeyBytes {
		return fmt.Errorf("%w: idempotency key is %d bytes, the limit is %d", ErrInvalid, len(b.IdempotencyKey), MaxKeyBytes)
	}
	for i := range b.Records {
		r := &b.Records[i]
		if _, ok := levelCode(r.Level); !ok {
			return fmt.Errorf("%w: record %d: level %q is not one of debug, info, warn, error", ErrInvalid, i, r.Level)
		}
		if !r.Time.IsZero() && !fitsUnixNano(r.Time) {
			return fmt.Errorf("%w: record %d: time %s is outside the years 1678..2262", ErrInvalid, i, r.Time)
		}
		if r.Node == "" {
			return fmt.Errorf("%w: record %d: node is empty", ErrInvalid, i)
		}
		if r.Seq == 0 {
			return fmt.Errorf("%w: record %d (node %s): seq is 0; sequence numbers start at 1", ErrInvalid, i, r.Node)
		}
		if n := frameBound(r); n > MaxRecordBytes {
			return fmt.Errorf("%w: record %d (node %s seq %d) is about %d bytes encoded, the limit is %d",
				ErrInvalid, i, r.Node, r.Seq, n, MaxRecordBytes)
		}
	}
	return nil
}

// fitsUnixNano reports whether t survives a round trip through UnixNano.
func fitsUnixNano(t time.Time) bool { return time.Unix(0, t.UnixNano()).Equal(t) }

// Frame layout on disk and in snapshots:
//
//	u32 payload length | u32 CRC-32C of payload | payload
//
// payload: uvarint index, varint unix nanos, u8 level, uvarint seq, string node,
// string message, uvarint attr count, then (string key, string value) sorted by key;
// a string is a uvarint length and its bytes.
const frameHeader = 8

// frameBound is an upper bound of a record's frame size, cheap to compute.
func frameBound(r *Record) int {
	n := frameHeader + 3*binary.MaxVarintLen64 + 1 + 3*binary.MaxVarintLen64 + len(r.Node) + len(r.Message)
	for k, v := range r.Attrs {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

func checksum(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendFrame encodes r as a frame with the given index, unix-nano time and level code.
func appendFrame(dst []byte, r *Record, index uint64, unixNano int64, level uint8) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeader)...)
	dst = binary.AppendUvarint(dst, index)
	dst = binary.AppendVarint(dst, unixNano)
	dst = append(dst, level)
	dst = binary.AppendUvarint(dst, r.Seq)
	dst = appendString(dst, r.Node)
	dst = appendString(dst, r.Message)
	dst = binary.AppendUvarint(dst, uint64(len(r.Attrs)))
	if len(r.Attrs) > 0 {
		keys := make([]string, 0, len(r.Attrs))
		for k := range r.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = appendString(dst, k)
			dst = appendString(dst, r.Attrs[k])
		}
	}
	payload := dst[start+frameHeader:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], checksum(payload))
	return dst
}

// frameHead holds the fields of a frame the index needs.
type frameHead struct {
	index    uint64
	unixNano int64
	level    uint8
	seq      uint64
	node     []byte // aliases the frame buffer
	rest     []byte // message and attributes, aliases the frame buffer
}

// splitFrame checks the frame at the start of b and returns its payload and total size.
func splitFrame(b []byte) (payload []byte, size int, err error) {
	if len(b) < frameHeader {
		return nil, 0, fmt.Errorf("%w: frame header cut short (%d bytes)", ErrCorrupt, len(b))
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > len(b)-frameHeader || n > MaxRecordBytes {
		return nil, 0, fmt.Errorf("%w: frame length %d exceeds the %d bytes available", ErrCorrupt, n, len(b)-frameHeader)
	}
	payload = b[frameHeader : frameHeader+n]
	if checksum(payload) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, 0, fmt.Errorf("%w: frame checksum mismatch", ErrCorrupt)
	}
	return payload, frameHeader + n, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad uvarint in record", ErrCorrupt)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint in record", ErrCorrupt)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("%w: record cut short", ErrCorrupt)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: string length %d exceeds record", ErrCorrupt, n)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// decodeHead decodes the index fields of a checked payload.
func decodeHead(payload []byte) (frameHead, error) {
	d := decoder{b: payload}
	var h frameHead
	h.index = d.uvarint()
	h.unixNano = d.varint()
	h.level = d.byte()
	h.seq = d.uvarint()
	h.node = d.bytes()
	h.rest = d.b
	if d.err == nil && h.level >= numLevels {
		d.err = fmt.Errorf("%w: level code %d", ErrCorrupt, h.level)
	}
	return h, d.err
}

// decodeRecord decodes a checked payload into a Record.
func decodeRecord(payload []byte) (Record, error) {
	h, err := decodeHead(payload)
	if err != nil {
		return Record{}, err
	}
	d := decoder{b: h.rest}
	r := Record{
		Index: h.index,
		Time:  time.Unix(0, h.unixNano).UTC(),
		Level: levelName(h.level),
		Node:  string(h.node),
		Seq:   h.seq,
	}
	r.Message = string(d.bytes())
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: attribute count %d exceeds record", ErrCorrupt, n)
	}
	if d.err != nil {
		return Record{}, d.err
	}
	r.Attrs = make(map[string]string, n)
	for range n {
		k := d.bytes()
		v := d.bytes()
		if d.err != nil {
			return Record{}, d.err
		}
		r.Attrs[string(k)] = string(v)
	}
	return r, nil
}

// decodeMessage returns the message of a checked payload without decoding the rest.
func decodeMessage(payload []byte) ([]byte, error) {
	h, err := decodeHead(payload)
	if err != nil {
		return nil, err
	}
	d := decoder{b: h.rest}
	m := d.bytes()
	return m, d.err
}
