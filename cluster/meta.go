package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node gossips about itself in its memberlist metadata. Its encoded form is
// limited to memberlist.MetaMaxSize (512 bytes); see EncodeMeta.
type Meta struct {
	Version    string            // picket version of the node
	RPCAddr    string            // host:port of Raft and agent RPC
	HTTPAddr   string            // host:port of the HTTP API
	Roles      []string          // e.g. "voter"
	Tags       map[string]string // cluster.tags of the node
	Load       float64           // 1-minute load average divided by the number of CPUs; ≥ 0
	Health     int               // memberlist health score (GetHealthScore): 0 is healthy
	ConfigHash string            // hash of the node's effective configuration, for drift detection
	// LogStreams reports that the node's picket applies ordered log streams (StreamPos:
	// Raft entries of kind cmdLogCalls). Every agent of this version can, so EncodeMeta
	// always sets it whatever this field says; read from a peer's metadata it lets the
	// aggregator use streams only once every member of the Raft group can apply them.
	LogStreams bool
}

// metaVersion is the first byte of an encoded Meta. Decoders reject other versions; fields
// added later are appended after the known ones, which version-1 decoders ignore.
const metaVersion = 1

// metaFlagLeaving marks a node that announced a graceful leave. It is carried on the wire
// only: memberlist v0.7.0 does not tell NotifyLeave whether a node left or failed (its
// Node.State stays StateAlive there, hashicorp/memberlist#266), so a leaving node says so
// in its metadata before broadcasting its leave, the way Serf sends a leave intent.
const metaFlagLeaving = 1 << 0

// metaFlagLogStreams marks a node that applies ordered log streams (Meta.LogStreams).
// Decoders of earlier versions ignore flags they do not know.
const metaFlagLogStreams = 1 << 1

// loadScale is the precision of Load on the wire: thousandths.
const loadScale = 1000

// maxLoad bounds Load so that its scaled value fits comfortably in a varint.
const maxLoad = 1e9

// ErrMetaTooLarge is returned when node metadata encodes to more than memberlist's limit.
var ErrMetaTooLarge = errors.New("node metadata too large")

// ErrBadMeta is returned when node metadata cannot be decoded.
var ErrBadMeta = errors.New("malformed node metadata")

// clone returns a deep copy of m.
func (m Meta) clone() Meta {
	c := m
	c.Roles = slices.Clone(m.Roles)
	c.Tags = maps.Clone(m.Tags)
	return c
}

// EncodeMeta encodes m compactly: a version byte, flags, then varint-length-prefixed fields.
// It fails with ErrMetaTooLarge when the result exceeds memberlist.MetaMaxSize, and when
// Load is negative or not finite; tags are never truncated.
func EncodeMeta(m Meta) ([]byte, error) { return encodeMeta(m, false) }

func encodeMeta(m Meta, leaving bool) ([]byte, error) {
	if math.IsNaN(m.Load) || math.IsInf(m.Load, 0) || m.Load < 0 || m.Load > maxLoad {
		return nil, fmt.Errorf("node metadata: load %v is not a number between 0 and %g", m.Load, float64(maxLoad))
	}
	if m.Health < 0 {
		return nil, fmt.Errorf("node metadata: health score %d is negative", m.Health)
	}
	b := make([]byte, 0, 128)
	flags := byte(metaFlagLogStreams)
	if leaving {
		flags |= metaFlagLeaving
	}
	b = append(b, metaVersion, flags)
	b = binary.AppendUvarint(b, uint64(math.Round(m.Load*loadScale)))
	b = binary.AppendUvarint(b, uint64(m.Health))
	for _, s := range []string{m.Version, m.RPCAddr, m.HTTPAddr, m.ConfigHash} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Roles)))
	for _, r := range m.Roles {
		b = appendString(b, r)
	}
	keys := slices.Sorted(maps.Keys(m.Tags))
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, m.Tags[k])
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes, memberlist allows %d (%d tags, %d roles): shorten cluster.tags or the roles",
			ErrMetaTooLarge, len(b), memberlist.MetaMaxSize, len(m.Tags), len(m.Roles))
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeMeta decodes what EncodeMeta produced. Empty input decodes to the zero Meta (a node
// that sent no metadata). Errors wrap ErrBadMeta.
func DecodeMeta(b []byte) (Meta, error) {
	m, _, err := decodeMeta(b)
	return m, err
}

func decodeMeta(b []byte) (Meta, bool, error) {
	if len(b) == 0 {
		return Meta{}, false, nil
	}
	if b[0] != metaVersion {
		return Meta{}, false, fmt.Errorf("%w: version %d, this agent understands %d (is the node running a newer picket?)",
			ErrBadMeta, b[0], metaVersion)
	}
	d := metaDecoder{buf: b[1:]}
	var m Meta
	flags := d.byte()
	m.LogStreams = flags&metaFlagLogStreams != 0
	m.Load = float64(d.uvarint(maxLoad*loadScale)) / loadScale
	m.Health = int(d.uvarint(math.MaxInt32))
	m.Version = d.string()
	m.RPCAddr = d.string()
	m.HTTPAddr = d.string()
	m.ConfigHash = d.string()
	if n := d.uvarint(memberlist.MetaMaxSize); n > 0 {
		m.Roles = make([]string, 0, n)
		for range n {
			m.Roles = append(m.Roles, d.string())
		}
	}
	if n := d.uvarint(memberlist.MetaMaxSize); n > 0 {
		m.Tags = make(map[string]string, n)
		for range n {
			k := d.string()
			m.Tags[k] = d.string()
		}
	}
	if d.err != nil {
		return Meta{}, false, d.err
	}
	return m, flags&metaFlagLeaving != 0, nil
}

// metaDecoder reads fields until the first error, which it keeps.
type metaDecoder struct {
	buf []byte
	err error
}

func (d *metaDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid %s", ErrBadMeta, what)
	}
	d.buf = nil
}

func (d *metaDecoder) byte() byte {
	if len(d.buf) < 1 {
		d.fail("flags")
		return 0
	}
	v := d.buf[0]
	d.buf = d.buf[1:]
	return v
}

func (d *metaDecoder) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 || v > limit {
		d.fail("number")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *metaDecoder) string() string {
	n := d.uvarint(memberlist.MetaMaxSize)
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.buf)) {
		d.fail("string")
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

// loadChangeThreshold is the smallest change of Load worth gossiping on its own.
const loadChangeThreshold = 0.05

// metaChanged reports whether next differs meaningfully from what was last gossiped: Load by
// at least loadChangeThreshold, or any other field at all.
func metaChanged(last, next Meta) bool {
	if math.Abs(next.Load-last.Load) >= loadChangeThreshold {
		return true
	}
	a, b := last.clone(), next.clone()
	a.Load, b.Load = 0, 0
	ea, errA := encodeMeta(a, false)
	eb, errB := encodeMeta(b, false)
	if errA != nil || errB != nil {
		return true
	}
	return string(ea) != string(eb)
}

// metaDiff names the fields that differ between a and b, for event details.
func metaDiff(a, b Meta) []string {
	var d []string
	if a.Version != b.Version {
		d = append(d, "version")
	}
	if a.RPCAddr != b.RPCAddr {
		d = append(d, "rpc_addr")
	}
	if a.HTTPAddr != b.HTTPAddr {
		d = append(d, "http_addr")
	}
	if !slices.Equal(a.Roles, b.Roles) {
		d = append(d, "roles")
	}
	if !maps.Equal(a.Tags, b.Tags) {
		d = append(d, "tags")
	}
	if a.Load != b.Load {
		d = append(d, "load")
	}
	if a.Health != b.Health {
		d = append(d, "health")
	}
	if a.ConfigHash != b.ConfigHash {
		d = append(d, "config_hash")
	}
	return d
}
