package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/picket-dev/picket/internal/config"
	"github.com/picket-dev/picket/internal/logstore"
)

var fsmNow = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

func newTestFSM(t *testing.T) *fsm {
	t.Helper()
	st, err := logstore.Open(t.TempDir(), config.Retention{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return newFSM(st, slog.New(slog.DiscardHandler))
}

// fsmApply applies a command as raft would, at the given index and term.
func fsmApply(t *testing.T, f *fsm, index, term uint64, cmd Command) cmdResult {
	t.Helper()
	data, err := encodeJSONCommand(cmd.commandKind(), fsmNow, cmd)
	if err != nil {
		t.Fatal(err)
	}
	res, ok := f.Apply(&raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: data}).(cmdResult)
	if !ok {
		t.Fatalf("Apply(%T) gave no cmdResult", cmd)
	}
	return res
}

func fsmApplyLogs(t *testing.T, f *fsm, index uint64, groups ...LogGroup) []groupResult {
	t.Helper()
	data, err := encodeLogs(nil, fsmNow, groups)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).([]groupResult)
	return res
}

func TestLogCodecRoundTrip(t *testing.T) {
	groups := []LogGroup{
		{Key: "n1/k1", Records: []logstore.Record{
			{Node: "n1", Seq: 1, Level: "info", Message: "hello", Time: fsmNow, Attrs: map[string]string{"a": "1", "b": ""}},
			{Node: "n1", Seq: 2, Level: "error", Message: ""},
		}},
		{Records: []logstore.Record{{Node: "n2", Seq: 1 << 60, Level: "debug", Message: "ünïcode", Time: time.Unix(0, -5).UTC()}}},
		{Key: "empty"},
	}
	data, err := encodeLogs(nil, fsmNow, groups)
	if err != nil {
		t.Fatal(err)
	}
	if data[0] != cmdLogs {
		t.Fatalf("kind %d", data[0])
	}
	now, got, err := decodeLogs(data[1:])
	if err != nil {
		t.Fatal(err)
	}
	if !now.Equal(fsmNow) {
		t.Errorf("now %v, want %v", now, fsmNow)
	}
	groups[2].Records = []logstore.Record{}
	if !reflect.DeepEqual(got, groups) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, groups)
	}
	// Every truncation is an error, never a panic or a silent success.
	for i := range len(data) - 1 {
		if _, _, err := decodeLogs(data[1 : i+1]); !errors.Is(err, errBadCommand) {
			t.Fatalf("decode of %d/%d bytes: err %v, want errBadCommand", i, len(data)-1, err)
		}
	}
	if _, err := encodeLogs(nil, fsmNow, []LogGroup{{Records: []logstore.Record{{Node: "n", Seq: 1, Level: "WARNING"}}}}); !errors.Is(err, logstore.ErrInvalid) {
		t.Errorf("non-canonical level: err %v, want ErrInvalid", err)
	}
}

func FuzzDecodeLogs(f *testing.F) {
	data, _ := encodeLogs(nil, fsmNow, []LogGroup{{Key: "k", Records: testRecords("n1", 1, 3)}})
	f.Add(data[1:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		now, groups, err := decodeLogs(b)
		if err != nil {
			return
		}
		again, err := encodeLogs(nil, now, groups)
		if err != nil {
			t.Fatalf("decoded groups do not encode: %v", err)
		}
		_, groups2, err := decodeLogs(again[1:])
		if err != nil || !reflect.DeepEqual(groups, groups2) {
			t.Fatalf("re-encoding changed the groups: %v", err)
		}
	})
}

func TestFSMRegistry(t *testing.T) {
	f := newTestFSM(t)
	steps := []struct {
		cmd     Command
		wantErr error
	}{
		{RegisterName{Name: "db", Owner: "n1", Value: "10.0.0.1:5432"}, nil},
		{RegisterName{Name: "db", Owner: "n2", Value: "x"}, ErrNameTaken},
		{RegisterName{Name: "db", Owner: "n1", Value: "10.0.0.1:5433"}, nil}, // same owner updates
		{RegisterName{Name: "cache", Owner: "n2", Value: "c"}, nil},
		{RegisterName{Name: "queue", Owner: "n2", Value: "q"}, nil},
		{UnregisterName{Name: "db", Owner: "n2"}, ErrNotOwner},
		{UnregisterName{Name: "nope", Owner: "n1"}, ErrUnknownName},
		{UnregisterName{Name: "cache", Owner: "n2"}, nil},
		{RegisterName{Name: "cache", Owner: "n3", Value: "c3"}, nil},
		{UnregisterName{Name: "cache"}, nil}, // no owner: whoever holds it
	}
	for i, s := range steps {
		res := fsmApply(t, f, uint64(i+1), 1, s.cmd)
		if !errors.Is(res.err, s.wantErr) || (s.wantErr == nil && res.err != nil) {
			t.Fatalf("step %d %+v: err %v, want %v", i, s.cmd, res.err, s.wantErr)
		}
	}
	reg, ok := f.whereis("db")
	if !ok || reg.Owner != "n1" || reg.Value != "10.0.0.1:5433" || reg.Index != 3 || !reg.Since.Equal(fsmNow) {
		t.Errorf("whereis db = %+v, %v", reg, ok)
	}
	if _, ok := f.whereis("cache"); ok {
		t.Error("cache still registered")
	}
	res := fsmApply(t, f, 20, 1, ReleaseOwner{Owner: "n2"})
	if got, _ := res.value.([]string); !reflect.DeepEqual(got, []string{"queue"}) || res.err != nil {
		t.Errorf("release n2 = %v, %v", res.value, res.err)
	}
	names := f.names()
	if len(names) != 1 || names[0].Name != "db" {
		t.Errorf("names = %+v", names)
	}
}

func TestFSMAssignFencing(t *testing.T) {
	f := newTestFSM(t)
	steps := []struct {
		entryTerm uint64
		cmd       Assign
		wantErr   error
	}{
		{3, Assign{Term: 3, Nodes: map[string][]string{"api": {"n1"}, "db": {"n2"}}}, nil},
		{3, Assign{Term: 2, Nodes: map[string][]string{"api": {"n9"}}}, ErrStaleTerm}, // decided in an older term
		{4, Assign{Term: 3, Nodes: map[string][]string{"api": {"n9"}}}, ErrStaleTerm}, // proposer lost leadership meanwhile
		{5, Assign{Nodes: map[string][]string{"api": {"n3"}}}, nil},                   // term 0: the entry's term
		{5, Assign{Term: 4, Nodes: map[string][]string{"db": {"n9"}}}, ErrStaleTerm},  // below the stored term
		{6, Assign{Term: 6, Nodes: map[string][]string{"db": nil}}, nil},              // empty list removes
	}
	for i, s := range steps {
		res := fsmApply(t, f, uint64(i+1), s.entryTerm, s.cmd)
		if !errors.Is(res.err, s.wantErr) || (s.wantErr == nil && res.err != nil) {
			t.Fatalf("step %d: err %v, want %v", i, res.err, s.wantErr)
		}
	}
	got, term := f.assignments()
	want := map[string]CheckAssignment{"api": {Nodes: []string{"n3"}, Term: 5}}
	if !reflect.DeepEqual(got, want) || term != 6 {
		t.Errorf("assignments = %+v (term %d), want %+v (term 6)", got, term, want)
	}
}

func TestFSMChecksAndCursor(t *testing.T) {
	f := newTestFSM(t)
	changed := f.stateChanged()
	def := json.RawMessage(`{"name":"api","type":"tcp","tcp":{"address":"127.0.0.1:1"}}`)
	if res := fsmApply(t, f, 1, 1, PutCheck{Name: "api", Definition: def}); res.err != nil {
		t.Fatal(res.err)
	}
	select {
	case <-changed:
	default:
		t.Error("StateChanged did not fire on PutCheck")
	}
	fsmApply(t, f, 2, 1, Assign{Term: 1, Nodes: map[string][]string{"api": {"n1"}}})
	if got := f.checks(); !bytes.Equal(got["api"], def) {
		t.Errorf("checks = %s", got)
	}
	if res := fsmApply(t, f, 3, 1, DeleteCheck{Name: "api"}); res.value != true {
		t.Errorf("delete existing check = %v", res.value)
	}
	if a, _ := f.assignments(); len(a) != 0 || len(f.checks()) != 0 {
		t.Errorf("after delete: checks %v, assignments %v", f.checks(), a)
	}
	for i, c := range []struct{ set, want uint64 }{{10, 10}, {5, 10}, {12, 12}} {
		res := fsmApply(t, f, uint64(10+i), 1, AdvanceExportCursor{Index: c.set})
		if res.value != c.want || f.exportCursor() != c.want {
			t.Errorf("advance to %d: %v, cursor %d; want %d", c.set, res.value, f.exportCursor(), c.want)
		}
	}
}

func TestCommandValidation(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), MaxNameBytes+1))
	for _, cmd := range []Command{
		RegisterName{Name: "", Owner: "n1"},
		RegisterName{Name: "a/b", Owner: "n1"},
		RegisterName{Name: "a b", Owner: "n1"},
		RegisterName{Name: long, Owner: "n1"},
		RegisterName{Name: "ok", Owner: ""},
		RegisterName{Name: "ok", Owner: "n1", Value: string(make([]byte, MaxValueBytes+1))},
		PutCheck{Name: "api", Definition: json.RawMessage(`{`)},
		Assign{Nodes: map[string][]string{"api": {""}}},
		ReleaseOwner{},
	} {
		if err := cmd.validate(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%+v: err %v, want ErrInvalidCommand", cmd, err)
		}
	}
}

func TestFSMLogGroups(t *testing.T) {
	f := newTestFSM(t)
	res := fsmApplyLogs(t, f, 1,
		LogGroup{Records: testRecords("n1", 1, 3)},
		LogGroup{Key: "n2/k", Records: testRecords("n2", 1, 2)},
	)
	if len(res) != 2 || res[0].applied.Accepted != 3 || res[1].applied.Accepted != 2 || res[0].applied.New["info"] != 3 {
		t.Fatalf("first batch: %+v", res)
	}
	// A retry of the same seqs adds nothing; the same key with new seqs replays its count.
	res = fsmApplyLogs(t, f, 2,
		LogGroup{Records: testRecords("n1", 1, 4)},
		LogGroup{Key: "n2/k", Records: testRecords("n2", 3, 5)},
	)
	if res[0].applied.Accepted != 1 || !res[1].applied.Replay || res[1].applied.Accepted != 2 || len(res[1].applied.New) != 0 {
		t.Fatalf("retry batch: %+v", res)
	}
	if got := len(allRecords(t, f.store)); got != 6 {
		t.Errorf("%d records stored, want 6", got)
	}
	// An undecodable entry is skipped, not fatal.
	if got := f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: []byte{cmdLogs, 0xff}}); got != nil {
		if gr, ok := got.([]groupResult); !ok || len(gr) != 0 {
			t.Errorf("bad entry gave %v", got)
		}
	}
}

// fsmMemSink is a raft.SnapshotSink in memory.
type fsmMemSink struct {
	bytes.Buffer
	cancelled, closed bool
}

func (s *fsmMemSink) ID() string    { return "mem" }
func (s *fsmMemSink) Cancel() error { s.cancelled = true; return nil }
func (s *fsmMemSink) Close() error  { s.closed = true; return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := newTestFSM(t)
	fsmApply(t, f, 1, 2, RegisterName{Name: "db", Owner: "n1", Value: "v"})
	fsmApply(t, f, 2, 2, PutCheck{Name: "api", Definition: json.RawMessage(`{"name":"api"}`)})
	fsmApply(t, f, 3, 2, Assign{Term: 2, Nodes: map[string][]string{"api": {"n1", "n2"}}})
	fsmApply(t, f, 4, 2, AdvanceExportCursor{Index: 7})
	fsmApplyLogs(t, f, 5, LogGroup{Key: "n1/k", Records: testRecords("n1", 1, 100)})

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot are not in it.
	fsmApply(t, f, 6, 2, RegisterName{Name: "late", Owner: "n1"})
	fsmApplyLogs(t, f, 7, LogGroup{Records: testRecords("n1", 101, 5)})
	var sink fsmMemSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v (closed %v)", err, sink.closed)
	}
	snap.Release()

	g := newTestFSM(t)
	fsmApply(t, g, 1, 1, RegisterName{Name: "stale", Owner: "x"}) // replaced by the restore
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.whereis("stale"); ok {
		t.Error("restore kept old state")
	}
	if _, ok := g.whereis("late"); ok {
		t.Error("restore has a name registered after the snapshot")
	}
	if reg, ok := g.whereis("db"); !ok || reg.Value != "v" || reg.Index != 1 {
		t.Errorf("db after restore = %+v, %v", reg, ok)
	}
	a, term := g.assignments()
	if term != 2 || !reflect.DeepEqual(a["api"].Nodes, []string{"n1", "n2"}) || g.exportCursor() != 7 || len(g.checks()) != 1 {
		t.Errorf("after restore: assignments %v term %d cursor %d checks %v", a, term, g.exportCursor(), g.checks())
	}
	if got := len(allRecords(t, g.store)); got != 100 {
		t.Errorf("%d records after restore, want 100", got)
	}
	// Replaying the log after the snapshot gives the same store as the original.
	fsmApplyLogs(t, g, 7, LogGroup{Records: testRecords("n1", 101, 5)})
	if !reflect.DeepEqual(allRecords(t, g.store), allRecords(t, f.store)) {
		t.Error("restored + replayed store differs from the original")
	}
	// The key survived the snapshot: a retried keyed group is still a no-op.
	if res := fsmApplyLogs(t, g, 8, LogGroup{Key: "n1/k", Records: testRecords("n1", 200, 1)}); !res[0].applied.Replay {
		t.Errorf("key lost in snapshot: %+v", res)
	}

	// Damage is refused and leaves the state alone.
	bad := bytes.Clone(sink.Bytes())
	bad[len(fsmSnapshotMagic)+9] ^= 0xff
	if err := g.Restore(io.NopCloser(bytes.NewReader(bad))); !errors.Is(err, logstore.ErrCorrupt) {
		t.Errorf("damaged snapshot: err %v, want ErrCorrupt", err)
	}
	if _, ok := g.whereis("db"); !ok {
		t.Error("failed restore changed the state")
	}
}

// BenchmarkFSMApplyLogs measures what each voter does per committed log entry: decode
// the command and store the records. b.N counts records.
func BenchmarkFSMApplyLogs(b *testing.B) {
	st, err := logstore.Open(b.TempDir(), config.Default().Logs.Retention)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	f := newFSM(st, slog.New(slog.DiscardHandler))
	const per = 2048
	msg := string(bytes.Repeat([]byte("x"), 216))
	recs := make([]logstore.Record, per)
	seq := uint64(1)
	b.ReportAllocs()
	for i := 0; i < b.N; i += per {
		for j := range recs {
			recs[j] = logstore.Record{Node: "n1", Seq: seq, Level: "info", Message: msg, Time: fsmNow, Attrs: map[string]string{"k": "v"}}
			seq++
		}
		data, err := encodeLogs(nil, fsmNow, []LogGroup{{Records: recs}})
		if err != nil {
			b.Fatal(err)
		}
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
	}
}
