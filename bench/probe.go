package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// probeWarmup is the time a side runs before its CPU window opens.
const probeWarmup = 2 * time.Second

// blackboxWorkers is the concurrency of the requests driving blackbox_exporter.
const blackboxWorkers = 16

// probeRun is one side probing the target for the measured window.
type probeRun struct {
	ok, failed int64         // probes finished in the window
	cpu        time.Duration // process CPU over the window
	wall       time.Duration
}

// perCPUSecond is successful probes per CPU-second.
func (r probeRun) perCPUSecond() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.ok) / r.cpu.Seconds()
}

// rate is successful probes per second of wall time.
func (r probeRun) rate() float64 { return float64(r.ok) / r.wall.Seconds() }

// probeKind is the check type under test.
type probeKind struct {
	name      string // http | tcp
	module    string // blackbox module
	target    func(TargetAddrs) string
	checkYAML func(name string, a TargetAddrs, interval time.Duration) string
}

func httpKind() probeKind {
	return probeKind{
		name:   "http",
		module: "http_2xx",
		target: func(a TargetAddrs) string { return "http://" + a.HTTP + "/ok" },
		checkYAML: func(name string, a TargetAddrs, iv time.Duration) string {
			return fmt.Sprintf("  - {name: %s, type: http, interval: %s, timeout: %s, http: {url: \"http://%s/ok\"}}\n", name, iv, iv, a.HTTP)
		},
	}
}

func tcpKind() probeKind {
	return probeKind{
		name:   "tcp",
		module: "tcp_connect",
		target: func(a TargetAddrs) string { return a.TCP },
		checkYAML: func(name string, a TargetAddrs, iv time.Duration) string {
			return fmt.Sprintf("  - {name: %s, type: tcp, interval: %s, timeout: %s, tcp: {address: \"%s\"}}\n", name, iv, iv, a.TCP)
		},
	}
}

// probePicket runs ProbeChecks checks of kind at ProbeRate runs per second in total, all
// collectors off, and counts the runs in picket_check_runs_total over the window.
func (e *Env) probePicket(ctx context.Context, kind probeKind, a TargetAddrs) (probeRun, error) {
	interval := time.Duration(e.Plan.ProbeChecks) * time.Second / time.Duration(e.Plan.ProbeRate)
	var checks strings.Builder
	for i := range e.Plan.ProbeChecks {
		checks.WriteString(kind.checkYAML(fmt.Sprintf("%s%03d", kind.name, i), a, interval))
	}
	p, addr, err := e.startPicket(ctx, "picket-"+kind.name, picketSetup{
		CollectorsInterval: time.Minute,
		CollectorsDisabled: []string{"all"},
		Checks:             checks.String(),
	})
	if err != nil {
		return probeRun{}, err
	}
	defer p.Stop()
	s := NewScraper("http://" + addr + "/metrics")
	defer s.Close()
	runs := func() (ok, total float64, err error) {
		body, _, err := s.Scrape(ctx)
		if err != nil {
			return 0, 0, err
		}
		samples := ParseExposition(body)
		return Sum(samples, "picket_check_runs_total", map[string]string{"result": "passing"}),
			Sum(samples, "picket_check_runs_total", nil), nil
	}
	if err := sleepCtx(ctx, probeWarmup); err != nil {
		return probeRun{}, err
	}
	// The scrapes stay outside the CPU window: CPU is read after the first and before the last.
	ok0, all0, err := runs()
	if err != nil {
		return probeRun{}, err
	}
	cpu0, err := p.CPU()
	if err != nil {
		return probeRun{}, err
	}
	start := time.Now()
	if err := sleepCtx(ctx, e.Plan.ProbeRun); err != nil {
		return probeRun{}, err
	}
	cpu1, err := p.CPU()
	if err != nil {
		return probeRun{}, err
	}
	wall := time.Since(start)
	ok1, all1, err := runs()
	if err != nil {
		return probeRun{}, err
	}
	if all1 == 0 {
		return probeRun{}, fmt.Errorf("picket_check_runs_total is missing or 0 after %s of %d %s checks; picket log %s", probeWarmup+e.Plan.ProbeRun, e.Plan.ProbeChecks, kind.name, p.LogPath)
	}
	return probeRun{ok: int64(ok1 - ok0), failed: int64((all1 - all0) - (ok1 - ok0)), cpu: cpu1 - cpu0, wall: wall}, nil
}

// probeBlackbox drives blackbox_exporter's /probe for kind with blackboxWorkers concurrent
// requests paced to ProbeRate per second, and counts probe_success 1 answers.
func (e *Env) probeBlackbox(ctx context.Context, kind probeKind, a TargetAddrs) (probeRun, error) {
	p, addr, err := e.startBlackbox(ctx, "blackbox-"+kind.name)
	if err != nil {
		return probeRun{}, err
	}
	defer p.Stop()
	probeURL := "http://" + addr + "/probe?" + url.Values{"module": {kind.module}, "target": {kind.target(a)}}.Encode()
	tr := &http.Transport{MaxIdleConnsPerHost: blackboxWorkers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	var ok, failed atomic.Int64
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	tokens := make(chan struct{}, blackboxWorkers)
	var wg sync.WaitGroup
	wg.Go(func() { pace(runCtx, tokens, e.Plan.ProbeRate) })
	for range blackboxWorkers {
		wg.Go(func() {
			for {
				select {
				case <-runCtx.Done():
					return
				case <-tokens:
				}
				if blackboxProbe(runCtx, client, probeURL) {
					ok.Add(1)
				} else if runCtx.Err() == nil {
					failed.Add(1)
				}
			}
		})
	}
	defer wg.Wait() // after cancel (deferred later, so it runs first)
	defer cancel()

	if err := sleepCtx(ctx, probeWarmup); err != nil {
		return probeRun{}, err
	}
	ok0, failed0 := ok.Load(), failed.Load()
	cpu0, err := p.CPU()
	if err != nil {
		return probeRun{}, err
	}
	start := time.Now()
	if err := sleepCtx(ctx, e.Plan.ProbeRun); err != nil {
		return probeRun{}, err
	}
	cpu1, err := p.CPU()
	if err != nil {
		return probeRun{}, err
	}
	run := probeRun{ok: ok.Load() - ok0, failed: failed.Load() - failed0, cpu: cpu1 - cpu0, wall: time.Since(start)}
	if run.ok == 0 {
		return run, fmt.Errorf("blackbox_exporter reported no successful %s probe of %s in %s; its log (%s) ends:\n%s",
			kind.name, kind.target(a), e.Plan.ProbeRun, p.LogPath, p.Tail(10))
	}
	return run, nil
}

// blackboxProbe makes one /probe request and reports whether the probe succeeded.
func blackboxProbe(ctx context.Context, client *http.Client, probeURL string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, probeURL, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(body), "\nprobe_success 1\n")
}

// pace offers rate tokens per second on tokens, in bursts every 10 ms; a token that finds
// every worker busy is not offered again, so a slow side simply runs below rate.
func pace(ctx context.Context, tokens chan<- struct{}, rate int) {
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := int64(now.Sub(start).Seconds() * float64(rate))
			for ; sent < due; sent++ {
				select {
				case tokens <- struct{}{}:
				default: // every worker busy: dropped
				}
			}
		}
	}
}

// Probes runs P4 (HTTP) and P5 (TCP): picket's scheduler and blackbox_exporter alternately
// probing the same target process, e.Plan.Repeats times each.
func (e *Env) Probes(ctx context.Context) ([]Row, error) {
	if e.Blackbox == "" {
		return nil, fmt.Errorf("%s is not on PATH: install it with `apt-get install -y prometheus-blackbox-exporter`", BlackboxProgram)
	}
	tp, addrs, err := StartTarget(ctx, e.Procs, e.Target)
	if err != nil {
		return nil, err
	}
	defer tp.Stop()
	var rows []Row
	for _, kind := range []probeKind{httpKind(), tcpKind()} {
		var pk, bb []probeRun
		for r := range e.Plan.Repeats {
			sides := []func() error{
				func() error {
					e.logf("P4/P5 %s run %d/%d: picket, %d checks at %d runs/s", kind.name, r+1, e.Plan.Repeats, e.Plan.ProbeChecks, e.Plan.ProbeRate)
					run, err := e.probePicket(ctx, kind, addrs)
					pk = append(pk, run)
					return err
				},
				func() error {
					e.logf("P4/P5 %s run %d/%d: blackbox_exporter, %d probes/s asked", kind.name, r+1, e.Plan.Repeats, e.Plan.ProbeRate)
					run, err := e.probeBlackbox(ctx, kind, addrs)
					bb = append(bb, run)
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
		row := Row{ID: "P4", Metric: "HTTP checks per CPU-second, new connection each (vs blackbox_exporter)", Target: "≥ 2×"}
		want := 2.0
		if kind.name == "tcp" {
			row = Row{ID: "P5", Metric: "TCP checks per CPU-second (vs blackbox_exporter)", Target: "≥ 1.5×"}
			want = 1.5
		}
		row.Unit = "/s"
		row.Picket = summarizeRuns(pk, probeRun.perCPUSecond)
		row.Baseline = summarizeRuns(bb, probeRun.perCPUSecond)
		row.Verdict = judge(row.Ratio() >= want)
		row.Note = fmt.Sprintf("%d runs of %s each after %s warm-up, alternating; picket: %d %s checks at a %s interval (collectors off), "+
			"runs counted from picket_check_runs_total{result=\"passing\"}; blackbox: %d concurrent /probe?module=%s requests paced to %d/s; "+
			"achieved rate picket %s/s, blackbox %s/s; failed probes picket %d, blackbox %d; target is a separate process (bench/cmd/target)",
			e.Plan.Repeats, e.Plan.ProbeRun, probeWarmup, e.Plan.ProbeChecks, kind.name,
			time.Duration(e.Plan.ProbeChecks)*time.Second/time.Duration(e.Plan.ProbeRate),
			blackboxWorkers, kind.module, e.Plan.ProbeRate,
			Num(summarizeRuns(pk, probeRun.rate).Median), Num(summarizeRuns(bb, probeRun.rate).Median),
			sumFailed(pk), sumFailed(bb))
		rows = append(rows, row)
	}
	return rows, nil
}

func summarizeRuns(runs []probeRun, f func(probeRun) float64) Stat {
	xs := make([]float64, 0, len(runs))
	for _, r := range runs {
		xs = append(xs, f(r))
	}
	return Summarize(xs)
}

func sumFailed(runs []probeRun) int64 {
	var n int64
	for _, r := range runs {
		n += r.failed
	}
	return n
}
