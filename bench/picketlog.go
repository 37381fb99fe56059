package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// PicketLogOptions choose how a PicketLog's clients post. The zero value is what P7 and
// P8 measure: every post to the aggregator, with an Idempotency-Key.
type PicketLogOptions struct {
	// AnyAgent posts to the alive agents in turn (as clients post to their local agent,
	// which forwards to the aggregator) instead of to the aggregator that GET /v1/leader
	// names.
	AnyAgent bool
	// NoKey leaves out the Idempotency-Key header (at-least-once posting).
	NoKey bool
}

// PicketLog is picket's side of P7 and P8: a PicketCluster ingesting through POST /v1/logs.
// Its methods are safe for concurrent use; Close is idempotent.
type PicketLog struct {
	c      *PicketCluster
	o      PicketLogOptions
	rr     atomic.Uint64 // round-robin over the alive agents
	keys   atomic.Uint64 // Idempotency-Key counter
	leader atomic.Pointer[picketNode]
}

// logsRetention keeps every record of a P7 run in the voters' stores: a 5 s run at a few
// hundred thousand records per second must not be pruned before it is counted.
const logsRetention = "logs:\n  retention: {max_records: 100000000, max_bytes: 64GiB, max_age: 24h}\n"

// NewPicketLogFactory returns a LogTargetFactory starting three `picket agent` processes of
// bin (all Raft voters, profile lan or fast, the cluster log kept in full) whose clients
// post as o says; procs stops the agents if the target's Close does not.
func NewPicketLogFactory(bin string, procs *Procs, o PicketLogOptions) LogTargetFactory {
	return func(ctx context.Context, dir, profile string) (LogTarget, error) {
		c, err := startPicketCluster(ctx, procs, bin, dir, clusterSetup{Profile: profile, Extra: logsRetention})
		if err != nil {
			return nil, err
		}
		t := &PicketLog{c: c, o: o}
		if err := waitWritable(ctx, t, 30*time.Second); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("picket cluster: %w", err)
		}
		return t, nil
	}
}

// logRecord is one record of POST /v1/logs.
type logRecord struct {
	Level   string `json:"level"`
	Message string `json:"message"`
}

// Append implements LogTarget: one POST /v1/logs of every record, with a fresh
// Idempotency-Key, to the aggregator (found with GET /v1/leader when the last one is
// dead; no aggregator is ErrNoLeader) or, with AnyAgent, to the next alive agent. It
// succeeds once picket answers {"accepted": len(records)}, after a Raft majority
// committed them.
func (t *PicketLog) Append(ctx context.Context, records [][]byte) error {
	alive := t.c.alive()
	if len(alive) == 0 {
		return ErrNoLeader
	}
	n := alive[t.rr.Add(1)%uint64(len(alive))]
	if !t.o.AnyAgent {
		l := t.leader.Load()
		if l == nil || l.dead.Load() {
			var err error
			if l, err = t.c.Leader(ctx); err != nil {
				return err
			}
			t.leader.Store(l)
		}
		n = l
	}
	recs := make([]logRecord, len(records))
	for i, r := range records {
		recs[i] = logRecord{Level: "info", Message: string(r)}
	}
	body, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	var h http.Header
	if !t.o.NoKey {
		h = http.Header{"Idempotency-Key": {"bench-" + strconv.FormatUint(t.keys.Add(1), 10)}}
	}
	status, out, err := t.c.post(ctx, n, "/v1/logs", h, body)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusOK:
		var a struct {
			Accepted int `json:"accepted"`
		}
		if err := json.Unmarshal(out, &a); err != nil {
			return fmt.Errorf("%s: POST /v1/logs: decode %q: %w", n.Name, out, err)
		}
		if a.Accepted != len(records) {
			return fmt.Errorf("%s: POST /v1/logs: accepted %d of %d records", n.Name, a.Accepted, len(records))
		}
		return nil
	case http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %s: POST /v1/logs: %s", ErrNoLeader, n.Name, out)
	default:
		return fmt.Errorf("%s: POST /v1/logs: status %d: %s", n.Name, status, out)
	}
}

// KillLeader implements LogTarget: SIGKILL to the agent that GET /v1/leader names.
func (t *PicketLog) KillLeader(ctx context.Context) error {
	n, err := t.c.Leader(ctx)
	if err != nil {
		return err
	}
	t.c.Kill(n)
	return nil
}

// Committed implements LogTarget: picket_logs_retained of every alive voter, read until
// they agree (they have applied the same log), the smallest of them. The count includes
// the agents' own records (membership events), so it never undercounts the bench's.
func (t *PicketLog) Committed(ctx context.Context) (int64, error) {
	deadline := time.Now().Add(15 * time.Second)
	var prev []int64
	for {
		alive := t.c.alive()
		if len(alive) == 0 {
			return 0, ErrNoLeader
		}
		var counts []int64
		for _, n := range alive {
			ms, err := t.c.Metrics(ctx, n)
			if err != nil {
				return 0, err
			}
			counts = append(counts, int64(Sum(ms, "picket_logs_retained", nil)))
		}
		least, most := counts[0], counts[0]
		for _, c := range counts {
			least, most = min(least, c), max(most, c)
		}
		same := len(prev) == len(counts)
		for i := range prev {
			same = same && prev[i] == counts[i]
		}
		if least == most && same || time.Now().After(deadline) {
			return least, nil
		}
		prev = counts
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return least, err
		}
	}
}

// Close implements LogTarget.
func (t *PicketLog) Close() error { return t.c.Close() }

// ApplyStats returns the aggregator's picket_raft_apply_duration_seconds count and sum
// (how many log batches it proposed to Raft and how long they took to commit, in total)
// and the CPU time its process has used.
func (t *PicketLog) ApplyStats(ctx context.Context) (ApplyStats, error) {
	l, err := t.c.Leader(ctx)
	if err != nil {
		return ApplyStats{}, err
	}
	ms, err := t.c.Metrics(ctx, l)
	if err != nil {
		return ApplyStats{}, err
	}
	cpu, err := l.Proc.CPU()
	if err != nil {
		return ApplyStats{}, err
	}
	return ApplyStats{Applies: int64(Sum(ms, "picket_raft_apply_duration_seconds_count", nil)),
		Seconds: Sum(ms, "picket_raft_apply_duration_seconds_sum", nil), CPU: cpu}, nil
}

// ApplyStats are counters of an aggregator; differences of two readings describe a run.
type ApplyStats struct {
	Applies int64         // log batches proposed to Raft
	Seconds float64       // their total time from proposal to commit
	CPU     time.Duration // CPU time of the aggregator's process
}

// LeaderPID returns the process id of the aggregator.
func (t *PicketLog) LeaderPID(ctx context.Context) (int, error) {
	l, err := t.c.Leader(ctx)
	if err != nil {
		return 0, err
	}
	return l.Proc.PID(), nil
}
