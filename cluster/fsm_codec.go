package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/picket-dev/picket/internal/logstore"
)

// Raft log entries of picket's FSM start with a command kind byte.
//
// Log batches, the hot path, are a compact binary form (decoding JSON on three voters
// sharing a machine would cost more than the rest of the commit):
//
//	kind=cmdLogs | varint now (unix nanos, leader clock) | uvarint groups |
//	per group: string key | uvarint records |
//	per record: string node | uvarint seq | u8 has-time | [varint unix nanos] |
//	            u8 level | string message | uvarint attrs | (string key, string value)...
//
// Log batches with calls of ordered streams (StreamPos) say where each call starts:
//
//	kind=cmdLogCalls | varint now | uvarint calls |
//	per call: string node | uvarint epoch | uvarint pos | uvarint groups | groups as above
//
// A leader writes cmdLogs when no call of the batch has a stream, so that voters of the
// previous version keep applying entries of senders that do not pipeline.
//
// A string is a uvarint length and its bytes. Every other command is
//
//	kind | varint now | JSON body
//
// Kinds are never renumbered: old entries stay in the Raft log and in snapshots' logs.
const (
	cmdLogs         byte = 1
	cmdPutCheck     byte = 2
	cmdDeleteCheck  byte = 3
	cmdAssign       byte = 4
	cmdExportCursor byte = 5
	cmdRegister     byte = 6
	cmdUnregister   byte = 7
	cmdReleaseOwner byte = 8
	cmdLogCalls     byte = 9
)

// errBadCommand marks a Raft log entry the FSM cannot decode (a bug or version skew).
var errBadCommand = errors.New("undecodable raft command")

func cmdLevelCode(level string) (byte, bool) {
	switch level {
	case logstore.LevelDebug:
		return 0, true
	case logstore.LevelInfo:
		return 1, true
	case logstore.LevelWarn:
		return 2, true
	case logstore.LevelError:
		return 3, true
	}
	return 0, false
}

func cmdLevelName(c byte) (string, bool) {
	switch c {
	case 0:
		return logstore.LevelDebug, true
	case 1:
		return logstore.LevelInfo, true
	case 2:
		return logstore.LevelWarn, true
	case 3:
		return logstore.LevelError, true
	}
	return "", false
}

func cmdPutString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// logsEncodedSize estimates a group's encoded size, for batch limits.
func logsEncodedSize(g *LogGroup) int {
	n := len(g.Key) + 2*binary.MaxVarintLen64
	for i := range g.Records {
		n += recordEncodedSize(&g.Records[i])
	}
	return n
}

func recordEncodedSize(r *logstore.Record) int {
	n := 5*binary.MaxVarintLen64 + 2 + len(r.Node) + len(r.Message)
	for k, v := range r.Attrs {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

// logCall is one AppendLogStream call's part of a log batch: the FSM applies or refuses
// its groups together (see StreamPos).
type logCall struct {
	node   string
	stream StreamPos
	groups []LogGroup
}

// encodeLogCalls encodes a log batch command of calls: cmdLogCalls when a call has a
// stream position, else the cmdLogs of all their groups. Records must carry canonical
// levels (the callers validate them with logstore first).
func encodeLogCalls(dst []byte, now time.Time, calls []logCall) ([]byte, error) {
	ordered := false
	for i := range calls {
		ordered = ordered || calls[i].stream != StreamPos{}
	}
	if !ordered {
		var groups []LogGroup
		for i := range calls {
			groups = append(groups, calls[i].groups...)
		}
		return encodeLogs(dst, now, groups)
	}
	dst = append(dst, cmdLogCalls)
	dst = binary.AppendVarint(dst, now.UnixNano())
	dst = binary.AppendUvarint(dst, uint64(len(calls)))
	for i := range calls {
		c := &calls[i]
		dst = cmdPutString(dst, c.node)
		dst = binary.AppendUvarint(dst, c.stream.Epoch)
		dst = binary.AppendUvarint(dst, c.stream.Pos)
		var err error
		if dst, err = appendLogGroups(dst, c.groups); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// encodeLogs encodes a log batch command of unordered groups. Records must carry
// canonical levels (the callers validate them with logstore first).
func encodeLogs(dst []byte, now time.Time, groups []LogGroup) ([]byte, error) {
	dst = append(dst, cmdLogs)
	dst = binary.AppendVarint(dst, now.UnixNano())
	return appendLogGroups(dst, groups)
}

// appendLogGroups appends a count of groups and the groups.
func appendLogGroups(dst []byte, groups []LogGroup) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(len(groups)))
	for gi := range groups {
		g := &groups[gi]
		dst = cmdPutString(dst, g.Key)
		dst = binary.AppendUvarint(dst, uint64(len(g.Records)))
		for i := range g.Records {
			r := &g.Records[i]
			code, ok := cmdLevelCode(r.Level)
			if !ok {
				return nil, fmt.Errorf("%w: record level %q is not canonical", logstore.ErrInvalid, r.Level)
			}
			dst = cmdPutString(dst, r.Node)
			dst = binary.AppendUvarint(dst, r.Seq)
			if r.Time.IsZero() {
				dst = append(dst, 0)
			} else {
				dst = append(dst, 1)
				dst = binary.AppendVarint(dst, r.Time.UnixNano())
			}
			dst = append(dst, code)
			dst = cmdPutString(dst, r.Message)
			dst = binary.AppendUvarint(dst, uint64(len(r.Attrs)))
			for k, v := range r.Attrs {
				dst = cmdPutString(dst, k)
				dst = cmdPutString(dst, v)
			}
		}
	}
	return dst, nil
}

// cmdReader decodes the binary parts of a command; the first error sticks. When str
// is set it is the same bytes as b (from its start) as one string, and string() returns
// substrings of it instead of allocating each one.
type cmdReader struct {
	b   []byte
	str string
	err error
}

func (d *cmdReader) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errBadCommand, what)
	}
}

func (d *cmdReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *cmdReader) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *cmdReader) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("cut short")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *cmdReader) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("string longer than the command")
		return ""
	}
	var s string
	if d.str != "" {
		s = d.str[len(d.str)-len(d.b):][:n]
	} else {
		s = string(d.b[:n])
	}
	d.b = d.b[n:]
	return s
}

// count reads a count of items that each take at least min bytes.
func (d *cmdReader) count(minBytes int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minBytes) {
		d.fail("count larger than the command")
		return 0
	}
	return int(n)
}

// decodeLogs decodes a cmdLogs body (after the kind byte). The records' strings share
// one copy of b.
func decodeLogs(b []byte) (time.Time, []LogGroup, error) {
	d := cmdReader{b: b, str: string(b)}
	now := time.Unix(0, d.varint()).UTC()
	groups := d.groups()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return time.Time{}, nil, d.err
	}
	return now, groups, nil
}

// decodeLogCalls decodes a cmdLogCalls body (after the kind byte). The records' strings
// share one copy of b.
func decodeLogCalls(b []byte) (time.Time, []logCall, error) {
	d := cmdReader{b: b, str: string(b)}
	now := time.Unix(0, d.varint()).UTC()
	calls := make([]logCall, d.count(4))
	for i := range calls {
		c := &calls[i]
		c.node = d.string()
		c.stream = StreamPos{Epoch: d.uvarint(), Pos: d.uvarint()}
		c.groups = d.groups()
		if d.err != nil {
			return time.Time{}, nil, d.err
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return time.Time{}, nil, d.err
	}
	return now, calls, nil
}

// groups reads a count of groups and the groups; nil after an error.
func (d *cmdReader) groups() []LogGroup {
	groups := make([]LogGroup, d.count(2))
	for gi := range groups {
		g := &groups[gi]
		g.Key = d.string()
		g.Records = make([]logstore.Record, d.count(6))
		for i := range g.Records {
			r := &g.Records[i]
			r.Node = d.string()
			r.Seq = d.uvarint()
			if d.byte() == 1 {
				r.Time = time.Unix(0, d.varint()).UTC()
			}
			level, ok := cmdLevelName(d.byte())
			if !ok && d.err == nil {
				d.fail("bad level code")
			}
			r.Level = level
			r.Message = d.string()
			if n := d.count(2); n > 0 {
				r.Attrs = make(map[string]string, n)
				for range n {
					k := d.string()
					r.Attrs[k] = d.string()
				}
			}
			if d.err != nil {
				return nil
			}
		}
	}
	return groups
}

// encodeJSONCommand encodes a non-log command: kind, leader time, JSON body.
func encodeJSONCommand(kind byte, now time.Time, body any) ([]byte, error) {
	js, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode raft command %d: %w", kind, err)
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(js))
	b = append(b, kind)
	b = binary.AppendVarint(b, now.UnixNano())
	return append(b, js...), nil
}

// decodeJSONCommand decodes the body of a non-log command (after the kind byte).
func decodeJSONCommand(b []byte, into any) (time.Time, error) {
	d := cmdReader{b: b}
	now := time.Unix(0, d.varint()).UTC()
	if d.err != nil {
		return time.Time{}, d.err
	}
	if err := json.Unmarshal(d.b, into); err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", errBadCommand, err)
	}
	return now, nil
}

// logCallWireVersion is the first byte of EncodeLogCall's output.
const logCallWireVersion = 1

// EncodeLogCall encodes one AppendLogStream call for agent RPC: the version byte, then
// the call as a cmdLogCalls entry holds it (node, epoch, pos, groups). Records must carry
// canonical levels (the Shipper's do); otherwise it fails with logstore.ErrInvalid.
// Much cheaper than JSON on both ends, which matters when agents forward most posts.
func EncodeLogCall(dst []byte, node string, pos StreamPos, groups []LogGroup) ([]byte, error) {
	dst = append(dst, logCallWireVersion)
	dst = cmdPutString(dst, node)
	dst = binary.AppendUvarint(dst, pos.Epoch)
	dst = binary.AppendUvarint(dst, pos.Pos)
	return appendLogGroups(dst, groups)
}

// DecodeLogCall decodes what EncodeLogCall produced. The records' strings share one copy
// of b. Errors wrap logstore.ErrInvalid.
func DecodeLogCall(b []byte) (node string, pos StreamPos, groups []LogGroup, err error) {
	if len(b) == 0 || b[0] != logCallWireVersion {
		return "", StreamPos{}, nil, fmt.Errorf("%w: log call of an unknown encoding (is the sender a newer picket?)", logstore.ErrInvalid)
	}
	d := cmdReader{b: b[1:], str: string(b[1:])}
	node = d.string()
	pos = StreamPos{Epoch: d.uvarint(), Pos: d.uvarint()}
	groups = d.groups()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return "", StreamPos{}, nil, fmt.Errorf("%w: %w", logstore.ErrInvalid, d.err)
	}
	return node, pos, groups, nil
}
