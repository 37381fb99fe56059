package bench

import (
	"context"
	"fmt"
	"time"
)

// scrapeRun is one process scraped at a steady rate.
type scrapeRun struct {
	cpuPerScrape time.Duration // process CPU over the window ÷ scrapes
	series       int           // samples in the last exposition
	latencies    []time.Duration
}

// cpuPer1k is the CPU per 1000 series per scrape, in milliseconds.
func (r scrapeRun) cpuPer1k() float64 {
	if r.series == 0 {
		return 0
	}
	return r.cpuPerScrape.Seconds() * 1000 / (float64(r.series) / 1000)
}

// scrapeSteady scrapes url every e.Plan.ScrapeEvery for e.Plan.ScrapeRun and measures p's
// CPU over exactly that window (after one warm-up scrape and one idle period).
func (e *Env) scrapeSteady(ctx context.Context, p *Proc, url string) (scrapeRun, error) {
	s := NewScraper(url)
	defer s.Close()
	if _, _, err := s.Scrape(ctx); err != nil {
		return scrapeRun{}, err
	}
	if err := sleepCtx(ctx, e.Plan.ScrapeEvery); err != nil {
		return scrapeRun{}, err
	}
	n := max(int(e.Plan.ScrapeRun/e.Plan.ScrapeEvery), 1)
	var run scrapeRun
	cpu0, err := p.CPU()
	if err != nil {
		return run, err
	}
	start := time.Now()
	var body string
	for i := range n {
		if err := sleepCtx(ctx, time.Until(start.Add(time.Duration(i)*e.Plan.ScrapeEvery))); err != nil {
			return run, err
		}
		b, lat, err := s.Scrape(ctx)
		if err != nil {
			return run, err
		}
		body = b
		run.latencies = append(run.latencies, lat)
	}
	// The window ends one period after the last scrape, so it holds n periods of picket's
	// background collection as well as n scrapes.
	if err := sleepCtx(ctx, time.Until(start.Add(time.Duration(n)*e.Plan.ScrapeEvery))); err != nil {
		return run, err
	}
	cpu1, err := p.CPU()
	if err != nil {
		return run, err
	}
	run.cpuPerScrape = (cpu1 - cpu0) / time.Duration(n)
	run.series = SeriesCount(body)
	return run, nil
}

// runScrapePicket starts picket with node_exporter's collector set, collecting at the
// scrape period, and scrapes it steadily.
func (e *Env) runScrapePicket(ctx context.Context) (scrapeRun, error) {
	p, addr, err := e.startPicket(ctx, "picket-scrape", picketSetup{
		CollectorsInterval: e.Plan.ScrapeEvery,
		CollectorsDisabled: sameCollectorsDisabled(),
	})
	if err != nil {
		return scrapeRun{}, err
	}
	defer p.Stop()
	return e.scrapeSteady(ctx, p, "http://"+addr+"/metrics")
}

// runScrapeNode starts node_exporter with picket's collector set and scrapes it steadily.
func (e *Env) runScrapeNode(ctx context.Context) (scrapeRun, error) {
	p, addr, err := e.startNodeExporter(ctx, "node-exporter-scrape")
	if err != nil {
		return scrapeRun{}, err
	}
	defer p.Stop()
	return e.scrapeSteady(ctx, p, "http://"+addr+"/metrics")
}

// runCollectOnly starts picket as runScrapePicket does but scrapes it only once, before
// the window, and returns its CPU per collection period over ScrapeRun: collection and
// background work without serving /metrics.
func (e *Env) runCollectOnly(ctx context.Context) (time.Duration, error) {
	p, addr, err := e.startPicket(ctx, "picket-collect-only", picketSetup{
		CollectorsInterval: e.Plan.ScrapeEvery,
		CollectorsDisabled: sameCollectorsDisabled(),
	})
	if err != nil {
		return 0, err
	}
	defer p.Stop()
	s := NewScraper("http://" + addr + "/metrics")
	defer s.Close()
	if _, _, err := s.Scrape(ctx); err != nil {
		return 0, err
	}
	if err := sleepCtx(ctx, e.Plan.ScrapeEvery); err != nil {
		return 0, err
	}
	n := max(int(e.Plan.ScrapeRun/e.Plan.ScrapeEvery), 1)
	cpu0, err := p.CPU()
	if err != nil {
		return 0, err
	}
	if err := sleepCtx(ctx, time.Duration(n)*e.Plan.ScrapeEvery); err != nil {
		return 0, err
	}
	cpu1, err := p.CPU()
	if err != nil {
		return 0, err
	}
	return (cpu1 - cpu0) / time.Duration(n), nil
}

// Scrape runs P1 (CPU per 1000 series per scrape) and P2 (/metrics latency): picket and
// node_exporter alternately, e.Plan.Repeats times each.
func (e *Env) Scrape(ctx context.Context) ([]Row, error) {
	if e.NodeExporter == "" {
		return nil, fmt.Errorf("%s is not on PATH: install it with `apt-get install -y prometheus-node-exporter`", NodeExporterProgram)
	}
	var pk, ne []scrapeRun
	for r := range e.Plan.Repeats {
		sides := []func() error{
			func() error {
				e.logf("P1/P2 run %d/%d: picket, %d scrapes", r+1, e.Plan.Repeats, int(e.Plan.ScrapeRun/e.Plan.ScrapeEvery))
				run, err := e.runScrapePicket(ctx)
				pk = append(pk, run)
				return err
			},
			func() error {
				e.logf("P1/P2 run %d/%d: node_exporter", r+1, e.Plan.Repeats)
				run, err := e.runScrapeNode(ctx)
				ne = append(ne, run)
				return err
			},
		}
		if r%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			if err := side(); err != nil {
				return nil, err
			}
		}
	}
	e.logf("P1 reference: picket collecting every %s, not scraped, for %s", e.Plan.ScrapeEvery, e.Plan.ScrapeRun)
	collectOnly, err := e.runCollectOnly(ctx)
	if err != nil {
		return nil, err
	}
	per1k := func(runs []scrapeRun) Stat {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, r.cpuPer1k())
		}
		return Summarize(xs)
	}
	perScrape := func(runs []scrapeRun) Stat {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, r.cpuPerScrape.Seconds()*1000)
		}
		return Summarize(xs)
	}
	pct := func(runs []scrapeRun, p float64) Stat {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, Percentile(Seconds(r.latencies), p)*1000)
		}
		return Summarize(xs)
	}
	series := func(runs []scrapeRun) Stat {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, float64(r.series))
		}
		return Summarize(xs)
	}

	p1 := Row{ID: "P1", Metric: "CPU per 1000 series per scrape (vs node_exporter)", Unit: "ms",
		Picket: per1k(pk), Baseline: per1k(ne), Target: "≤ 0.6×"}
	p1.Verdict = judge(p1.Ratio() <= 0.6)
	p1.Note = fmt.Sprintf("same collector set (cpu, memory, filesystem, disk, network, load); each side scraped every %s for %s "+
		"(%d scrapes) per run, %d alternating runs; picket collects every %s so each scrape has one collection behind it; "+
		"process CPU (utime+stime from /proc/PID/stat) over the window ÷ scrapes ÷ (series/1000); series = samples in the exposition, "+
		"go_/process_/promhttp_ included on both sides",
		e.Plan.ScrapeEvery, e.Plan.ScrapeRun, int(e.Plan.ScrapeRun/e.Plan.ScrapeEvery), e.Plan.Repeats, e.Plan.ScrapeEvery)
	p2 := Row{ID: "P2", Metric: "/metrics latency p99 (vs node_exporter)", Unit: "ms",
		Picket: pct(pk, 99), Baseline: pct(ne, 99), Target: "≤ 1.0× at ≤ 1k series"}
	ps := series(pk)
	p2.Verdict = judge(p2.Ratio() <= 1.0 && ps.Max <= 1000)
	p2.Note = "client-side time from request to last byte (keep-alive, gzip), p99 of each run; the range is over runs"
	return []Row{
		p1,
		{Metric: "ref: CPU per scrape", Unit: "ms", Picket: perScrape(pk), Baseline: perScrape(ne), Verdict: Info},
		{Metric: "ref: picket CPU per period when not scraped (collection + background)", Unit: "ms",
			Picket: Summarize([]float64{collectOnly.Seconds() * 1000}), Verdict: Info,
			Note: "one run of the P1 picket setup with no scrapes; CPU per scrape minus this is what serving /metrics costs"},
		{Metric: "ref: series exposed", Picket: ps, Baseline: series(ne), Verdict: Info},
		p2,
		{Metric: "ref: /metrics latency p50", Unit: "ms", Picket: pct(pk, 50), Baseline: pct(ne, 50), Verdict: Info},
	}, nil
}

// Idle runs P3: picket (no checks, node_exporter's collector set, collecting every
// IdleScrapeEvery) and node_exporter side by side, each scraped once per IdleScrapeEvery
// for IdleRun; then their CPU share over the window and their RSS at its end.
func (e *Env) Idle(ctx context.Context) ([]Row, error) {
	if e.NodeExporter == "" {
		return nil, fmt.Errorf("%s is not on PATH: install it with `apt-get install -y prometheus-node-exporter`", NodeExporterProgram)
	}
	e.logf("P3: picket and node_exporter idle side by side for %s, one scrape per %s", e.Plan.IdleRun, e.Plan.IdleScrapeEvery)
	pp, paddr, err := e.startPicket(ctx, "picket-idle", picketSetup{
		CollectorsInterval: e.Plan.IdleScrapeEvery,
		CollectorsDisabled: sameCollectorsDisabled(),
	})
	if err != nil {
		return nil, err
	}
	defer pp.Stop()
	np, naddr, err := e.startNodeExporter(ctx, "node-exporter-idle")
	if err != nil {
		return nil, err
	}
	defer np.Stop()
	procs := []*Proc{pp, np}
	scrapers := []*Scraper{NewScraper("http://" + paddr + "/metrics"), NewScraper("http://" + naddr + "/metrics")}
	for _, s := range scrapers {
		defer s.Close()
		if _, _, err := s.Scrape(ctx); err != nil {
			return nil, err
		}
	}
	if err := sleepCtx(ctx, 2*time.Second); err != nil { // let start-up work settle
		return nil, err
	}
	cpu0 := make([]time.Duration, 2)
	for i, p := range procs {
		if cpu0[i], err = p.CPU(); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	n := max(int(e.Plan.IdleRun/e.Plan.IdleScrapeEvery), 1)
	for k := 1; k <= n; k++ {
		if err := sleepCtx(ctx, time.Until(start.Add(time.Duration(k)*e.Plan.IdleScrapeEvery))); err != nil {
			return nil, err
		}
		for _, s := range scrapers {
			if _, _, err := s.Scrape(ctx); err != nil {
				return nil, err
			}
		}
	}
	wall := time.Since(start)
	var cpuPct, rssMiB [2]float64
	for i, p := range procs {
		cpu1, err := p.CPU()
		if err != nil {
			return nil, err
		}
		rss, err := p.RSS()
		if err != nil {
			return nil, err
		}
		cpuPct[i] = (cpu1 - cpu0[i]).Seconds() / wall.Seconds() * 100
		rssMiB[i] = float64(rss) / (1 << 20)
	}
	rss := Row{ID: "P3", Metric: "idle RSS (vs node_exporter)", Unit: "MiB",
		Picket: Summarize(rssMiB[:1]), Baseline: Summarize(rssMiB[1:]), Target: "≤ 2× and ≤ 60 MiB"}
	rss.Verdict = judge(rss.Ratio() <= 2 && rssMiB[0] <= 60)
	cpu := Row{ID: "P3", Metric: "idle CPU, % of a core (vs node_exporter)", Unit: "%",
		Picket: Summarize(cpuPct[:1]), Baseline: Summarize(cpuPct[1:]), Target: "≤ 0.2 %"}
	cpu.Verdict = judge(cpuPct[0] <= 0.2)
	cpu.Note = fmt.Sprintf("both processes at once, no checks, collector set as P1, picket collecting every %s; "+
		"each scraped once per %s (%d scrapes) over %s; CPU from /proc/PID/stat at 10 ms resolution, RSS = VmRSS at the end; one run",
		e.Plan.IdleScrapeEvery, e.Plan.IdleScrapeEvery, n, wall.Round(time.Second))
	return []Row{rss, cpu}, nil
}

// judge turns a target test into a verdict.
func judge(met bool) Verdict {
	if met {
		return OK
	}
	return Miss
}
