package bench

import (
	"context"
	"fmt"
)

// P7 workload shape, from BENCHMARKS.md.
const (
	ingestClients  = 256
	ingestRecord   = 256 // bytes per record
	ingestPerEntry = 64  // records per Append when batched
)

// ingestOnce starts a fresh target from f, runs MeasureIngest on it and closes it.
func (e *Env) ingestOnce(ctx context.Context, name string, f LogTargetFactory, perEntry int) (IngestResult, error) {
	dir, err := e.runDir(name)
	if err != nil {
		return IngestResult{}, err
	}
	t, err := f(ctx, dir, RaftProfileLAN)
	if err != nil {
		return IngestResult{}, err
	}
	defer t.Close()
	return MeasureIngest(ctx, t, ingestClients, perEntry, ingestRecord, e.Plan.RaftRun)
}

// failovers measures e.Plan.RaftFailovers failovers of fresh targets from f.
func (e *Env) failovers(ctx context.Context, name string, f LogTargetFactory, profile string) ([]float64, error) {
	var secs []float64
	for i := range e.Plan.RaftFailovers {
		e.logf("P8 %s %s failover %d/%d", name, profile, i+1, e.Plan.RaftFailovers)
		dir, err := e.runDir(name + "-failover")
		if err != nil {
			return nil, err
		}
		t, err := f(ctx, dir, profile)
		if err != nil {
			return nil, err
		}
		d, err := MeasureFailover(ctx, t)
		_ = t.Close()
		if err != nil {
			return nil, fmt.Errorf("%s %s failover: %w", name, profile, err)
		}
		secs = append(secs, d.Seconds())
	}
	return secs, nil
}

// Logs runs P7 (durable log ingestion) and P8 (failover) against the bare raft + raft-wal
// harness and, when e.PicketLog is set, against picket alternately; without it, picket's
// rows are pending.
func (e *Env) Logs(ctx context.Context) ([]Row, error) {
	type side struct {
		name string
		f    LogTargetFactory
		runs []IngestResult
	}
	sides := []*side{{name: "bare-raft", f: NewBareRaft}}
	if e.PicketLog != nil {
		sides = append(sides, &side{name: "picket-log", f: e.PicketLog})
	}
	for r := range e.Plan.Repeats {
		for i := range sides {
			s := sides[(i+r)%len(sides)]
			e.logf("P7 run %d/%d: %s, %d clients, %d×%d B records per entry, %s", r+1, e.Plan.Repeats, s.name, ingestClients, ingestPerEntry, ingestRecord, e.Plan.RaftRun)
			res, err := e.ingestOnce(ctx, s.name, s.f, ingestPerEntry)
			if err != nil {
				return nil, fmt.Errorf("P7 %s: %w", s.name, err)
			}
			s.runs = append(s.runs, res)
		}
	}
	e.logf("P7 reference: bare raft, one record per entry, %s", e.Plan.RaftRun)
	single, err := e.ingestOnce(ctx, "bare-raft-single", NewBareRaft, 1)
	if err != nil {
		return nil, fmt.Errorf("P7 bare raft unbatched: %w", err)
	}

	stat := func(runs []IngestResult, f func(IngestResult) float64) Stat {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, f(r))
		}
		return Summarize(xs)
	}
	rate := func(r IngestResult) float64 { return r.RecordsPerSecond() }
	p99 := func(r IngestResult) float64 { return Percentile(Seconds(r.Latencies), 99) * 1000 }
	lost := func(runs []IngestResult) (n int64) {
		for _, r := range runs {
			n += r.Lost
		}
		return n
	}
	base := sides[0]
	tput := Row{ID: "P7", Metric: "durable log ingestion, 3 voters, 256 B records, 64 per entry (vs bare raft + raft-wal)", Unit: "rec/s",
		Baseline: stat(base.runs, rate), Target: "≥ 0.7× and ≥ 50k/s, nothing lost", Verdict: Pending}
	ack := Row{ID: "P7", Metric: "ingestion ack latency p99 (vs bare raft + raft-wal)", Unit: "ms",
		Baseline: stat(base.runs, p99), Target: "≤ 50 ms", Verdict: Pending}
	if len(sides) > 1 {
		pk := sides[1]
		tput.Picket, ack.Picket = stat(pk.runs, rate), stat(pk.runs, p99)
		tput.Verdict = judge(tput.Ratio() >= 0.7 && tput.Picket.Median >= 50000 && lost(pk.runs) == 0)
		ack.Verdict = judge(ack.Picket.Max <= 50)
	}
	lostNote := fmt.Sprintf("bare raft %d", lost(base.runs))
	if len(sides) > 1 {
		lostNote += fmt.Sprintf(", picket %d", lost(sides[1].runs))
	} else {
		lostNote += "; picket side pending until the aggregator lands (set Env.PicketLog)"
	}
	tput.Note = fmt.Sprintf("%d clients each waiting for its ack, %s per run, fresh 3-voter cluster per run on 127.0.0.1 TCP, raft defaults, "+
		"raft-wal log+stable store; acknowledged records missing from a replica afterwards: %s",
		ingestClients, e.Plan.RaftRun, lostNote)
	ref := Row{Metric: "ref: bare raft, 1 record per entry", Unit: "entries/s",
		Baseline: Summarize([]float64{single.RecordsPerSecond()}), Verdict: Info}

	rows := []Row{tput, ack, ref}
	for _, prof := range []struct {
		name   string
		target string
		limit  float64
	}{{RaftProfileLAN, "p99 ≤ 3 s (lan)", 3}, {RaftProfileFast, "p99 ≤ 1.5 s (fast)", 1.5}} {
		bs, err := e.failovers(ctx, "bare-raft", NewBareRaft, prof.name)
		if err != nil {
			return nil, err
		}
		row := Row{ID: "P8", Metric: fmt.Sprintf("failover, %s timeouts: leader killed → write accepted (vs bare raft)", prof.name),
			Unit: "s", Baseline: Summarize(bs), Target: prof.target, Verdict: Pending}
		if e.PicketLog != nil {
			ps, err := e.failovers(ctx, "picket-log", e.PicketLog, prof.name)
			if err != nil {
				return nil, err
			}
			row.Picket = Summarize(ps)
			row.Verdict = judge(row.Picket.Max <= prof.limit)
		}
		if prof.name == RaftProfileLAN {
			row.Note = fmt.Sprintf("%d failovers per profile, each on a fresh 3-voter cluster; bare raft: leader's transport closed and raft shut down "+
				"(as kill -9), timed until an Apply on the new leader commits; lan = raft.DefaultConfig (1 s heartbeat/election), "+
				"fast = 500 ms heartbeat/election, 250 ms lease; p99 judged on the maximum", e.Plan.RaftFailovers)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// PendingRows returns the rows of targets whose picket side does not exist yet: P9 and P11.
// P9's baseline, the failure-detection time, comes from Membership.
func PendingRows() []Row {
	return []Row{
		{ID: "P11", Metric: "OTLP export under a burst of check results/logs: drops", Target: "0 drops, every drop counted", Verdict: Pending,
			Note: "pending: burst test against an OTLP receiver; picket counts failures in picket_exporter_export_failures_total"},
	}
}
