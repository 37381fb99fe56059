package cluster

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/raft"

	"github.com/picket-dev/picket/internal/logstore"
)

// Limits of the replicated registry and check definitions.
const (
	MaxNameBytes       = 256       // registry name, owner, check name
	MaxValueBytes      = 64 << 10  // registry value
	MaxCheckJSONBytes  = 256 << 10 // one check definition
	maxAssignmentNodes = 1024
)

// LogGroup is one unit of log ingestion: records that one agent queued, in increasing
// seq order per node, with an optional idempotency key. A group with a key that was
// already committed (within the log store's key window) is a no-op that reports the
// first commit's count.
type LogGroup struct {
	// Key is the client's Idempotency-Key; Raft.AppendLogs namespaces it by the sending
	// node. Empty: no key.
	Key     string
	Records []logstore.Record
}

// StreamPos places a call in its sender's ordered stream of log calls, so that a
// sender (a Shipper) may have several calls in flight without a later call ever being
// committed while an earlier one is not. That matters because the log store drops a
// node's records whose seq is not above the highest it holds: were a later call
// committed first, the retry of the earlier one would be dropped as duplicates, and
// its records lost.
//
// A sender numbers its calls 1, 2, 3, ... (Pos) within an epoch, a number unique for
// the node that it picks afresh whenever it starts over (at the latest after a failed
// call, once every call in flight has returned). Every voter applies a call with Pos 1
// unconditionally, and the node's stream continues from it; a call with a higher Pos
// only when the node's last applied call is (Epoch, Pos-1). Any other call is refused
// as a whole with ErrOutOfOrder: none of its groups is applied, and it is safe to send
// its records again. The zero StreamPos is an unordered call, applied unconditionally,
// for senders with one call in flight at a time.
type StreamPos struct {
	Epoch uint64 `json:"epoch"`
	Pos   uint64 `json:"pos"`
}

// follows reports whether a call at p may be applied when the node's stream is at last.
func (p StreamPos) follows(last StreamPos) bool {
	return p.Pos == 1 || p.Epoch == last.Epoch && p.Pos == last.Pos+1
}

// Registration is one global name (DESIGN.md §2: :global.register_name).
type Registration struct {
	Name  string `json:"name"`
	Owner string `json:"owner"` // node name of the holder; its names are released when it dies
	Value string `json:"value"`
	// Since is the leader's clock when the name was first registered by this owner.
	Since time.Time `json:"since"`
	// Index is the Raft index of the last register command that wrote it.
	Index uint64 `json:"index"`
}

// CheckAssignment is where a cluster check runs, with the Raft term of the leader that
// decided it.
type CheckAssignment struct {
	Nodes []string `json:"nodes"`
	Term  uint64   `json:"term"`
}

// Command is one change to the replicated state other than log records, committed with
// Raft.ApplyCommand. The concrete types are PutCheck, DeleteCheck, Assign,
// AdvanceExportCursor, RegisterName, UnregisterName and ReleaseOwner; each documents the
// value ApplyCommand returns for it.
type Command interface {
	commandKind() byte
	validate() error
}

// PutCheck stores (or replaces) a cluster check definition. Definition is the check's
// JSON as config.DecodeCheckJSON accepts it; it is stored verbatim (secrets included), so
// decode and validate it before committing. Result: nil.
type PutCheck struct {
	Name       string          `json:"name"`
	Definition json.RawMessage `json:"definition"`
}

// DeleteCheck removes a check definition and its assignment. Result: true when it existed.
type DeleteCheck struct {
	Name string `json:"name"`
}

// Assign sets the nodes of the given checks (an empty list removes the check's
// assignment); checks not named keep theirs. It is fenced by Raft term: Term is the term
// in which the leader made the decision (0 means the term of the log entry). A command
// whose Term is below the highest term any Assign committed with, or below the term of
// its own log entry (the proposer lost leadership between deciding and proposing), is
// ignored as a whole and ApplyCommand returns ErrStaleTerm. Result: nil.
type Assign struct {
	Term  uint64              `json:"term"`
	Nodes map[string][]string `json:"nodes"`
}

// AdvanceExportCursor moves the replicated OTLP export cursor (a log store index: every
// record up to it was exported) forward; a lower value leaves it unchanged. Result: the
// cursor after the command (uint64).
type AdvanceExportCursor struct {
	Index uint64 `json:"index"`
}

// RegisterName claims a global name for Owner. Registering a name the same owner holds
// updates its value; a name another owner holds fails with ErrNameTaken.
// Result: the Registration.
type RegisterName struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
	Value string `json:"value"`
}

// UnregisterName releases a name. It fails with ErrUnknownName when nobody holds it and
// with ErrNotOwner when Owner is not empty and another owner holds it (an empty Owner
// releases whoever holds it). Result: the released Registration.
type UnregisterName struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

// ReleaseOwner releases every name Owner holds (the leader sends it when the owner has
// been dead or gone for longer than the failure-detection time). Result: the released
// names ([]string, sorted).
type ReleaseOwner struct {
	Owner string `json:"owner"`
}

func (PutCheck) commandKind() byte            { return cmdPutCheck }
func (DeleteCheck) commandKind() byte         { return cmdDeleteCheck }
func (Assign) commandKind() byte              { return cmdAssign }
func (AdvanceExportCursor) commandKind() byte { return cmdExportCursor }
func (RegisterName) commandKind() byte        { return cmdRegister }
func (UnregisterName) commandKind() byte      { return cmdUnregister }
func (ReleaseOwner) commandKind() byte        { return cmdReleaseOwner }

// ErrInvalidCommand marks a command refused before it is proposed (bad name, too large).
var ErrInvalidCommand = errors.New("invalid command")

// checkName reports whether s is usable as a registry name, owner or check name: 1 to
// MaxNameBytes bytes of printable UTF-8 without '/' or white space.
func checkCommandName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidCommand, what)
	case len(s) > MaxNameBytes:
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrInvalidCommand, what, len(s), MaxNameBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalidCommand, what, s)
	case strings.ContainsFunc(s, func(r rune) bool { return r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) }):
		return fmt.Errorf("%w: %s %q contains '/', white space or a control character", ErrInvalidCommand, what, s)
	}
	return nil
}

func (c PutCheck) validate() error {
	if err := checkCommandName("check name", c.Name); err != nil {
		return err
	}
	if len(c.Definition) > MaxCheckJSONBytes {
		return fmt.Errorf("%w: check %s definition is %d bytes, the limit is %d", ErrInvalidCommand, c.Name, len(c.Definition), MaxCheckJSONBytes)
	}
	if !json.Valid(c.Definition) {
		return fmt.Errorf("%w: check %s definition is not valid JSON", ErrInvalidCommand, c.Name)
	}
	return nil
}

func (c DeleteCheck) validate() error { return checkCommandName("check name", c.Name) }

func (c Assign) validate() error {
	for check, nodes := range c.Nodes {
		if err := checkCommandName("check name", check); err != nil {
			return err
		}
		if len(nodes) > maxAssignmentNodes {
			return fmt.Errorf("%w: check %s is assigned to %d nodes, the limit is %d", ErrInvalidCommand, check, len(nodes), maxAssignmentNodes)
		}
		for _, n := range nodes {
			if n == "" {
				return fmt.Errorf("%w: check %s is assigned to an empty node name", ErrInvalidCommand, check)
			}
		}
	}
	return nil
}

func (AdvanceExportCursor) validate() error { return nil }

func (c RegisterName) validate() error {
	if err := checkCommandName("registry name", c.Name); err != nil {
		return err
	}
	if err := checkCommandName("registry owner", c.Owner); err != nil {
		return err
	}
	if len(c.Value) > MaxValueBytes {
		return fmt.Errorf("%w: value of %s is %d bytes, the limit is %d", ErrInvalidCommand, c.Name, len(c.Value), MaxValueBytes)
	}
	return nil
}

func (c UnregisterName) validate() error { return checkCommandName("registry name", c.Name) }

func (c ReleaseOwner) validate() error { return checkCommandName("registry owner", c.Owner) }

// fsmState is the replicated state besides the log store; it travels in snapshots as JSON.
type fsmState struct {
	Names        map[string]Registration    `json:"names"`
	Checks       map[string]json.RawMessage `json:"checks"`
	Assignments  map[string]CheckAssignment `json:"assignments"`
	AssignTerm   uint64                     `json:"assign_term"`
	ExportCursor uint64                     `json:"export_cursor"`
	// Streams is, by sending node, the last log call applied from its ordered stream
	// (see StreamPos). Only Apply, Snapshot and Restore use it (raft's FSM goroutine).
	Streams map[string]StreamPos `json:"streams,omitempty"`
	// Applied is the index of the last command applied when the snapshot was taken.
	Applied uint64 `json:"applied"`
}

func newFSMState() fsmState {
	return fsmState{
		Names:       map[string]Registration{},
		Checks:      map[string]json.RawMessage{},
		Assignments: map[string]CheckAssignment{},
		Streams:     map[string]StreamPos{},
	}
}

// clone copies the maps; their values are never modified in place, only replaced.
func (s *fsmState) clone() fsmState {
	c := *s
	c.Names = maps.Clone(s.Names)
	c.Checks = maps.Clone(s.Checks)
	c.Assignments = maps.Clone(s.Assignments)
	c.Streams = maps.Clone(s.Streams)
	return c
}

// cmdResult is what Apply returns for a non-log command.
type cmdResult struct {
	value any
	err   error
}

// groupResult is what Apply returns for each group of a log command.
type groupResult struct {
	applied logstore.Applied
	err     error
}

// fsm is picket's raft.FSM: the cluster log store plus the registry, check definitions,
// assignments and export cursor. Raft calls Apply, Snapshot and Restore from one
// goroutine; the read methods are safe to call concurrently with them.
//
// Apply is deterministic: it uses the time carried in the command (the leader's clock
// at proposal) and the entry's index and term, never the local clock.
type fsm struct {
	store *logstore.Store
	log   *slog.Logger

	mu      sync.RWMutex
	st      fsmState
	changed chan struct{} // closed at the next change of st

	sinceSnapshot atomic.Int64  // command bytes applied since the last snapshot
	applied       atomic.Uint64 // index of the last command this FSM applied (raft's own
	// AppliedIndex counts entries handed to the FSM goroutine, which may not be applied yet)
	lastLogs atomic.Int64 // leader time (unix nanos) of the last log command applied
}

func newFSM(store *logstore.Store, logger *slog.Logger) *fsm {
	return &fsm{store: store, log: logger, st: newFSMState(), changed: make(chan struct{})}
}

var _ raft.FSM = (*fsm)(nil)

// Apply applies one committed entry.
func (f *fsm) Apply(l *raft.Log) any {
	defer f.applied.Store(l.Index)
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	f.sinceSnapshot.Add(int64(len(l.Data)))
	kind, body := l.Data[0], l.Data[1:]
	if kind == cmdLogs || kind == cmdLogCalls {
		return f.applyLogs(l.Index, kind, body)
	}
	res := f.applyCommand(l, kind, body)
	if res.err != nil && errors.Is(res.err, errBadCommand) {
		f.log.Error("raft entry could not be decoded and was skipped (a bug or agents of different versions)",
			"index", l.Index, "kind", kind, "err", res.err)
	}
	return res
}

func (f *fsm) applyLogs(index uint64, kind byte, body []byte) []groupResult {
	var now time.Time
	var calls []logCall
	var err error
	if kind == cmdLogCalls {
		now, calls, err = decodeLogCalls(body)
	} else {
		var groups []LogGroup
		now, groups, err = decodeLogs(body)
		calls = []logCall{{groups: groups}}
	}
	if err != nil {
		f.log.Error("raft log batch could not be decoded and was skipped (a bug or agents of different versions)",
			"index", index, "err", err)
		return nil
	}
	f.lastLogs.Store(now.UnixNano())
	var out []groupResult
	for i := range calls {
		c := &calls[i]
		if c.stream != (StreamPos{}) {
			f.mu.Lock()
			last := f.st.Streams[c.node]
			ok := c.stream.follows(last)
			if ok {
				f.st.Streams[c.node] = c.stream
			}
			f.mu.Unlock()
			if !ok {
				err := fmt.Errorf("%w: call %d of epoch %d from %s, but its last applied call is %d of epoch %d",
					ErrOutOfOrder, c.stream.Pos, c.stream.Epoch, c.node, last.Pos, last.Epoch)
				for range c.groups {
					out = append(out, groupResult{err: err})
				}
				continue
			}
		}
		for _, g := range c.groups {
			a, err := f.store.ApplyBatch(logstore.Batch{Records: g.Records, IdempotencyKey: g.Key, Now: now})
			if err != nil {
				// A disk error leaves this voter's store behind the others'. Its next
				// snapshot restore (or a restart, which rebuilds from Raft) repairs it.
				f.log.Error("log batch not stored on this voter", "index", index, "records", len(g.Records), "err", err)
			}
			out = append(out, groupResult{applied: a, err: err})
		}
	}
	if len(out) == 0 {
		// The leader's periodic empty batch: retention by age, judged at its clock.
		if _, err := f.store.ApplyBatch(logstore.Batch{Now: now}); err != nil {
			f.log.Error("log retention not applied on this voter", "index", index, "err", err)
		}
		return nil
	}
	return out
}

func (f *fsm) applyCommand(l *raft.Log, kind byte, body []byte) cmdResult {
	var cmd Command
	switch kind {
	case cmdPutCheck:
		cmd = &PutCheck{}
	case cmdDeleteCheck:
		cmd = &DeleteCheck{}
	case cmdAssign:
		cmd = &Assign{}
	case cmdExportCursor:
		cmd = &AdvanceExportCursor{}
	case cmdRegister:
		cmd = &RegisterName{}
	case cmdUnregister:
		cmd = &UnregisterName{}
	case cmdReleaseOwner:
		cmd = &ReleaseOwner{}
	default:
		return cmdResult{err: fmt.Errorf("%w: unknown kind %d", errBadCommand, kind)}
	}
	now, err := decodeJSONCommand(body, cmd)
	if err != nil {
		return cmdResult{err: err}
	}
	if err := cmd.validate(); err != nil {
		return cmdResult{err: err}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.applyLocked(l, now, cmd)
	if res.err == nil {
		close(f.changed)
		f.changed = make(chan struct{})
	}
	return res
}

func (f *fsm) applyLocked(l *raft.Log, now time.Time, cmd Command) cmdResult {
	st := &f.st
	switch c := cmd.(type) {
	case *PutCheck:
		st.Checks[c.Name] = slices.Clone(c.Definition)
		return cmdResult{}
	case *DeleteCheck:
		_, ok := st.Checks[c.Name]
		delete(st.Checks, c.Name)
		delete(st.Assignments, c.Name)
		return cmdResult{value: ok}
	case *Assign:
		term := c.Term
		if term == 0 {
			term = l.Term
		}
		if term < st.AssignTerm || term < l.Term {
			return cmdResult{err: fmt.Errorf("%w: assignment decided in term %d, but term %d already assigned checks (entry term %d)",
				ErrStaleTerm, term, st.AssignTerm, l.Term)}
		}
		st.AssignTerm = term
		for check, nodes := range c.Nodes {
			if len(nodes) == 0 {
				delete(st.Assignments, check)
				continue
			}
			st.Assignments[check] = CheckAssignment{Nodes: slices.Clone(nodes), Term: term}
		}
		return cmdResult{}
	case *AdvanceExportCursor:
		st.ExportCursor = max(st.ExportCursor, c.Index)
		return cmdResult{value: st.ExportCursor}
	case *RegisterName:
		cur, ok := st.Names[c.Name]
		if ok && cur.Owner != c.Owner {
			return cmdResult{err: fmt.Errorf("%w: %q is held by %s", ErrNameTaken, c.Name, cur.Owner)}
		}
		reg := Registration{Name: c.Name, Owner: c.Owner, Value: c.Value, Since: now, Index: l.Index}
		if ok {
			reg.Since = cur.Since
		}
		st.Names[c.Name] = reg
		return cmdResult{value: reg}
	case *UnregisterName:
		cur, ok := st.Names[c.Name]
		if !ok {
			return cmdResult{err: fmt.Errorf("%w: %q", ErrUnknownName, c.Name)}
		}
		if c.Owner != "" && cur.Owner != c.Owner {
			return cmdResult{err: fmt.Errorf("%w: %q is held by %s, not %s", ErrNotOwner, c.Name, cur.Owner, c.Owner)}
		}
		delete(st.Names, c.Name)
		return cmdResult{value: cur}
	case *ReleaseOwner:
		var gone []string
		for name, reg := range st.Names {
			if reg.Owner == c.Owner {
				gone = append(gone, name)
				delete(st.Names, name)
			}
		}
		slices.Sort(gone)
		return cmdResult{value: gone}
	}
	return cmdResult{err: fmt.Errorf("%w: unhandled command %T", errBadCommand, cmd)}
}

// Read side.

func (f *fsm) whereis(name string) (Registration, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.st.Names[name]
	return r, ok
}

func (f *fsm) names() []Registration {
	f.mu.RLock()
	out := slices.Collect(maps.Values(f.st.Names))
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b Registration) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (f *fsm) checks() map[string]json.RawMessage {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]json.RawMessage, len(f.st.Checks))
	for k, v := range f.st.Checks {
		out[k] = slices.Clone(v)
	}
	return out
}

func (f *fsm) assignments() (map[string]CheckAssignment, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]CheckAssignment, len(f.st.Assignments))
	for k, v := range f.st.Assignments {
		out[k] = CheckAssignment{Nodes: slices.Clone(v.Nodes), Term: v.Term}
	}
	return out, f.st.AssignTerm
}

func (f *fsm) exportCursor() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.ExportCursor
}

func (f *fsm) stateChanged() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// Snapshots.
//
// Stream layout: "PKTFSM\x01" | u32 state length | u32 CRC-32C of state | state (JSON) |
// log store snapshot stream.
const fsmSnapshotMagic = "PKTFSM\x01"

// Snapshot freezes the state (cheap: the maps are copied, the log store pins its files).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	st := f.st.clone()
	f.mu.RUnlock()
	st.Applied = f.applied.Load()
	logs, err := f.store.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("snapshot log store: %w", err)
	}
	f.sinceSnapshot.Store(0)
	return &fsmSnapshot{st: st, logs: logs}, nil
}

type fsmSnapshot struct {
	st   fsmState
	logs *logstore.Snapshot
}

// Persist streams the snapshot to the sink; raft calls it from its own goroutine while
// Apply goes on.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := s.write(sink)
	if err != nil {
		return errors.Join(err, sink.Cancel())
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	js, err := json.Marshal(s.st)
	if err != nil {
		return fmt.Errorf("encode fsm snapshot: %w", err)
	}
	head := make([]byte, 0, len(fsmSnapshotMagic)+8)
	head = append(head, fsmSnapshotMagic...)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(js)))
	head = binary.LittleEndian.AppendUint32(head, crc32.Checksum(js, crc32.MakeTable(crc32.Castagnoli)))
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("write fsm snapshot: %w", err)
	}
	if _, err := w.Write(js); err != nil {
		return fmt.Errorf("write fsm snapshot: %w", err)
	}
	if _, err := s.logs.WriteTo(w); err != nil {
		return err
	}
	return nil
}

// Release unpins the log store files.
func (s *fsmSnapshot) Release() { s.logs.Release() }

// Restore replaces the whole state from a snapshot stream.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 1<<20)
	head := make([]byte, len(fsmSnapshotMagic)+8)
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("read fsm snapshot header: %w", err)
	}
	if string(head[:len(fsmSnapshotMagic)]) != fsmSnapshotMagic {
		return fmt.Errorf("%w: not a picket fsm snapshot (bad magic)", logstore.ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(head[len(fsmSnapshotMagic):])
	if n > 1<<30 {
		return fmt.Errorf("%w: fsm snapshot state length %d", logstore.ErrCorrupt, n)
	}
	js := make([]byte, n)
	if _, err := io.ReadFull(r, js); err != nil {
		return fmt.Errorf("read fsm snapshot state: %w", err)
	}
	if crc32.Checksum(js, crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(head[len(fsmSnapshotMagic)+4:]) {
		return fmt.Errorf("%w: fsm snapshot state checksum mismatch", logstore.ErrCorrupt)
	}
	st := newFSMState()
	if err := json.Unmarshal(js, &st); err != nil {
		return fmt.Errorf("%w: fsm snapshot state: %v", logstore.ErrCorrupt, err)
	}
	if st.Names == nil {
		st.Names = map[string]Registration{}
	}
	if st.Checks == nil {
		st.Checks = map[string]json.RawMessage{}
	}
	if st.Assignments == nil {
		st.Assignments = map[string]CheckAssignment{}
	}
	if st.Streams == nil {
		st.Streams = map[string]StreamPos{}
	}
	if err := f.store.Restore(r); err != nil {
		return err
	}
	f.applied.Store(st.Applied)
	f.mu.Lock()
	f.st = st
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	f.sinceSnapshot.Store(0)
	return nil
}
