package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// schedTimeout is the timeout of the P6 checks; the slow ones get an answer only after
// three times this.
const schedTimeout = 2 * time.Second

// cadence is what one check's arrivals at the target say about its schedule.
type cadence struct {
	jitter []time.Duration // per arrival: lateness against the check's own best cadence
	missed int             // intervals without an arrival
	extra  int             // arrivals beyond one per interval (a double run)
}

// analyseCadence compares arrivals (any order) with a fixed cadence of interval anchored at
// the earliest offset. Intervals due after end-slack are not expected yet. With no arrival
// at all, every interval from begin to end-slack is missed.
func analyseCadence(arrivals []time.Time, interval time.Duration, begin, end time.Time, slack time.Duration) cadence {
	var c cadence
	if len(arrivals) == 0 {
		c.missed = int(end.Add(-slack).Sub(begin) / interval)
		return c
	}
	a := slices.Clone(arrivals)
	slices.SortFunc(a, func(x, y time.Time) int { return x.Compare(y) })
	first := a[0]
	kmax := int(end.Add(-slack).Sub(first) / interval)
	seen := map[int]bool{}
	offsets := make([]time.Duration, 0, len(a))
	for _, t := range a {
		since := t.Sub(first)
		k := int(math.Round(float64(since) / float64(interval)))
		offsets = append(offsets, since-time.Duration(k)*interval)
		if k > kmax {
			continue
		}
		if seen[k] {
			c.extra++
		}
		seen[k] = true
	}
	c.missed = max(kmax+1-len(seen), 0)
	base := slices.Min(offsets)
	for _, o := range offsets {
		c.jitter = append(c.jitter, o-base)
	}
	return c
}

// Schedule runs P6: SchedChecks HTTP checks at SchedInterval (the same start rate as 1000
// checks a minute when that is 200 at 12 s), SchedSlowPct percent of them against an
// endpoint that answers only after their timeout, for SchedRun; start jitter and missed
// intervals are measured from outside, at the target.
func (e *Env) Schedule(ctx context.Context) ([]Row, error) {
	tp, addrs, err := StartTarget(ctx, e.Procs, e.Target)
	if err != nil {
		return nil, err
	}
	defer tp.Stop()
	n := e.Plan.SchedChecks
	slow := n * e.Plan.SchedSlowPct / 100
	iv := e.Plan.SchedInterval
	var checks strings.Builder
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("s%03d", i)
		path := "/c/" + names[i]
		if i < slow {
			path = fmt.Sprintf("/slow/%s?d=%s", names[i], 3*schedTimeout)
		}
		fmt.Fprintf(&checks, "  - {name: %s, type: http, interval: %s, timeout: %s, http: {url: \"http://%s%s\"}}\n",
			names[i], iv, schedTimeout, addrs.HTTP, path)
	}
	perMin := float64(n) * float64(time.Minute) / float64(iv)
	e.logf("P6: %d checks at %s (%s starts/min), %d timing out, for %s", n, iv, Num(perMin), slow, e.Plan.SchedRun)
	p, addr, err := e.startPicket(ctx, "picket-sched", picketSetup{CollectorsInterval: 15 * time.Second, Checks: checks.String()})
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	begin := time.Now()
	if err := sleepCtx(ctx, e.Plan.SchedRun); err != nil {
		return nil, err
	}
	end := time.Now()
	arr, err := Arrivals(ctx, addrs.HTTP)
	if err != nil {
		return nil, err
	}
	s := NewScraper("http://" + addr + "/metrics")
	defer s.Close()
	body, _, err := s.Scrape(ctx)
	if err != nil {
		return nil, err
	}
	skipped := Sum(ParseExposition(body), "picket_check_skipped_total", nil)

	var jitter []float64
	var missed, extra int
	for _, name := range names {
		c := analyseCadence(arr[name], iv, begin, end, time.Second)
		jitter = append(jitter, Seconds(c.jitter)...)
		missed += c.missed
		extra += c.extra
	}
	if len(jitter) == 0 {
		return nil, fmt.Errorf("no check reached the target in %s; picket log %s ends:\n%s", e.Plan.SchedRun, p.LogPath, p.Tail(10))
	}
	p99 := Percentile(jitter, 99) * 1000
	j := Row{ID: "P6", Metric: "scheduling: start jitter p99", Unit: "ms", Picket: Summarize([]float64{p99}), Target: "≤ 100 ms"}
	j.Verdict = judge(len(jitter) > 0 && p99 <= 100)
	j.Note = fmt.Sprintf("%d HTTP checks at a %s interval (%s starts/min%s), %d (%d%%) against an endpoint answering after %s, beyond their %s timeout; "+
		"collectors on at 15 s; %s; arrival times recorded by the target process; a check's jitter is each arrival's offset from first arrival + k×interval, "+
		"minus the check's smallest offset; %d arrivals, max %s ms; picket_check_skipped_total %s; one run",
		n, iv, Num(perMin), scaledNote(n, iv), slow, e.Plan.SchedSlowPct, 3*schedTimeout, schedTimeout, e.Plan.SchedRun,
		len(jitter), Num(slices.Max(append(jitter, 0))*1000), Num(skipped))
	m := Row{ID: "P6", Metric: "scheduling: missed intervals", Picket: Summarize([]float64{float64(missed)}), Target: "0"}
	m.Verdict = judge(missed == 0 && extra == 0)
	if extra > 0 {
		m.Note = fmt.Sprintf("%d intervals had two runs", extra)
	}
	return []Row{j, m}, nil
}

// scaledNote says how a plan relates to "1000 checks/min".
func scaledNote(n int, iv time.Duration) string {
	if n*int(time.Minute/iv) == 1000 {
		return ", i.e. 1000 checks/min scaled from 1000 checks at 60 s to fit the run"
	}
	return ""
}
