package checks

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/picket-dev/picket/internal/config"
)

// DefaultMaxConcurrent is the number of probes a Scheduler runs at once when
// Options.MaxConcurrent is 0.
const DefaultMaxConcurrent = 64

// fallbackInterval is used for a check without an interval (config defaults normally set one).
const fallbackInterval = 10 * time.Second

// ErrAlreadyRun is returned by Run when the Scheduler is running or has run before.
var ErrAlreadyRun = errors.New("scheduler: Run called twice")

// Options configure a Scheduler.
type Options struct {
	// Node is this agent's node name, put on every transition and metric. Required.
	Node string
	// Probers maps a check type (config.TypeHTTP, ...) to its prober. Required. A check whose
	// type has no prober gets a critical result with reason config.
	Probers map[string]Prober
	// Meter creates the check metrics; nil disables them.
	Meter metric.Meter
	// Logger receives state changes, skipped runs (debug) and prober panics; nil discards.
	Logger *slog.Logger
	// MaxConcurrent bounds the probes running at once, scheduled and RunOnce together.
	// 0 means DefaultMaxConcurrent.
	MaxConcurrent int
	// OnTransition, when set, is called after each change of a check's status or flapping
	// flag. It is called from scheduler goroutines, one call at a time per check and in
	// order for that check, but concurrently for different checks; it must not block long
	// (the check does not run again until it returns).
	OnTransition func(Transition)
	// Now returns the current time; nil means time.Now. Waiting uses real timers, so Now
	// must follow the wall clock (use testing/synctest for deterministic time).
	Now func() time.Time
	// Rand returns a uniform random number in [0, n) for n > 0, used for start jitter; nil
	// means math/rand/v2.Int64N. It is called under the scheduler's lock.
	Rand func(n int64) int64
}

// CheckStatus is the current state of one check on this node.
type CheckStatus struct {
	Check       config.Check // the definition; treat as read-only
	Node        string
	Status      Status
	Flapping    bool
	Since       time.Time    // when Status last changed, or when the definition was set
	Last        Result       // zero before the first result
	Transitions []Transition // the most recent ones, oldest first, at most 20
}

// Scheduler runs checks on their intervals and tracks their states. One goroutine (Run's)
// keeps every check in a heap ordered by next due time and starts each run in its own
// goroutine, so thousands of checks cost one timer. Each check's first run is at a random
// point within its first interval (at once for SetOptions.StartNow), then it runs at a
// fixed cadence; a check never overlaps itself (a run still going when the next is due
// makes that slot skipped and counted in picket_check_skipped_total), and at most
// MaxConcurrent probes run at once.
//
// All methods are safe for concurrent use.
type Scheduler struct {
	node         string
	probers      map[string]Prober
	log          *slog.Logger
	now          func() time.Time
	randN        func(int64) int64
	onTransition func(Transition)
	sem          chan struct{} // one token per running probe
	metrics      *checkMetrics
	wake         chan struct{} // capacity 1: the heap changed, recompute the timer

	// onStart, when set by tests, is called when a scheduled probe of check starts, with the
	// time it was due; it measures start lateness and cadence.
	onStart func(check string, due, start time.Time)

	mu      sync.Mutex
	checks  map[string]*entry
	due     dueHeap
	started bool          // Run has begun: new entries are put on the heap at once
	changed chan struct{} // closed at the next applied result or Set; see Changed
}

// entry is one check definition being scheduled. def, attrs, interval and timeout never
// change (a changed definition gets a new entry); the other fields are guarded by
// Scheduler.mu.
type entry struct {
	def      config.Check
	attrs    attribute.Set // check, node
	interval time.Duration
	timeout  time.Duration

	tracker    *Tracker
	startNow   bool      // the first run is due at once instead of after a random jitter
	next       time.Time // next due time; zero until scheduled
	index      int       // position in the heap, -1 when not in it
	running    bool
	cancel     context.CancelFunc // cancels the in-flight run
	certExpiry time.Time          // latest non-zero Result.CertExpiry
}

// NewScheduler returns a Scheduler with no checks; call Set to give it some and Run to start.
// Its gauges stay registered on o.Meter for the life of the MeterProvider, so make one
// Scheduler per MeterProvider (a config reload calls Set, not NewScheduler).
func NewScheduler(o Options) (*Scheduler, error) {
	if o.Node == "" {
		return nil, errors.New("new scheduler: Options.Node is empty; pass this agent's node name")
	}
	if len(o.Probers) == 0 {
		return nil, errors.New("new scheduler: Options.Probers is empty; pass the map of check types to probers")
	}
	s := &Scheduler{
		node:         o.Node,
		probers:      o.Probers,
		log:          o.Logger,
		now:          o.Now,
		randN:        o.Rand,
		onTransition: o.OnTransition,
		wake:         make(chan struct{}, 1),
		checks:       map[string]*entry{},
		changed:      make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "checks")
	if s.now == nil {
		s.now = time.Now
	}
	if s.randN == nil {
		s.randN = rand.Int64N
	}
	n := o.MaxConcurrent
	if n <= 0 {
		n = DefaultMaxConcurrent
	}
	s.sem = make(chan struct{}, n)
	meter := o.Meter
	if meter == nil {
		meter = noop.Meter{}
	}
	var err error
	if s.metrics, err = newCheckMetrics(meter, s.gaugeSamples); err != nil {
		return nil, fmt.Errorf("new scheduler: %w", err)
	}
	return s, nil
}

// Set replaces the checks. A definition deep-equal to the one already running keeps its
// state, history and schedule; a changed or new one starts fresh (state Unknown, a new
// jittered first run); a removed one stops, its in-flight run is canceled and its result
// dropped, and its gauge series disappear. Names should be unique; for a repeated name the
// last definition wins and the repetition is logged. Set may be called before or during Run.
func (s *Scheduler) Set(defs []config.Check) { s.SetWith(defs, SetOptions{}) }

// SetOptions modify one SetWith call.
type SetOptions struct {
	// StartNow names checks whose first run is due at once instead of at a random point
	// within their first interval, when this call starts them fresh (new or changed). It
	// does not touch the schedule of a check that is kept. Used for cluster checks that
	// were just assigned to this node, so that re-homing does not wait for the jitter.
	StartNow map[string]bool
}

// SetWith is Set with options.
func (s *Scheduler) SetWith(defs []config.Check, o SetOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	next := make(map[string]*entry, len(defs))
	kept := 0
	for _, d := range defs {
		if _, dup := next[d.Name]; dup {
			s.log.Error("check name repeated; keeping the last definition, give each check a unique name",
				"check", d.Name)
		}
		if old, ok := s.checks[d.Name]; ok && reflect.DeepEqual(old.def, d) {
			next[d.Name] = old
			kept++
			continue
		}
		e := s.newEntry(d, now)
		e.startNow = o.StartNow[d.Name]
		next[d.Name] = e
	}
	removed := 0
	for name, old := range s.checks {
		if next[name] != old {
			s.remove(old)
			removed++
		}
	}
	s.checks = next
	if s.started {
		for _, e := range next {
			if e.next.IsZero() {
				s.schedule(e, now)
			}
		}
		s.poke()
	}
	s.notifyLocked()
	s.log.Info("checks set", "checks", len(next), "kept", kept,
		"started", len(next)-kept, "stopped", removed)
}

// Changed returns a channel that is closed at the next change of what Snapshot returns:
// a result applied to a check's state, or a Set. Take the channel before reading the
// Snapshot so that no change is missed. It lets a caller follow results without a hook
// wired at construction.
func (s *Scheduler) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// notifyLocked wakes the waiters of Changed. Callers hold s.mu.
func (s *Scheduler) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// newEntry returns a fresh, unscheduled entry for d.
func (s *Scheduler) newEntry(d config.Check, now time.Time) *entry {
	e := &entry{
		def:      d,
		attrs:    attribute.NewSet(attrCheck.String(d.Name), attrNode.String(s.node)),
		interval: intervalOf(&d),
		timeout:  timeoutOf(&d),
		tracker:  NewTracker(&d, s.node, now),
		index:    -1,
	}
	return e
}

// schedule puts e on the heap, due at a random point within its first interval from now,
// or at once when e.startNow. Callers hold s.mu.
func (s *Scheduler) schedule(e *entry, now time.Time) {
	e.next = now
	if !e.startNow {
		e.next = now.Add(time.Duration(s.randN(int64(e.interval))))
	}
	heap.Push(&s.due, e)
}

// remove stops e: off the heap, in-flight run canceled. Callers hold s.mu.
func (s *Scheduler) remove(e *entry) {
	if e.index >= 0 {
		heap.Remove(&s.due, e.index)
	}
	if e.cancel != nil {
		e.cancel()
	}
}

// poke wakes Run's loop to recompute its timer.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run runs the checks until ctx is done, then cancels the runs in flight, waits for their
// probers to return (their results are dropped) and returns nil. It returns ErrAlreadyRun
// if called a second time.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return ErrAlreadyRun
	}
	s.started = true
	now := s.now()
	for _, e := range s.checks {
		s.schedule(e, now)
	}
	s.mu.Unlock()

	var runs sync.WaitGroup
	defer runs.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(s.dispatch(ctx, &runs))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
		}
	}
}

// dispatch starts every run that is due and returns how long until the next one.
func (s *Scheduler) dispatch(ctx context.Context, runs *sync.WaitGroup) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for len(s.due) > 0 {
		e := s.due[0]
		if e.next.After(now) {
			return e.next.Sub(now)
		}
		due := e.next
		// Fixed cadence from the first due time: slots that already passed are skipped.
		e.next = e.next.Add(e.interval)
		missed := 0
		if !e.next.After(now) {
			missed = int(now.Sub(e.next)/e.interval) + 1
			e.next = e.next.Add(time.Duration(missed) * e.interval)
		}
		heap.Fix(&s.due, 0)
		if e.running {
			missed++
		} else {
			s.start(ctx, runs, e, due)
		}
		if missed > 0 {
			s.metrics.recordSkip(ctx, e.attrs, missed)
			s.log.Debug("check run skipped: the previous run is still going or the scheduler fell behind",
				"check", e.def.Name, "skipped", missed, "running", e.running)
		}
	}
	return time.Hour
}

// start launches one scheduled run of e. Callers hold s.mu.
func (s *Scheduler) start(ctx context.Context, runs *sync.WaitGroup, e *entry, due time.Time) {
	runCtx, cancel := context.WithCancel(ctx)
	e.running, e.cancel = true, cancel
	runs.Add(1)
	go func() {
		defer runs.Done()
		defer cancel()
		s.runScheduled(runCtx, e, due)
	}()
}

// runScheduled waits for a probe slot, runs e's prober and applies the result, unless the
// run was canceled (shutdown or removal) in the meantime.
func (s *Scheduler) runScheduled(ctx context.Context, e *entry, due time.Time) {
	defer func() {
		s.mu.Lock()
		e.running, e.cancel = false, nil
		s.mu.Unlock()
	}()
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	if s.onStart != nil {
		s.onStart(e.def.Name, due, s.now())
	}
	r := s.probe(ctx, e.def, e.timeout)
	<-s.sem

	s.mu.Lock()
	// remove cancels ctx under s.mu, so this also drops the result of a removed check.
	if ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	tr, changed := e.tracker.Observe(r, s.now())
	if !r.CertExpiry.IsZero() {
		e.certExpiry = r.CertExpiry
	}
	s.notifyLocked()
	s.mu.Unlock()

	s.metrics.recordRun(ctx, e.def.Name, s.node, r)
	if !changed {
		return
	}
	s.log.Info("check state changed", "check", tr.Check, "from", tr.From.String(), "to", tr.To.String(),
		"flapping", tr.Flapping, "reason", r.Reason, "output", r.Output)
	if s.onTransition != nil {
		s.onTransition(tr)
	}
}

// RunOnce runs c once with its timeout, within the concurrency bound, and returns the result
// without touching any check's state. It is for ad-hoc runs (/v1/run, /v1/sweep).
func (s *Scheduler) RunOnce(ctx context.Context, c config.Check) Result {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return Result{
			Status: Critical, Reason: ReasonCanceled, Time: s.now(),
			Output: fmt.Sprintf("canceled while waiting for a free probe slot (%d busy): %v", cap(s.sem), ctx.Err()),
		}
	}
	return s.probe(ctx, c, timeoutOf(&c))
}

// probe calls c's prober with a deadline of timeout, turning a missing prober or a panic into
// a critical result, and fills Time and Duration when the prober left them zero.
func (s *Scheduler) probe(ctx context.Context, c config.Check, timeout time.Duration) (r Result) {
	start := s.now()
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("prober panicked", "check", c.Name, "type", c.Type, "panic", fmt.Sprint(v),
				"stack", string(debug.Stack()))
			r = Result{
				Status: Critical, Reason: ReasonPanic,
				Output: fmt.Sprintf("the %s prober panicked: %v (a bug in picket; please report it)", c.Type, v),
			}
		}
		if r.Time.IsZero() {
			r.Time = start
		}
		if r.Duration == 0 {
			r.Duration = s.now().Sub(start)
		}
	}()
	p, ok := s.probers[c.Type]
	if !ok {
		return Result{
			Status: Critical, Reason: ReasonConfig,
			Output: fmt.Sprintf("check %q has type %q, which has no prober; use one of %s",
				c.Name, c.Type, strings.Join(slices.Sorted(maps.Keys(s.probers)), ", ")),
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return p(ctx, &c)
}

// Snapshot returns the state of every check, sorted by name.
func (s *Scheduler) Snapshot() []CheckStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]CheckStatus, 0, len(s.checks))
	for _, e := range s.checks {
		out = append(out, CheckStatus{
			Check:       e.def,
			Node:        s.node,
			Status:      e.tracker.Status(),
			Flapping:    e.tracker.Flapping(),
			Since:       e.tracker.Since(),
			Last:        e.tracker.Last(),
			Transitions: e.tracker.Transitions(),
		})
	}
	slices.SortFunc(out, func(a, b CheckStatus) int { return strings.Compare(a.Check.Name, b.Check.Name) })
	return out
}

// gaugeSamples copies what the gauge callback needs from every current check.
func (s *Scheduler) gaugeSamples() []gaugeSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]gaugeSample, 0, len(s.checks))
	for _, e := range s.checks {
		g := gaugeSample{
			attrs:    e.attrs,
			check:    e.def.Name,
			node:     s.node,
			status:   e.tracker.Status(),
			flapping: e.tracker.Flapping(),
			phases:   e.tracker.Last().Phases,
		}
		if !e.certExpiry.IsZero() {
			g.certExpiry = float64(e.certExpiry.UnixNano()) / 1e9
		}
		out = append(out, g)
	}
	return out
}

// intervalOf returns c's interval, or fallbackInterval when it has none.
func intervalOf(c *config.Check) time.Duration {
	if d := c.Interval.D(); d > 0 {
		return d
	}
	return fallbackInterval
}

// timeoutOf returns c's timeout, or its interval when it has none.
func timeoutOf(c *config.Check) time.Duration {
	if d := c.Timeout.D(); d > 0 {
		return d
	}
	return intervalOf(c)
}

// dueHeap orders entries by next due time; it implements heap.Interface.
type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
