package bench

import (
	"context"
	"fmt"
	"time"
)

// P7 workload shape, from BENCHMARKS.md.
const (
	ingestClients  = 256
	ingestRecord   = 256 // bytes per record
	ingestPerEntry = 64  // records per Append when batched
)

// applyStatser is a LogTarget that reports its Raft proposals (PicketLog).
type applyStatser interface {
	ApplyStats(ctx context.Context) (ApplyStats, error)
}

// ingestOnce starts a fresh target from f, runs MeasureIngest on it and closes it. With
// perfDir set and a target that says where its aggregator runs, that process is profiled
// with perf during the run and the profile returned.
func (e *Env) ingestOnce(ctx context.Context, name string, f LogTargetFactory, perEntry int, perfDir ...string) (IngestResult, string, error) {
	dir, err := e.runDir(name)
	if err != nil {
		return IngestResult{}, "", err
	}
	t, err := f(ctx, dir, RaftProfileLAN)
	if err != nil {
		return IngestResult{}, "", err
	}
	defer t.Close()
	as, stats := t.(applyStatser)
	var a0 ApplyStats
	if stats {
		if a0, err = as.ApplyStats(ctx); err != nil {
			return IngestResult{}, "", err
		}
	}
	type profiled struct {
		top string
		err error
	}
	var prof chan profiled
	if lp, ok := t.(interface {
		LeaderPID(context.Context) (int, error)
	}); ok && len(perfDir) > 0 {
		pid, err := lp.LeaderPID(ctx)
		if err != nil {
			return IngestResult{}, "", err
		}
		prof = make(chan profiled, 1)
		go func() { // owned by ingestOnce, which receives from prof before returning
			top, err := perfRecord(ctx, pid, e.Plan.RaftRun, perfDir[0])
			prof <- profiled{top, err}
		}()
	}
	res, err := MeasureIngest(ctx, t, ingestClients, perEntry, ingestRecord, e.Plan.RaftRun)
	var top string
	if prof != nil {
		p := <-prof
		if top = p.top; p.err != nil {
			top = "perf failed: " + oneLine(p.err.Error()) + "\n"
		}
	}
	if err != nil {
		return res, top, err
	}
	if stats {
		a1, err := as.ApplyStats(ctx)
		if err != nil {
			return res, top, err
		}
		res.Aggregator = ApplyStats{Applies: a1.Applies - a0.Applies, Seconds: a1.Seconds - a0.Seconds, CPU: a1.CPU - a0.CPU}
	}
	return res, top, nil
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
			res, _, err := e.ingestOnce(ctx, s.name, s.f, ingestPerEntry)
			if err != nil {
				return nil, fmt.Errorf("P7 %s: %w", s.name, err)
			}
			s.runs = append(s.runs, res)
		}
	}
	e.logf("P7 reference: bare raft, one record per entry, %s", e.Plan.RaftRun)
	single, _, err := e.ingestOnce(ctx, "bare-raft-single", NewBareRaft, 1)
	if err != nil {
		return nil, fmt.Errorf("P7 bare raft unbatched: %w", err)
	}
	// How picket's figure depends on the client: one run of each other way to post.
	type variant struct {
		metric string
		o      PicketLogOptions
		res    IngestResult
	}
	var variants []*variant
	if e.PicketLog != nil && e.Picket != "" {
		variants = []*variant{
			{metric: "ref: picket, posting to every agent in turn (they forward to the aggregator)", o: PicketLogOptions{AnyAgent: true}},
			{metric: "ref: picket, posting to the aggregator without Idempotency-Key", o: PicketLogOptions{NoKey: true}},
		}
	}
	for _, v := range variants {
		e.logf("P7 %s, %s", v.metric, e.Plan.RaftRun)
		if v.res, _, err = e.ingestOnce(ctx, "picket-log-ref", NewPicketLogFactory(e.Picket, e.Procs, v.o), ingestPerEntry); err != nil {
			return nil, fmt.Errorf("P7 %s: %w", v.metric, err)
		}
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
	tput.Note = fmt.Sprintf("%d clients each waiting for its ack, %d records of %d B per call, %s per run, %d alternating runs, fresh 3-voter cluster per run on 127.0.0.1; "+
		"bare raft: in-process hashicorp/raft with raft defaults, TCP transport, raft-wal log+stable store, one Apply of %d records per call, FSM only counts; "+
		"picket: three `picket agent` processes (profile lan, voters 3, collectors off, retention raised so nothing is pruned), one POST /v1/logs "+
		"(JSON array, fresh Idempotency-Key) per call to the aggregator named by GET /v1/leader, acknowledged after Raft commit; "+
		"the bench's HTTP/JSON client shares the 2 cores; acknowledged records missing from a replica afterwards (picket: picket_logs_retained "+
		"of each voter once they agree): %s",
		ingestClients, ingestPerEntry, ingestRecord, e.Plan.RaftRun, e.Plan.Repeats, ingestPerEntry, lostNote)
	if len(sides) > 1 {
		if agg := aggregatorNote(sides[1].runs, e.Plan.RaftRun); agg != "" {
			tput.Note += "; " + agg
		}
	}
	if len(sides) > 1 && (e.ProfileMode == "always" || e.ProfileMode == "auto" && tput.Verdict == Miss) && ctx.Err() == nil {
		e.logf("P7 profile: one more picket run, %s on the aggregator", PerfProgram)
		e.diagnoses = append(e.diagnoses, e.profileIngest(ctx, sides[1].f))
	}
	ref := Row{Metric: "ref: bare raft, 1 record per entry", Unit: "entries/s",
		Baseline: Summarize([]float64{single.RecordsPerSecond()}), Verdict: Info}

	rows := []Row{tput, ack, ref}
	for _, v := range variants {
		r := Row{Metric: v.metric, Unit: "rec/s", Picket: Summarize([]float64{v.res.RecordsPerSecond()}), Verdict: Info,
			Note: fmt.Sprintf("one run as P7; ack p99 %s ms, lost %d", Num(p99(v.res)), v.res.Lost)}
		if r.Picket.N > 0 && tput.Baseline.N > 0 {
			r.Baseline = tput.Baseline
		}
		rows = append(rows, r)
	}
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
				"fast = 500 ms heartbeat/election, 250 ms lease; picket: SIGKILL of the agent GET /v1/leader names, timed until a POST /v1/logs "+
				"to the aggregator a survivor's GET /v1/leader names is acknowledged (tried every 5 ms, each try at most 2 s); picket's lan = 1 s "+
				"heartbeat/election, 500 ms lease, fast = 300 ms heartbeat/election, 250 ms lease; p99 judged on the maximum", e.Plan.RaftFailovers)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// aggregatorNote describes what picket's aggregator did in runs: Raft proposals of record
// batches, their size and commit time, the share of the run spent committing (one batch
// is in flight at a time when this is near 100 %), and its CPU.
func aggregatorNote(runs []IngestResult, run time.Duration) string {
	var applies, perApply, mean, busy, cpu []float64
	for _, r := range runs {
		a := r.Aggregator
		if a.Applies == 0 {
			continue
		}
		applies = append(applies, float64(a.Applies))
		perApply = append(perApply, float64(r.Records)/float64(a.Applies))
		mean = append(mean, a.Seconds/float64(a.Applies)*1000)
		busy = append(busy, a.Seconds/r.Elapsed.Seconds()*100)
		cpu = append(cpu, a.CPU.Seconds()/r.Elapsed.Seconds()*100)
	}
	if len(applies) == 0 {
		return ""
	}
	med := func(xs []float64) string { return Num(Summarize(xs).Median) }
	return fmt.Sprintf("picket's aggregator per %s run (medians): %s Raft proposals of log batches, %s records each, %s ms from proposal to commit, "+
		"committing %s %% of the run; its process used %s %% of a core", run, med(applies), med(perApply), med(mean), med(busy), med(cpu))
}

// profileIngest runs P7 once more on a target from f with perf on its aggregator and says
// where the time goes.
func (e *Env) profileIngest(ctx context.Context, f LogTargetFactory) Diagnosis {
	d := Diagnosis{Title: "Where picket's ingest time goes (P7)",
		Intro: fmt.Sprintf("One more P7 run of picket (%d clients, %d records per POST, %s) with `%s record -g` on the aggregator's process; "+
			"frames of picket, its libraries, JSON, HTTP, the allocator and syscalls by cumulative share:", ingestClients, ingestPerEntry, e.Plan.RaftRun, PerfProgram)}
	dir, err := e.runDir("perf")
	if err != nil {
		d.Body = err.Error() + "\n"
		return d
	}
	res, top, err := e.ingestOnce(ctx, "picket-log-perf", f, ingestPerEntry, dir)
	if err != nil {
		d.Body = "profile run failed: " + oneLine(err.Error()) + "\n"
		return d
	}
	d.Body = fmt.Sprintf("run: %s rec/s, ack p99 %s ms; %s\n\n%s", Num(res.RecordsPerSecond()),
		Num(Percentile(Seconds(res.Latencies), 99)*1000), aggregatorNote([]IngestResult{res}, e.Plan.RaftRun), top)
	return d
}
