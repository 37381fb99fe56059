package cluster

import (
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
	"pgregory.net/rapid"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []Meta{
		{},
		{Version: "0.1.0", RPCAddr: "10.0.0.1:7947", HTTPAddr: "127.0.0.1:7948", Roles: []string{"voter"},
			Tags: map[string]string{"zone": "a", "rack": "r1"}, Load: 0.42, Health: 2, ConfigHash: "abc123"},
		{Load: 123.456, Tags: map[string]string{"": ""}, Roles: []string{"", "x"}},
	}
	for _, want := range tests {
		b, err := EncodeMeta(want)
		if err != nil {
			t.Fatalf("EncodeMeta(%+v): %v", want, err)
		}
		if b[0] != metaVersion {
			t.Errorf("first byte = %d, want the version %d", b[0], metaVersion)
		}
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("DecodeMeta: %v", err)
		}
		if !metaEqual(got, want) {
			t.Errorf("round trip of %+v gave %+v", want, got)
		}
	}
}

func TestMetaRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		want := Meta{
			Version:    rapid.StringN(0, 20, -1).Draw(t, "version"),
			RPCAddr:    rapid.StringN(0, 30, -1).Draw(t, "rpc"),
			HTTPAddr:   rapid.StringN(0, 30, -1).Draw(t, "http"),
			Roles:      rapid.SliceOfN(rapid.StringN(0, 10, -1), 0, 4).Draw(t, "roles"),
			Tags:       rapid.MapOfN(rapid.StringN(0, 10, -1), rapid.StringN(0, 20, -1), 0, 8).Draw(t, "tags"),
			Load:       math.Round(rapid.Float64Range(0, 1000).Draw(t, "load")*loadScale) / loadScale,
			Health:     rapid.IntRange(0, 100).Draw(t, "health"),
			ConfigHash: rapid.StringN(0, 64, -1).Draw(t, "hash"),
		}
		leaving := rapid.Bool().Draw(t, "leaving")
		b, err := encodeMeta(want, leaving)
		if errors.Is(err, ErrMetaTooLarge) {
			return
		}
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		if len(b) > memberlist.MetaMaxSize {
			t.Fatalf("encoded %d bytes, over the limit", len(b))
		}
		got, gotLeaving, err := decodeMeta(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !metaEqual(got, want) || gotLeaving != leaving {
			t.Fatalf("round trip of %+v (leaving %v) gave %+v (leaving %v)", want, leaving, got, gotLeaving)
		}
		// A version-1 decoder ignores fields appended by later writers.
		if got2, err := DecodeMeta(append(b, 0xff, 0x01)); err != nil || !metaEqual(got2, want) {
			t.Fatalf("decode with trailing bytes: %+v, %v", got2, err)
		}
	})
}

// metaEqual compares metas treating nil and empty collections alike.
func metaEqual(a, b Meta) bool {
	return a.Version == b.Version && a.RPCAddr == b.RPCAddr && a.HTTPAddr == b.HTTPAddr &&
		slices.Equal(a.Roles, b.Roles) && maps.Equal(a.Tags, b.Tags) &&
		math.Abs(a.Load-b.Load) < 1e-9 && a.Health == b.Health && a.ConfigHash == b.ConfigHash
}

func TestEncodeMetaErrors(t *testing.T) {
	big := map[string]string{}
	for i := range 30 {
		big[strings.Repeat("k", 5)+string(rune('a'+i))] = strings.Repeat("v", 12)
	}
	tests := []struct {
		name string
		meta Meta
		want string
	}{
		{"too many tags", Meta{Tags: big}, "shorten cluster.tags"},
		{"long hash", Meta{ConfigHash: strings.Repeat("h", 600)}, "memberlist allows 512"},
		{"negative load", Meta{Load: -1}, "load -1"},
		{"NaN load", Meta{Load: math.NaN()}, "load NaN"},
		{"negative health", Meta{Health: -1}, "health score -1"},
	}
	for _, tt := range tests {
		_, err := EncodeMeta(tt.meta)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
	if _, err := EncodeMeta(Meta{Tags: big}); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("too many tags: err = %v, want ErrMetaTooLarge", err)
	}
}

func TestDecodeMetaErrors(t *testing.T) {
	good, err := EncodeMeta(Meta{Version: "1.0", Tags: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"other version", append([]byte{2}, good[1:]...)},
		{"no flags", []byte{metaVersion}},
		{"truncated", good[:len(good)-1]},
		{"string longer than input", []byte{metaVersion, 0, 0, 0, 50, 'x'}},
		{"bad varint", []byte{metaVersion, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		if _, err := DecodeMeta(tt.in); !errors.Is(err, ErrBadMeta) {
			t.Errorf("%s: err = %v, want ErrBadMeta", tt.name, err)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	b, _ := EncodeMeta(Meta{Version: "1", Roles: []string{"voter"}, Tags: map[string]string{"a": "b"}, Load: 1.5})
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{metaVersion, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, leaving, err := decodeMeta(in)
		if err != nil {
			return
		}
		// Whatever decodes must encode again (unless it is too large) and decode to the same.
		out, err := encodeMeta(m, leaving)
		if err != nil {
			return
		}
		m2, leaving2, err := decodeMeta(out)
		if err != nil || !metaEqual(m, m2) || leaving != leaving2 {
			t.Fatalf("re-encoding %+v gave %+v, %v", m, m2, err)
		}
	})
}

func TestMetaChanged(t *testing.T) {
	base := Meta{Version: "1", Roles: []string{"voter"}, Tags: map[string]string{"a": "b"}, Load: 0.50}
	tests := []struct {
		name string
		mod  func(*Meta)
		want bool
	}{
		{"nothing", func(*Meta) {}, false},
		{"small load change", func(m *Meta) { m.Load = 0.54 }, false},
		{"load change of 0.05", func(m *Meta) { m.Load = 0.55 }, true},
		{"load drop", func(m *Meta) { m.Load = 0.40 }, true},
		{"tag", func(m *Meta) { m.Tags = map[string]string{"a": "c"} }, true},
		{"nil vs empty tags", func(m *Meta) { m.Tags = map[string]string{"a": "b"} }, false},
		{"role", func(m *Meta) { m.Roles = nil }, true},
		{"health", func(m *Meta) { m.Health = 1 }, true},
		{"config hash", func(m *Meta) { m.ConfigHash = "x" }, true},
	}
	for _, tt := range tests {
		next := base.clone()
		tt.mod(&next)
		if got := metaChanged(base, next); got != tt.want {
			t.Errorf("%s: metaChanged = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMetaLogStreamsFlag(t *testing.T) {
	// Every agent of this version says it applies ordered log streams, whatever the field.
	b, err := EncodeMeta(Meta{Version: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := DecodeMeta(b); err != nil || !m.LogStreams {
		t.Errorf("decoded %+v, %v: want LogStreams", m, err)
	}
	// An earlier version's metadata has no such flag.
	b[1] &^= metaFlagLogStreams
	if m, err := DecodeMeta(b); err != nil || m.LogStreams {
		t.Errorf("without the flag: %+v, %v", m, err)
	}
}
