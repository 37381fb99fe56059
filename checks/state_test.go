package checks

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/picket-dev/picket/internal/config"
)

var stateT0 = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

// stateLetter maps P/W/C/U to a status, for compact sequences in tables.
func stateLetter(t testing.TB, b byte) Status {
	switch b {
	case 'P':
		return Passing
	case 'W':
		return Warning
	case 'C':
		return Critical
	case 'U':
		return Unknown
	}
	t.Fatalf("bad status letter %q", b)
	return Unknown
}

func stateLetters(ss []Status) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteByte(strings.ToUpper(s.String())[0])
	}
	return b.String()
}

func trackerCheck(th config.Thresholds, f config.Flap) *config.Check {
	return &config.Check{Name: "api", Type: config.TypeHTTP, Thresholds: th, Flap: f}
}

func TestTrackerThresholds(t *testing.T) {
	th := func(p, w, c int) config.Thresholds {
		return config.Thresholds{SuccessBeforePassing: p, FailuresBeforeWarning: w, FailuresBeforeCritical: c}
	}
	tests := []struct {
		name    string
		th      config.Thresholds
		results string // one letter per result
		want    string // state after each result
	}{
		{"zero thresholds act as 1", th(0, 0, 0), "PCPWP", "PCPWP"},
		{"all ones", th(1, 1, 1), "CPWCP", "CPWCP"},
		{"warning after critical in one streak stays critical", th(1, 1, 1), "CWWP", "CCCP"},
		{"unknown until first threshold", th(2, 2, 2), "PCPP", "UUUP"},
		{"warning then critical", th(1, 1, 3), "PCCCC", "PWWCC"},
		{"warning-only streak never critical", th(1, 1, 3), "PWWWWW", "PWWWWW"},
		{"one critical in streak makes it critical", th(1, 1, 3), "PWCWW", "PWWCC"},
		{"critical early then warnings", th(1, 2, 3), "PCWW", "PPWC"},
		{"stays passing below warning threshold", th(1, 3, 5), "PCCPCC", "PPPPPP"},
		{"reaches warning then critical", th(1, 3, 5), "PCCCCC", "PPPWWC"},
		{"success_before_passing 3", th(3, 1, 1), "CPPPCPP", "CCCPCCC"},
		{"interrupted recovery restarts the count", th(3, 1, 1), "CPPCPPP", "CCCCCCP"},
		{"critical to warning on a warning streak", th(1, 1, 1), "CPW", "CPW"},
		{"critical stays critical through short success run", th(2, 1, 1), "CPWP", "CCWW"},
		{"failures_before_warning above critical", th(1, 4, 2), "PCCCC", "PPCCC"},
		{"failures_before_warning above critical, warnings", th(1, 4, 2), "PWW", "PPW"},
		{"unknown result counts as critical", th(1, 1, 1), "PU", "PC"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(trackerCheck(tc.th, config.Flap{}), "n1", stateT0)
			var got []Status
			for i := range len(tc.results) {
				now := stateT0.Add(time.Duration(i+1) * time.Second)
				tr.Observe(Result{Status: stateLetter(t, tc.results[i]), Time: now}, now)
				got = append(got, tr.Status())
				if tr.Flapping() {
					t.Fatalf("flapping with flap detection off")
				}
			}
			if s := stateLetters(got); s != tc.want {
				t.Errorf("results %s: states %s, want %s", tc.results, s, tc.want)
			}
		})
	}
}

func TestTrackerSinceAndTransitions(t *testing.T) {
	tr := NewTracker(trackerCheck(config.Thresholds{}, config.Flap{}), "n1", stateT0)
	if tr.Status() != Unknown || !tr.Since().Equal(stateT0) || len(tr.Transitions()) != 0 {
		t.Fatalf("fresh tracker: status %v since %v transitions %d", tr.Status(), tr.Since(), len(tr.Transitions()))
	}
	at := func(s int) time.Time { return stateT0.Add(time.Duration(s) * time.Second) }

	tn, ok := tr.Observe(Result{Status: Passing, Output: "200 OK"}, at(1))
	want := Transition{Check: "api", Node: "n1", From: Unknown, To: Passing, Result: Result{Status: Passing, Output: "200 OK"}, Time: at(1)}
	if !ok || fmt.Sprint(tn) != fmt.Sprint(want) {
		t.Fatalf("first result: got %+v, %v; want %+v", tn, ok, want)
	}
	if _, ok := tr.Observe(Result{Status: Passing}, at(2)); ok {
		t.Fatal("second passing result reported a transition")
	}
	if !tr.Since().Equal(at(1)) {
		t.Errorf("since = %v, want %v (unchanged by a result that changes nothing)", tr.Since(), at(1))
	}
	tr.Observe(Result{Status: Critical, Reason: ReasonConnect}, at(3))
	if !tr.Since().Equal(at(3)) || tr.Last().Reason != ReasonConnect {
		t.Errorf("after critical: since %v last %+v", tr.Since(), tr.Last())
	}

	// History keeps the last 20, oldest first.
	for i := range 40 {
		st := Passing
		if i%2 == 0 {
			st = Critical
		}
		tr.Observe(Result{Status: st}, at(10+i))
	}
	h := tr.Transitions()
	if len(h) != historyLen {
		t.Fatalf("history has %d transitions, want %d", len(h), historyLen)
	}
	if !h[len(h)-1].Time.Equal(at(49)) || !h[0].Time.Equal(at(30)) {
		t.Errorf("history spans %v..%v, want %v..%v", h[0].Time, h[len(h)-1].Time, at(30), at(49))
	}
	h[0].Check = "mutated"
	if tr.Transitions()[0].Check != "api" {
		t.Error("Transitions returned the tracker's own slice")
	}
}

func TestTrackerFlapping(t *testing.T) {
	type step struct {
		at       int  // seconds after t0
		r        byte // result letter
		want     byte // reported status letter
		flapping bool
		event    bool // a transition is reported
	}
	tests := []struct {
		name  string
		flap  config.Flap
		steps []step
	}{
		{
			name: "flaps, holds worst, ends when changes age out",
			flap: config.Flap{Window: config.Duration(10 * time.Second), MaxTransitions: 2},
			steps: []step{
				{0, 'P', 'P', false, true}, // out of Unknown: not counted
				{1, 'C', 'C', false, true}, // change 1
				{2, 'P', 'P', false, true}, // change 2
				{3, 'C', 'C', true, true},  // change 3 > 2: flapping, worst = C
				{4, 'P', 'C', true, false}, // change 4: still C while flapping
				{5, 'P', 'C', true, false},
				{11, 'P', 'C', true, false}, // change at 1 aged out: 3 left
				{12, 'P', 'P', false, true}, // change at 2 aged out: 2 left, settles on P
				{13, 'P', 'P', false, false},
			},
		},
		{
			name: "worst in window is warning when no critical",
			flap: config.Flap{Window: config.Duration(5 * time.Second), MaxTransitions: 1},
			steps: []step{
				{0, 'P', 'P', false, true},
				{1, 'W', 'W', false, true}, // change 1
				{2, 'P', 'W', true, true},  // change 2 > 1: flapping, worst W; only the flag changed
				{3, 'P', 'W', true, false},
				{5, 'P', 'W', true, false},  // change at 1 is 4s old: still 2
				{6, 'P', 'P', false, true},  // change at 1 is 5s old, out: 1 left, settles on P
				{8, 'W', 'W', false, true},  // change at 2 out; P→W: 1
				{9, 'C', 'C', true, true},   // W→C: 2 > 1, flapping on the worst, C
				{10, 'P', 'C', true, false}, // C→P: worst stays C
			},
		},
		{
			name: "disabled with zero max transitions",
			flap: config.Flap{Window: config.Duration(time.Hour)},
			steps: []step{
				{0, 'P', 'P', false, true},
				{1, 'C', 'C', false, true},
				{2, 'P', 'P', false, true},
				{3, 'C', 'C', false, true},
			},
		},
		{
			name: "worst drops while flapping as a critical ages out",
			flap: config.Flap{Window: config.Duration(10 * time.Second), MaxTransitions: 2},
			steps: []step{
				{0, 'P', 'P', false, true},
				{1, 'C', 'C', false, true},  // P→C
				{2, 'P', 'P', false, true},  // C→P
				{3, 'W', 'C', true, true},   // P→W: 3 changes, worst C
				{4, 'P', 'C', true, false},  // W→P: 4
				{5, 'W', 'C', true, false},  // P→W: 5
				{12, 'P', 'W', true, true},  // W→P; changes at 1 and 2 out: 4 left, worst W
				{14, 'P', 'P', false, true}, // changes at 3 and 4 out: 2 left
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(trackerCheck(config.Thresholds{}, tc.flap), "n1", stateT0)
			since := stateT0
			for _, s := range tc.steps {
				now := stateT0.Add(time.Duration(s.at) * time.Second)
				before := tr.Status()
				tn, ev := tr.Observe(Result{Status: stateLetter(t, s.r)}, now)
				got := tr.Status()
				if got != stateLetter(t, s.want) || tr.Flapping() != s.flapping || ev != s.event {
					t.Fatalf("t=%ds result %c: status %v flapping %v event %v; want %c %v %v",
						s.at, s.r, got, tr.Flapping(), ev, s.want, s.flapping, s.event)
				}
				if ev && (tn.From != before || tn.To != got || tn.Flapping != s.flapping || !tn.Time.Equal(now)) {
					t.Fatalf("t=%ds: transition %+v", s.at, tn)
				}
				if got != before {
					since = now
				}
				if !tr.Since().Equal(since) {
					t.Fatalf("t=%ds: since %v, want %v", s.at, tr.Since(), since)
				}
			}
		})
	}
}

// refBase computes the threshold state from the whole result history, run by run from the
// end, independently of the tracker's incremental streak counters.
func refBase(rs []Status, th config.Thresholds) Status {
	sbp, fbw, fbc := max(th.SuccessBeforePassing, 1), max(th.FailuresBeforeWarning, 1), max(th.FailuresBeforeCritical, 1)
	if len(rs) == 0 {
		return Unknown
	}
	last := rs[len(rs)-1] == Passing
	k := 0
	worst := Unknown
	for k < len(rs) && (rs[len(rs)-1-k] == Passing) == last {
		worst = max(worst, rs[len(rs)-1-k])
		k++
	}
	switch {
	case last && k >= sbp:
		return Passing
	case !last && k >= fbc:
		return worst
	case !last && k >= fbw:
		return Warning
	}
	return refBase(rs[:len(rs)-k], th)
}

func TestTrackerProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		th := config.Thresholds{
			SuccessBeforePassing:   rapid.IntRange(0, 4).Draw(rt, "sbp"),
			FailuresBeforeWarning:  rapid.IntRange(0, 4).Draw(rt, "fbw"),
			FailuresBeforeCritical: rapid.IntRange(0, 5).Draw(rt, "fbc"),
		}
		flap := config.Flap{
			Window:         config.Duration(time.Duration(rapid.IntRange(0, 20).Draw(rt, "window")) * time.Second),
			MaxTransitions: rapid.IntRange(0, 4).Draw(rt, "max"),
		}
		flapOn := flap.Window > 0 && flap.MaxTransitions > 0
		rs := rapid.SliceOfN(rapid.SampledFrom([]Status{Passing, Warning, Critical}), 1, 60).Draw(rt, "results")

		tr := NewTracker(trackerCheck(th, flap), "n1", stateT0)
		var bases []Status
		var times []time.Time
		now := stateT0
		since := stateT0
		for i, r := range rs {
			now = now.Add(time.Duration(rapid.IntRange(0, 4).Draw(rt, "step")) * time.Second)
			prev := tr.Status()
			tr.Observe(Result{Status: r}, now)
			got := tr.Status()

			base := refBase(rs[:i+1], th)
			bases = append(bases, base)
			times = append(times, now)

			// Reference flap detection over the base states.
			inWindow, worst := 0, base
			for j := 1; j < len(bases); j++ {
				if bases[j] != bases[j-1] && bases[j-1] != Unknown && now.Sub(times[j]) < flap.Window.D() {
					inWindow++
					worst = max(worst, bases[j-1], bases[j])
				}
			}
			wantFlap := flapOn && inWindow > flap.MaxTransitions
			want := base
			if wantFlap {
				want = worst
			}
			if got != want || tr.Flapping() != wantFlap {
				rt.Fatalf("after result %d (%v): status %v flapping %v; want %v %v", i, r, got, tr.Flapping(), want, wantFlap)
			}

			// Invariants stated directly.
			if got == Critical && !containsStatus(rs[:i+1], Critical) {
				rt.Fatalf("critical state without any critical result")
			}
			if !flapOn && r != Passing && got == Passing && prev != Passing {
				rt.Fatalf("a %v result made the state passing", r)
			}
			if !flapOn && th.SuccessBeforePassing > 1 && i > 0 && rs[i-1] == Critical && got == Passing && prev != Passing {
				rt.Fatalf("one passing result after a critical one made the state passing with success_before_passing=%d",
					th.SuccessBeforePassing)
			}
			if got != prev {
				since = now
			}
			if !tr.Since().Equal(since) {
				rt.Fatalf("since %v, want %v", tr.Since(), since)
			}
			if n := len(tr.Transitions()); n > historyLen {
				rt.Fatalf("%d transitions kept", n)
			}
		}
	})
}

func containsStatus(ss []Status, s Status) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
