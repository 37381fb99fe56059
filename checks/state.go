package checks

import (
	"time"

	"github.com/picket-dev/picket/internal/config"
)

// historyLen is how many recent transitions a Tracker keeps.
const historyLen = 20

// Transition is a change of a check's reported status or of its flapping flag on one node.
// From equals To when only Flapping changed.
type Transition struct {
	Check    string    `json:"check"`
	Node     string    `json:"node"`
	From     Status    `json:"from"`
	To       Status    `json:"to"`
	Flapping bool      `json:"flapping"`
	Result   Result    `json:"result"` // the result that caused the change
	Time     time.Time `json:"time"`
}

// change is one change of the threshold state, kept while it is inside the flap window.
type change struct {
	at       time.Time
	from, to Status
}

// Tracker turns one check's results into its state, applying the check's thresholds and
// flap detection. It is pure: no goroutines, no clock (time is passed in). It is not safe for
// concurrent use; the Scheduler serialises calls under its lock.
//
// Thresholds (values below 1 count as 1): SuccessBeforePassing consecutive passing results
// make the state Passing. A streak of consecutive non-passing results makes it Warning after
// FailuresBeforeWarning results and, after FailuresBeforeCritical, the worst status in the
// streak: Critical if any result was Critical, Warning if they were all Warning. Until a
// threshold is reached the state stays what it was.
//
// Flap detection (off when Flap.Window or Flap.MaxTransitions is 0): the tracker counts the
// changes of the threshold state that happened less than Window ago, not counting the first
// change out of Unknown. When there are more than MaxTransitions, the check is flapping and
// its reported status is the worst threshold state held during the window; once the count
// drops to MaxTransitions or fewer it stops flapping and reports its threshold state again.
// The window is re-evaluated on each Observe, so flapping ends at the first result after the
// old changes have aged out.
type Tracker struct {
	check, node string
	th          config.Thresholds
	window      time.Duration
	maxChanges  int

	base     Status // state from the thresholds alone
	status   Status // reported status
	flapping bool
	since    time.Time
	last     Result

	okStreak, failStreak int
	worstStreak          Status // worst status in the current failure streak

	changes []change     // base changes inside the window, oldest first
	history []Transition // reported transitions, oldest first, at most historyLen
}

// NewTracker returns the tracker of check c on node, in state Unknown since now.
func NewTracker(c *config.Check, node string, now time.Time) *Tracker {
	t := &Tracker{
		check:      c.Name,
		node:       node,
		th:         c.Thresholds,
		window:     c.Flap.Window.D(),
		maxChanges: c.Flap.MaxTransitions,
		since:      now,
	}
	t.th.SuccessBeforePassing = max(t.th.SuccessBeforePassing, 1)
	t.th.FailuresBeforeWarning = max(t.th.FailuresBeforeWarning, 1)
	t.th.FailuresBeforeCritical = max(t.th.FailuresBeforeCritical, 1)
	if t.window <= 0 || t.maxChanges <= 0 {
		t.window, t.maxChanges = 0, 0
	}
	return t
}

// Observe applies result r, received at now. It returns the transition and true when the
// reported status or the flapping flag changed.
func (t *Tracker) Observe(r Result, now time.Time) (Transition, bool) {
	t.last = r
	t.applyThresholds(r, now)
	t.pruneChanges(now)

	status, flapping := t.base, false
	if t.maxChanges > 0 && len(t.changes) > t.maxChanges {
		flapping = true
		status = t.worstInWindow()
	}
	if status == t.status && flapping == t.flapping {
		return Transition{}, false
	}
	tr := Transition{
		Check: t.check, Node: t.node,
		From: t.status, To: status, Flapping: flapping,
		Result: r, Time: now,
	}
	if status != t.status {
		t.since = now
	}
	t.status, t.flapping = status, flapping
	if len(t.history) == historyLen {
		copy(t.history, t.history[1:])
		t.history = t.history[:historyLen-1]
	}
	t.history = append(t.history, tr)
	return tr, true
}

// applyThresholds updates the streaks and the threshold state with r, and records a change
// of the threshold state, made at now, for flap detection.
func (t *Tracker) applyThresholds(r Result, now time.Time) {
	next := t.base
	if r.Status == Passing {
		t.okStreak++
		t.failStreak, t.worstStreak = 0, Unknown
		if t.okStreak >= t.th.SuccessBeforePassing {
			next = Passing
		}
	} else {
		st := r.Status
		if st != Warning {
			st = Critical // Critical, or a malformed Unknown from a prober
		}
		t.okStreak = 0
		t.failStreak++
		t.worstStreak = max(t.worstStreak, st)
		switch {
		case t.failStreak >= t.th.FailuresBeforeCritical:
			next = t.worstStreak
		case t.failStreak >= t.th.FailuresBeforeWarning:
			next = Warning
		}
	}
	if next != t.base {
		if t.base != Unknown && t.maxChanges > 0 {
			t.changes = append(t.changes, change{at: now, from: t.base, to: next})
		}
		t.base = next
	}
}

// pruneChanges drops the changes that happened Window or longer before now.
func (t *Tracker) pruneChanges(now time.Time) {
	i := 0
	for i < len(t.changes) && now.Sub(t.changes[i].at) >= t.window {
		i++
	}
	if i > 0 {
		t.changes = append(t.changes[:0], t.changes[i:]...)
	}
}

// worstInWindow is the worst threshold state held at any time within the window: the
// current one and both sides of every change inside it.
func (t *Tracker) worstInWindow() Status {
	w := t.base
	for _, c := range t.changes {
		w = max(w, c.from, c.to)
	}
	return w
}

// Status returns the reported status.
func (t *Tracker) Status() Status { return t.status }

// Flapping reports whether the check is flapping.
func (t *Tracker) Flapping() bool { return t.flapping }

// Since returns when the reported status last changed (or when tracking began).
func (t *Tracker) Since() time.Time { return t.since }

// Last returns the latest result; its Status is Unknown before the first one.
func (t *Tracker) Last() Result { return t.last }

// Transitions returns a copy of the most recent transitions (at most 20), oldest first.
func (t *Tracker) Transitions() []Transition {
	return append([]Transition(nil), t.history...)
}
