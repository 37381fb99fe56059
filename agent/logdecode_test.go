package agent

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/api"
)

// logBodies are POST /v1/logs bodies of every kind: the usual shape, which the fast
// decoder takes, and the others, which it must leave to encoding/json.
var logBodies = []struct {
	body string
	fast bool // fastLogRecords takes it
}{
	{`[]`, true},
	{` [ ] `, true},
	{"\n[{\"level\":\"info\",\"message\":\"m\"}]\r\n\t", true},
	{`[{"level":"info","message":"disk full","attrs":{"k":"v","k2":""},"time":"2026-01-02T15:04:05.123Z"}]`, true},
	{`[{"time":"2026-01-02T15:04:05+02:00","message":"a"},{"level":"WARNING","message":"b","attrs":{}}]`, true},
	{`[{}]`, true},
	{`[{"message":"esc \" \\ \/ \b \f \n \r \t \u0041 \u00e9 \u20ac \u0000 end"}]`, true},
	{`[{"message":"ünïcødé ✓ 日本"}]`, true},
	{`[{"mess\u0061ge":"key with an escape"}]`, true},
	{`[{"attrs":{"a":"1","a":"2"}}]`, true}, // last value wins, as in encoding/json
	{`[{"message":"<html> & \u003c"}]`, true},

	// Left to encoding/json: its own results or errors.
	{``, false},
	{`null`, false},
	{`[null]`, false},
	{`[{"message":null,"level":null,"attrs":null,"time":null}]`, true},
	{`[{"time":"0001-01-01T00:00:00Z","level":"info","message":"m","attrs":null}]`, true},
	{`[{"message":null,"message":"x"}]`, false},
	{`[{"message":nul}]`, false},
	{`[{"message":nullx}]`, false},
	{`[{"extra":null}]`, false},
	{`[{"Message":"case-insensitive key"}]`, false},
	{`[{"MESSAGE":"x"}]`, false},
	{"[{\"me\u017f\u017fage\":\"long s folds to s\"}]", false},
	{`[{"message":"a","message":"b"}]`, false},
	{`[{"attrs":{"a":"1"},"attrs":{"b":"2"}}]`, false},
	{`[{"message":"x","extra":1}]`, false},
	{`[{"message":1}]`, false},
	{`[{"attrs":{"a":1}}]`, false},
	{`[{"time":"yesterday"}]`, false},
	{`[{"time":"2026-01-02T15:04:05\u005a"}]`, false},
	{`[{"message":"\ud83d\ude00 surrogate pair"}]`, false},
	{`[{"message":"\ud800 lone surrogate"}]`, false},
	{"[{\"message\":\"bad \xff utf-8\"}]", false},
	{"[{\"message\":\"bad \xff\\n utf-8 with an escape\"}]", false},
	{"[{\"message\":\"tab\tinside\"}]", false},
	{`[{"message":"\x"}]`, false},
	{`[{"message":"\u12"}]`, false},
	{`[{"message":"\u+123"}]`, false},
	{`[{"message":"unterminated}]`, false},
	{`[{"message":"a"}`, false},
	{`[{"message":"a"},]`, false},
	{`[{"message":"a"}] x`, false},
	{`[]]`, false}, // encoding/json's Decoder.More takes this as the end
	{`[] []`, false},
	{`{"message":"not an array"}`, false},
	{`"string"`, false},
	{`[1, 2]`, false},
	{`[[]]`, false},
}

func TestDecodeLogRecordsMatchesEncodingJSON(t *testing.T) {
	for _, tc := range logBodies {
		_, fast := fastLogRecords([]byte(tc.body))
		if fast != tc.fast {
			t.Errorf("%q: fast path %v, want %v", tc.body, fast, tc.fast)
		}
		checkLogDecodeEquivalence(t, []byte(tc.body))
	}
}

func TestDecodeLogRecordsValues(t *testing.T) {
	got, err := decodeLogRecords([]byte(`[{"level":"info","message":"m \u00e9\n","attrs":{"k":"v"},"time":"2026-01-02T15:04:05.5Z"},{"message":"x"}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []api.LogRecord{
		{Level: "info", Message: "m é\n", Attrs: map[string]string{"k": "v"}, Time: time.Date(2026, 1, 2, 15, 4, 5, 5e8, time.UTC)},
		{Message: "x"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// What the bench and the CLI send: json.Marshal of records, HTML escaping included.
	recs := []api.LogRecord{{Level: "warn", Message: strings.Repeat("<&>\"", 64), Attrs: map[string]string{"a": "b"}}}
	body, _ := json.Marshal(recs)
	if _, ok := fastLogRecords(body); !ok {
		t.Errorf("json.Marshal output %s not taken by the fast path", body)
	}
	checkLogDecodeEquivalence(t, body)
}

// checkLogDecodeEquivalence checks decodeLogRecords against encoding/json (decodeStrict)
// on body: both fail, or both give the same records.
func checkLogDecodeEquivalence(t *testing.T, body []byte) {
	t.Helper()
	var want []api.LogRecord
	werr := decodeStrict(body, &want)
	got, gerr := decodeLogRecords(body)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("%q: error %v, encoding/json %v", body, gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %#v\nwant %#v", body, got, want)
	}
	if werr != nil && gerr.Error() != werr.Error() {
		t.Fatalf("%q: error %q, encoding/json %q", body, gerr, werr)
	}
	if fast, ok := fastLogRecords(body); ok && (werr != nil || !reflect.DeepEqual(fast, want)) {
		t.Fatalf("%q: fast path took it as %#v; encoding/json: %#v, %v", body, fast, want, werr)
	}
}

func FuzzDecodeLogRecords(f *testing.F) {
	for _, tc := range logBodies {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkLogDecodeEquivalence(t, body)
	})
}

func BenchmarkDecodeLogRecords(b *testing.B) {
	// The P7 bench's body: 64 records of level and a 256-byte message.
	type rec struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	recs := make([]rec, 64)
	for i := range recs {
		recs[i] = rec{Level: "info", Message: strings.Repeat("x", 256)}
	}
	body, _ := json.Marshal(recs)
	if _, ok := fastLogRecords(body); !ok {
		b.Fatal("not taken by the fast path")
	}
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeLogRecords(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var out []api.LogRecord
			if err := decodeStrict(body, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestPlainWordMatchesTable(t *testing.T) {
	check := func(b []byte) {
		want := true
		for _, c := range b {
			want = want && plainByte[c]
		}
		if got := plainWord(binary.LittleEndian.Uint64(b)); got != want {
			t.Fatalf("plainWord(%q) = %v, want %v", b, got, want)
		}
	}
	// Every byte value at every position among plain bytes, and next to each other.
	for pos := range 8 {
		for c := range 256 {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			check(b)
			for c2 := range 256 {
				b[(pos+1)%8] = byte(c2)
				check(b)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		b := binary.LittleEndian.AppendUint64(nil, r.Uint64())
		check(b)
	}
}
