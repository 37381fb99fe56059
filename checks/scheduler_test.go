package checks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/picket-dev/picket/internal/config"
)

// schedCheck returns a check of type "fake" with the given interval and timeout.
func schedCheck(name string, interval, timeout time.Duration) config.Check {
	return config.Check{
		Name: name, Type: "fake",
		Interval: config.Duration(interval), Timeout: config.Duration(timeout),
	}
}

// probeLog wraps probe functions and records, per check, when each run started and how many
// ran at once overall and per check.
type probeLog struct {
	mu          sync.Mutex
	starts      map[string][]time.Time
	running     int
	maxRunning  int
	perCheck    map[string]int
	maxPerCheck int
}

func newProbeLog() *probeLog {
	return &probeLog{starts: map[string][]time.Time{}, perCheck: map[string]int{}}
}

func (l *probeLog) wrap(f Prober) Prober {
	return func(ctx context.Context, c *config.Check) Result {
		l.mu.Lock()
		l.starts[c.Name] = append(l.starts[c.Name], time.Now())
		l.running++
		l.perCheck[c.Name]++
		l.maxRunning = max(l.maxRunning, l.running)
		l.maxPerCheck = max(l.maxPerCheck, l.perCheck[c.Name])
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.running--
			l.perCheck[c.Name]--
			l.mu.Unlock()
		}()
		return f(ctx, c)
	}
}

func (l *probeLog) calls(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.starts[name])
}

// stat reads a field under the lock.
func (l *probeLog) stat(f func(*probeLog) int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return f(l)
}

func (l *probeLog) startsOf(name string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.starts[name])
}

func passProbe(context.Context, *config.Check) Result { return Result{Status: Passing, Output: "ok"} }

// sleepProbe returns a prober that sleeps d (or until ctx ends) and passes.
func sleepProbe(d time.Duration) Prober {
	return func(ctx context.Context, _ *config.Check) Result {
		select {
		case <-time.After(d):
			return Result{Status: Passing, Output: "ok"}
		case <-ctx.Done():
			return Result{Status: Critical, Reason: ReasonTimeout, Output: ctx.Err().Error()}
		}
	}
}

// schedHarness is a running Scheduler with a manual metric reader.
type schedHarness struct {
	s      *Scheduler
	reader *sdkmetric.ManualReader
	cancel context.CancelFunc
	done   chan error
}

// startScheduler sets defs on a new scheduler and runs it until the test ends. Unset options
// default to node n1, a manual reader, and no start jitter (Rand returns 0).
func startScheduler(t *testing.T, o Options, defs []config.Check) *schedHarness {
	t.Helper()
	h := newHarness(t, o)
	h.s.Set(defs)
	h.run()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func newHarness(t *testing.T, o Options) *schedHarness {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	if o.Node == "" {
		o.Node = "n1"
	}
	if o.Meter == nil {
		o.Meter = mp.Meter("github.com/picket-dev/picket/checks")
	}
	if o.Rand == nil {
		o.Rand = func(int64) int64 { return 0 }
	}
	s, err := NewScheduler(o)
	if err != nil {
		t.Fatal(err)
	}
	return &schedHarness{s: s, reader: reader}
}

func (h *schedHarness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.s.Run(ctx) }()
}

// stop cancels Run and waits for it. In a synctest bubble a Run that never returns makes
// the bubble deadlock, which fails the test; outside, the wait is bounded by 5 s.
func (h *schedHarness) stop(t *testing.T) {
	t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
}

func (h *schedHarness) status(t *testing.T, name string) CheckStatus {
	t.Helper()
	for _, cs := range h.s.Snapshot() {
		if cs.Check.Name == name {
			return cs
		}
	}
	t.Fatalf("check %q not in snapshot", name)
	return CheckStatus{}
}

// collect reads the metrics, keyed by instrument name.
func (h *schedHarness) collect(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// checksWithSeries returns the check attribute values of an int64 gauge's data points.
func checksWithSeries(agg metricdata.Aggregation) []string {
	g, _ := agg.(metricdata.Gauge[int64])
	var out []string
	for _, dp := range g.DataPoints {
		v, _ := dp.Attributes.Value(attrCheck)
		out = append(out, v.AsString())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sumFor returns the int64 sum's value for the data point whose attributes include all of kv.
func sumFor(agg metricdata.Aggregation, kv ...attribute.KeyValue) int64 {
	s, _ := agg.(metricdata.Sum[int64])
	var total int64
next:
	for _, dp := range s.DataPoints {
		for _, want := range kv {
			if v, ok := dp.Attributes.Value(want.Key); !ok || v != want.Value {
				continue next
			}
		}
		total += dp.Value
	}
	return total
}

func TestNewSchedulerValidates(t *testing.T) {
	probers := map[string]Prober{"fake": passProbe}
	for _, o := range []Options{{Probers: probers}, {Node: "n1"}} {
		if _, err := NewScheduler(o); err == nil {
			t.Errorf("NewScheduler(%+v) succeeded, want an error", o)
		}
	}
	s, err := NewScheduler(Options{Node: "n1", Probers: probers})
	if err != nil {
		t.Fatalf("minimal options: %v", err)
	}
	if cap(s.sem) != DefaultMaxConcurrent {
		t.Errorf("default concurrency %d, want %d", cap(s.sem), DefaultMaxConcurrent)
	}
}

func TestSchedulerFixedCadence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newProbeLog()
		t0 := time.Now()
		startScheduler(t, Options{Probers: map[string]Prober{"fake": log.wrap(passProbe)}}, []config.Check{
			schedCheck("a", 10*time.Millisecond, 5*time.Millisecond),
			schedCheck("b", 25*time.Millisecond, 5*time.Millisecond),
		})
		time.Sleep(95 * time.Millisecond)
		synctest.Wait()
		for name, iv := range map[string]time.Duration{"a": 10 * time.Millisecond, "b": 25 * time.Millisecond} {
			starts := log.startsOf(name)
			if want := int(95*time.Millisecond/iv) + 1; len(starts) != want {
				t.Errorf("%s ran %d times in 95ms, want %d", name, len(starts), want)
			}
			for i, st := range starts {
				if want := t0.Add(time.Duration(i) * iv); !st.Equal(want) {
					t.Errorf("%s run %d started at +%v, want +%v", name, i, st.Sub(t0), want.Sub(t0))
				}
			}
		}
	})
}

func TestSchedulerStartJitter(t *testing.T) {
	t.Run("first run at Rand's offset", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			log := newProbeLog()
			var asked []int64
			var mu sync.Mutex
			t0 := time.Now()
			startScheduler(t, Options{
				Probers: map[string]Prober{"fake": log.wrap(passProbe)},
				Rand: func(n int64) int64 {
					mu.Lock()
					defer mu.Unlock()
					asked = append(asked, n)
					return n * 3 / 4
				},
			}, []config.Check{schedCheck("a", 40*time.Millisecond, 10*time.Millisecond)})
			time.Sleep(140 * time.Millisecond)
			synctest.Wait()
			want := []time.Duration{30 * time.Millisecond, 70 * time.Millisecond, 110 * time.Millisecond}
			var got []time.Duration
			for _, st := range log.startsOf("a") {
				got = append(got, st.Sub(t0))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("starts %v, want %v", got, want)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(asked) != 1 || asked[0] != int64(40*time.Millisecond) {
				t.Errorf("Rand called with %v, want once with the interval %d", asked, int64(40*time.Millisecond))
			}
		})
	})
	t.Run("default random offsets spread within the interval", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			log := newProbeLog()
			const iv = 100 * time.Millisecond
			var defs []config.Check
			for i := range 50 {
				defs = append(defs, schedCheck(fmt.Sprintf("c%02d", i), iv, 10*time.Millisecond))
			}
			h := newHarness(t, Options{Probers: map[string]Prober{"fake": log.wrap(passProbe)}, Rand: rand.Int64N})
			t0 := time.Now()
			h.s.Set(defs)
			h.run()
			defer h.stop(t)
			time.Sleep(250 * time.Millisecond)
			synctest.Wait()
			offsets := map[time.Duration]bool{}
			for _, d := range defs {
				starts := log.startsOf(d.Name)
				if len(starts) < 2 {
					t.Fatalf("%s ran %d times in 2.5 intervals", d.Name, len(starts))
				}
				off := starts[0].Sub(t0)
				if off < 0 || off >= iv {
					t.Errorf("%s first run at +%v, outside [0, %v)", d.Name, off, iv)
				}
				offsets[off] = true
				for i, st := range starts {
					if want := starts[0].Add(time.Duration(i) * iv); !st.Equal(want) {
						t.Errorf("%s run %d at +%v, want +%v (fixed cadence)", d.Name, i, st.Sub(t0), want.Sub(t0))
					}
				}
			}
			if len(offsets) < 25 {
				t.Errorf("only %d distinct first-run offsets among 50 checks; jitter is not spreading them", len(offsets))
			}
		})
	})
}

func TestSchedulerNoOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newProbeLog()
		h := startScheduler(t, Options{Probers: map[string]Prober{"fake": log.wrap(sleepProbe(25 * time.Millisecond))}},
			[]config.Check{schedCheck("slow", 10*time.Millisecond, 100*time.Millisecond)})
		time.Sleep(95 * time.Millisecond)
		synctest.Wait()
		// Runs start at 0, 30, 60, 90; the slots at 10, 20, 40, 50, 70, 80 find a run going.
		if n := log.calls("slow"); n != 4 {
			t.Errorf("slow check ran %d times, want 4", n)
		}
		if n := log.stat(func(l *probeLog) int { return l.maxPerCheck }); n != 1 {
			t.Errorf("a check ran %d times at once, want 1", n)
		}
		m := h.collect(t)
		if got := sumFor(m["picket.check.skipped"], attrCheck.String("slow"), attrNode.String("n1")); got != 6 {
			t.Errorf("skipped counter = %d, want 6", got)
		}
	})
}

func TestSchedulerConcurrencyBound(t *testing.T) {
	t.Run("at most MaxConcurrent at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			log := newProbeLog()
			t0 := time.Now()
			var defs []config.Check
			for i := range 10 {
				defs = append(defs, schedCheck(fmt.Sprintf("c%d", i), time.Second, 100*time.Millisecond))
			}
			startScheduler(t, Options{
				Probers:       map[string]Prober{"fake": log.wrap(sleepProbe(10 * time.Millisecond))},
				MaxConcurrent: 3,
			}, defs)
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			var offs []time.Duration
			for _, d := range defs {
				for _, st := range log.startsOf(d.Name) {
					offs = append(offs, st.Sub(t0))
				}
			}
			slices.Sort(offs)
			ms := time.Millisecond
			want := []time.Duration{0, 0, 0, 10 * ms, 10 * ms, 10 * ms, 20 * ms, 20 * ms, 20 * ms, 30 * ms}
			if fmt.Sprint(offs) != fmt.Sprint(want) {
				t.Errorf("start offsets %v, want %v", offs, want)
			}
			if n := log.stat(func(l *probeLog) int { return l.maxRunning }); n != 3 {
				t.Errorf("max concurrent probes %d, want 3", n)
			}
		})
	})
	t.Run("a slow check does not delay others beyond the bound", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			log := newProbeLog()
			slow, fast := log.wrap(sleepProbe(time.Second)), log.wrap(passProbe)
			h := newHarness(t, Options{
				Probers: map[string]Prober{"slow": slow, "fast": fast}, MaxConcurrent: 2,
			})
			var starts []time.Duration
			var mu sync.Mutex
			h.s.onStart = func(_ string, due, start time.Time) {
				mu.Lock()
				defer mu.Unlock()
				starts = append(starts, start.Sub(due))
			}
			s1 := schedCheck("slow", 100*time.Millisecond, 2*time.Second)
			s1.Type = "slow"
			f1 := schedCheck("fast", 10*time.Millisecond, 5*time.Millisecond)
			f1.Type = "fast"
			h.s.Set([]config.Check{s1, f1})
			h.run()
			defer h.stop(t)
			time.Sleep(495 * time.Millisecond)
			synctest.Wait()
			if n := log.calls("fast"); n != 50 {
				t.Errorf("fast check ran %d times in 495ms beside a slow one, want 50", n)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, late := range starts {
				if late != 0 {
					t.Fatalf("a run started %v after it was due", late)
				}
			}
		})
	})
}

func TestSchedulerResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deadlines sync.Map // check name → deadline minus start
		probers := map[string]Prober{
			"fake": func(ctx context.Context, c *config.Check) Result {
				dl, ok := ctx.Deadline()
				if ok {
					deadlines.Store(c.Name, time.Until(dl))
				}
				switch c.Name {
				case "hang":
					<-ctx.Done()
					return Result{Status: Critical, Reason: ReasonTimeout, Output: "timed out"}
				case "panic":
					panic("boom")
				}
				return Result{Status: Passing}
			},
		}
		unknownType := schedCheck("mystery", 50*time.Millisecond, 10*time.Millisecond)
		unknownType.Type = "carrier-pigeon"
		h := startScheduler(t, Options{Probers: probers}, []config.Check{
			schedCheck("hang", 50*time.Millisecond, 30*time.Millisecond),
			schedCheck("panic", 50*time.Millisecond, 10*time.Millisecond),
			schedCheck("ok", 50*time.Millisecond, 20*time.Millisecond),
			unknownType,
		})
		time.Sleep(60 * time.Millisecond)
		synctest.Wait()

		for name, want := range map[string]time.Duration{"hang": 30 * time.Millisecond, "ok": 20 * time.Millisecond} {
			if d, _ := deadlines.Load(name); d != want {
				t.Errorf("%s: prober's context deadline %v after start, want the check timeout %v", name, d, want)
			}
		}
		hang := h.status(t, "hang").Last
		if hang.Status != Critical || hang.Reason != ReasonTimeout || hang.Duration != 30*time.Millisecond {
			t.Errorf("hang: %+v, want critical timeout after 30ms", hang)
		}
		p := h.status(t, "panic")
		if p.Status != Critical || p.Last.Reason != ReasonPanic || !strings.Contains(p.Last.Output, "boom") {
			t.Errorf("panic: %v %+v, want critical with reason panic", p.Status, p.Last)
		}
		if n := len(p.Transitions); n != 1 {
			t.Errorf("panic: %d transitions, want 1 (Unknown→Critical)", n)
		}
		m := h.status(t, "mystery").Last
		if m.Status != Critical || m.Reason != ReasonConfig || !strings.Contains(m.Output, `"carrier-pigeon"`) ||
			!strings.Contains(m.Output, "fake") {
			t.Errorf("unknown type: %+v, want critical config naming the type and the known ones", m)
		}
		if ok := h.status(t, "ok"); ok.Status != Passing || len(ok.Transitions) != 1 || !ok.Transitions[0].Time.Equal(ok.Since) {
			t.Errorf("ok: %v since %v, transitions %+v", ok.Status, ok.Since, ok.Transitions)
		}
	})
}

func TestSchedulerSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newProbeLog()
		var healthy sync.Map // check name → bool (default healthy)
		probe := log.wrap(func(ctx context.Context, c *config.Check) Result {
			if v, ok := healthy.Load(c.Name); ok && !v.(bool) {
				return Result{Status: Critical, Reason: ReasonConnect}
			}
			if c.Name == "blocker" {
				<-ctx.Done()
				return Result{Status: Critical, Reason: ReasonCanceled}
			}
			return Result{Status: Passing}
		})
		t0 := time.Now()
		keep := schedCheck("keep", 20*time.Millisecond, 10*time.Millisecond)
		change := schedCheck("change", 20*time.Millisecond, 10*time.Millisecond)
		gone := schedCheck("gone", 20*time.Millisecond, 10*time.Millisecond)
		blocker := schedCheck("blocker", 20*time.Millisecond, time.Hour)
		// Every check's first run is a quarter interval (5 ms) in, so a check set at a
		// multiple of 5 ms runs at a known time, never at the instant of Set.
		var transitioned sync.Map // check name → true
		h := newHarness(t, Options{
			Probers:      map[string]Prober{"fake": probe},
			Rand:         func(n int64) int64 { return n / 4 },
			OnTransition: func(tr Transition) { transitioned.Store(tr.Check, true) },
		})
		h.s.Set([]config.Check{keep, change, gone, blocker})
		if got := len(h.s.Snapshot()); got != 4 {
			t.Fatalf("snapshot before Run has %d checks, want 4", got)
		}
		healthy.Store("keep", false)
		h.run()
		defer h.stop(t)

		time.Sleep(10 * time.Millisecond) // keep: critical at 5
		synctest.Wait()
		healthy.Store("keep", true)
		time.Sleep(30 * time.Millisecond) // keep: passing at 25
		synctest.Wait()
		before := h.status(t, "keep")
		if before.Status != Passing || len(before.Transitions) != 2 {
			t.Fatalf("keep before Set: %v with %d transitions", before.Status, len(before.Transitions))
		}
		if names := checksWithSeries(h.collect(t)["picket.check.up"]); fmt.Sprint(names) != "[blocker change gone keep]" {
			t.Fatalf("up series before Set: %v", names)
		}

		// At +40ms: keep unchanged (a fresh copy), change modified, gone removed, added new.
		changed := change
		changed.Timeout = config.Duration(15 * time.Millisecond)
		added := schedCheck("added", 20*time.Millisecond, 10*time.Millisecond)
		keepCopy := keep
		setAt := time.Now()
		h.s.Set([]config.Check{added, keepCopy, changed})
		goneCalls := log.calls("gone")

		after := h.status(t, "keep")
		if after.Status != before.Status || !after.Since.Equal(before.Since) || len(after.Transitions) != 2 ||
			!after.Last.Time.Equal(before.Last.Time) {
			t.Errorf("unchanged check lost its state: before %+v after %+v", before, after)
		}
		ch := h.status(t, "change")
		if ch.Status != Unknown || len(ch.Transitions) != 0 || !ch.Since.Equal(setAt) || ch.Check.Timeout != changed.Timeout {
			t.Errorf("changed check did not start fresh: %+v", ch)
		}
		names := []string{}
		for _, cs := range h.s.Snapshot() {
			names = append(names, cs.Check.Name)
		}
		if fmt.Sprint(names) != "[added change keep]" {
			t.Errorf("snapshot after Set: %v, want sorted [added change keep]", names)
		}

		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if n := log.calls("gone"); n != goneCalls {
			t.Errorf("removed check ran %d more times", n-goneCalls)
		}
		if n := log.stat(func(l *probeLog) int { return l.running }); n != 0 {
			t.Errorf("%d probes still running; the removed blocker's run was not canceled", n)
		}
		if _, ok := transitioned.Load("blocker"); ok {
			t.Error("the removed blocker's canceled run was applied and reported as a transition")
		}
		// The unchanged check kept its schedule: runs at 5, 25, 45, ... from t0.
		for i, st := range log.startsOf("keep") {
			if want := t0.Add(5*time.Millisecond + time.Duration(i)*20*time.Millisecond); !st.Equal(want) {
				t.Errorf("keep run %d at +%v, want +%v", i, st.Sub(t0), want.Sub(t0))
			}
		}
		// New and changed checks start fresh: first run a quarter interval after Set.
		for _, name := range []string{"added", "change"} {
			if st := log.startsOf(name); len(st) == 0 || !slices.Contains(st, setAt.Add(5*time.Millisecond)) {
				t.Errorf("%s: runs at %v, want one 5ms after Set at %v", name, st, setAt)
			}
		}
		m := h.collect(t)
		for _, inst := range []string{"picket.check.up", "picket.check.state", "picket.check.flapping"} {
			if names := checksWithSeries(m[inst]); fmt.Sprint(names) != "[added change keep]" {
				t.Errorf("%s series after Set: %v, want [added change keep]", inst, names)
			}
		}
	})
}

func TestSchedulerRunStopsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var started, returned atomic.Int32
		probe := func(ctx context.Context, _ *config.Check) Result {
			started.Add(1)
			<-ctx.Done()
			time.Sleep(5 * time.Millisecond) // cleanup that Run must wait for
			returned.Add(1)
			return Result{Status: Critical, Reason: ReasonCanceled}
		}
		var transitions atomic.Int32
		h := newHarness(t, Options{
			Probers:      map[string]Prober{"fake": probe},
			OnTransition: func(Transition) { transitions.Add(1) },
		})
		h.s.Set([]config.Check{
			schedCheck("a", 10*time.Millisecond, time.Hour),
			schedCheck("b", 10*time.Millisecond, time.Hour),
		})
		h.run()
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if started.Load() != 2 {
			t.Fatalf("%d probes started, want 2", started.Load())
		}
		h.cancel()
		if err := <-h.done; err != nil {
			t.Errorf("Run returned %v", err)
		}
		h.cancel = nil
		if returned.Load() != 2 {
			t.Errorf("Run returned with %d of 2 probes still in flight", 2-returned.Load())
		}
		if transitions.Load() != 0 {
			t.Errorf("shutdown produced %d transitions; canceled runs must be dropped", transitions.Load())
		}
		if st := h.status(t, "a"); st.Status != Unknown {
			t.Errorf("canceled run changed the state to %v", st.Status)
		}
		if err := h.s.Run(context.Background()); !errors.Is(err, ErrAlreadyRun) {
			t.Errorf("second Run: %v, want ErrAlreadyRun", err)
		}
	})
}

func TestSchedulerOnTransition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := []Status{Passing, Passing, Critical, Critical, Passing}
		var n atomic.Int32
		probe := func(context.Context, *config.Check) Result {
			i := int(n.Add(1)) - 1
			if i >= len(script) {
				return Result{Status: Passing}
			}
			r := Result{Status: script[i]}
			if r.Status != Passing {
				r.Reason = ReasonStatus
			}
			return r
		}
		var mu sync.Mutex
		var got []Transition
		c := schedCheck("api", 10*time.Millisecond, 5*time.Millisecond)
		c.Thresholds.FailuresBeforeCritical = 2
		h := startScheduler(t, Options{
			Probers: map[string]Prober{"fake": probe},
			OnTransition: func(tr Transition) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, tr)
			},
		}, []config.Check{c})
		time.Sleep(45 * time.Millisecond)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		var desc []string
		for _, tr := range got {
			if tr.Check != "api" || tr.Node != "n1" {
				t.Errorf("transition for %s/%s", tr.Check, tr.Node)
			}
			desc = append(desc, fmt.Sprintf("%v>%v", tr.From, tr.To))
		}
		want := "[unknown>passing passing>warning warning>critical critical>passing]"
		if fmt.Sprint(desc) != want {
			t.Errorf("transitions %v, want %v", desc, want)
		}
		if snap := h.status(t, "api").Transitions; len(snap) != len(got) {
			t.Errorf("snapshot has %d transitions, callback saw %d", len(snap), len(got))
		}
	})
}

func TestSchedulerRunOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deadline time.Duration
		probe := func(ctx context.Context, c *config.Check) Result {
			dl, _ := ctx.Deadline()
			deadline = time.Until(dl)
			return Result{Status: Critical, Reason: ReasonStatus, Output: "503 Service Unavailable"}
		}
		h := newHarness(t, Options{Probers: map[string]Prober{"fake": probe}})
		c := schedCheck("api", time.Minute, 3*time.Second)
		h.s.Set([]config.Check{c})
		r := h.s.RunOnce(context.Background(), c)
		if r.Status != Critical || r.Output != "503 Service Unavailable" || r.Time.IsZero() {
			t.Errorf("RunOnce = %+v", r)
		}
		if deadline != 3*time.Second {
			t.Errorf("prober deadline %v, want the check timeout 3s", deadline)
		}
		if st := h.status(t, "api"); st.Status != Unknown || len(st.Transitions) != 0 {
			t.Errorf("RunOnce touched the state: %+v", st)
		}

		// With every slot busy, RunOnce waits and honours its context.
		for range cap(h.s.sem) {
			h.s.sem <- struct{}{}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		if r := h.s.RunOnce(ctx, c); r.Reason != ReasonCanceled {
			t.Errorf("RunOnce with no free slot = %+v, want reason canceled", r)
		}
	})
}

// TestSchedulerHTTP runs a check against a real HTTP server with a tiny prober written here.
func TestSchedulerHTTP(t *testing.T) {
	var failing atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	probe := func(ctx context.Context, c *config.Check) Result {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.HTTP.URL, nil)
		if err != nil {
			return Result{Status: Critical, Reason: ReasonConfig, Output: err.Error()}
		}
		resp, err := client.Do(req)
		if err != nil {
			return Result{Status: Critical, Reason: ReasonConnect, Output: err.Error()}
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return Result{Status: Critical, Reason: ReasonStatus, Output: resp.Status}
		}
		return Result{Status: Passing, Output: resp.Status}
	}
	c := config.Check{
		Name: "web", Type: config.TypeHTTP,
		Interval: config.Duration(20 * time.Millisecond), Timeout: config.Duration(time.Second),
		HTTP: &config.HTTPCheck{URL: srv.URL},
	}
	h := startScheduler(t, Options{Probers: map[string]Prober{config.TypeHTTP: probe}, Rand: func(n int64) int64 {
		return n / 2
	}}, []config.Check{c})

	waitFor := func(what string, cond func(CheckStatus) bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			st := h.status(t, "web")
			if cond(st) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; last status %v %+v", what, st.Status, st.Last)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("passing", func(st CheckStatus) bool { return st.Status == Passing && st.Last.Output == "200 OK" })
	failing.Store(true)
	waitFor("critical", func(st CheckStatus) bool {
		return st.Status == Critical && st.Last.Reason == ReasonStatus && st.Last.Output == "503 Service Unavailable"
	})
	h.stop(t)
}

// latenessStats runs n checks of the given interval for d in real time and returns the
// start lateness (actual start minus due time) of every run, sorted. It fails tb if a run was
// due anywhere but on its check's grid (first due time plus a multiple of the interval).
func latenessStats(tb testing.TB, n int, interval, d time.Duration) []time.Duration {
	tb.Helper()
	probe := func(ctx context.Context, _ *config.Check) Result {
		select { // a little work, as a quick real probe would do
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
		}
		return Result{Status: Passing}
	}
	s, err := NewScheduler(Options{Node: "n1", Probers: map[string]Prober{"fake": probe}})
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	var late []time.Duration
	first := map[string]time.Time{}
	offGrid := 0
	s.onStart = func(check string, due, start time.Time) {
		mu.Lock()
		defer mu.Unlock()
		late = append(late, start.Sub(due))
		f, ok := first[check]
		if !ok {
			first[check] = due
		} else if due.Sub(f)%interval != 0 {
			offGrid++
		}
	}
	defs := make([]config.Check, n)
	for i := range defs {
		defs[i] = schedCheck(fmt.Sprintf("c%04d", i), interval, interval/2)
	}
	s.Set(defs)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		tb.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if offGrid > 0 {
		tb.Errorf("%d runs were due off their check's fixed grid: the schedule drifts", offGrid)
	}
	slices.Sort(late)
	return late
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// TestSchedulerStartLateness runs 500 checks every 250 ms (120000 checks/min, far above the
// 1000/min target) for 1 s and requires a p99 start lateness of at most 100 ms.
func TestSchedulerStartLateness(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time load test")
	}
	late := latenessStats(t, 500, 250*time.Millisecond, time.Second)
	if len(late) < 1500 {
		t.Fatalf("only %d runs started; want about 2000", len(late))
	}
	p50, p99, worst := percentile(late, 0.5), percentile(late, 0.99), late[len(late)-1]
	t.Logf("%d runs: start lateness p50 %v p99 %v max %v", len(late), p50, p99, worst)
	if p99 > 100*time.Millisecond {
		t.Errorf("p99 start lateness %v, want ≤ 100ms", p99)
	}
}

// BenchmarkScheduler measures start lateness with 1000 checks every second for 3 s
// (60000 checks/min) and reports its percentiles.
func BenchmarkScheduler(b *testing.B) {
	for b.Loop() {
		late := latenessStats(b, 1000, time.Second, 3*time.Second)
		b.ReportMetric(float64(len(late)), "runs")
		b.ReportMetric(float64(percentile(late, 0.5).Microseconds())/1000, "p50-late-ms")
		b.ReportMetric(float64(percentile(late, 0.99).Microseconds())/1000, "p99-late-ms")
		b.ReportMetric(float64(late[len(late)-1].Microseconds())/1000, "max-late-ms")
	}
}

// TestSchedulerSetWithStartNow: a check named in StartNow runs at once when it starts
// fresh, while the others keep their jitter, and a kept check's schedule is not touched.
func TestSchedulerSetWithStartNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newProbeLog()
		const iv = 100 * time.Millisecond
		h := newHarness(t, Options{
			Probers: map[string]Prober{"fake": log.wrap(passProbe)},
			Rand:    func(n int64) int64 { return n / 2 },
		})
		h.run()
		defer h.stop(t)
		t0 := time.Now()
		h.s.SetWith([]config.Check{schedCheck("now", iv, 10*time.Millisecond), schedCheck("later", iv, 10*time.Millisecond)},
			SetOptions{StartNow: map[string]bool{"now": true}})
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		// Kept as is: StartNow does not reset an unchanged check.
		t1 := time.Now()
		h.s.SetWith([]config.Check{schedCheck("now", iv, 10*time.Millisecond), schedCheck("later", iv, 10*time.Millisecond)},
			SetOptions{StartNow: map[string]bool{"now": true, "later": true}})
		time.Sleep(240 * time.Millisecond)
		synctest.Wait()
		starts := func(name string) []time.Duration {
			var out []time.Duration
			for _, st := range log.startsOf(name) {
				out = append(out, st.Sub(t0))
			}
			return out
		}
		if got, want := fmt.Sprint(starts("now")), fmt.Sprint([]time.Duration{0, iv, 2 * iv}); got != want {
			t.Errorf("StartNow check ran at %s, want %s", got, want)
		}
		if got, want := fmt.Sprint(starts("later")), fmt.Sprint([]time.Duration{iv / 2, 3 * iv / 2, 5 * iv / 2}); got != want {
			t.Errorf("jittered check ran at %s, want %s (kept despite StartNow at +%v)", got, want, t1.Sub(t0))
		}
	})
}

// TestSchedulerChanged: the channel of Changed closes at the next result and at Set, and
// not otherwise.
func TestSchedulerChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{Probers: map[string]Prober{"fake": passProbe}})
		closed := func(ch <-chan struct{}) bool {
			select {
			case <-ch:
				return true
			default:
				return false
			}
		}
		ch := h.s.Changed()
		h.s.Set([]config.Check{schedCheck("a", 100*time.Millisecond, 10*time.Millisecond)})
		if !closed(ch) {
			t.Fatal("Set did not close the Changed channel")
		}
		ch = h.s.Changed()
		h.run()
		defer h.stop(t)
		synctest.Wait() // the first run (Rand gives 0) is done
		if !closed(ch) {
			t.Fatal("a result did not close the Changed channel")
		}
		ch = h.s.Changed()
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		if closed(ch) {
			t.Fatal("the Changed channel closed with no result and no Set")
		}
		time.Sleep(60 * time.Millisecond)
		synctest.Wait()
		if !closed(ch) {
			t.Fatal("the second result did not close the Changed channel")
		}
		if st := h.status(t, "a"); st.Status != Passing {
			t.Errorf("status %v, want passing", st.Status)
		}
	})
}
