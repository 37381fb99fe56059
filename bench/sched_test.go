package bench

import (
	"context"
	"testing"
	"time"
)

func TestAnalyseCadence(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	iv := 10 * time.Second
	at := func(offsets ...time.Duration) []time.Time {
		var out []time.Time
		for _, o := range offsets {
			out = append(out, t0.Add(o))
		}
		return out
	}
	begin, end := t0.Add(-5*time.Second), t0.Add(50500*time.Millisecond) // slots k = 0..4 are due before end-1s, k = 5 is not
	tests := []struct {
		name      string
		arrivals  []time.Time
		maxJitter time.Duration
		missed    int
		extra     int
	}{
		{"on time", at(0, 10*time.Second, 20*time.Second, 30*time.Second, 40*time.Second), 0, 0, 0},
		{"one late", at(0, 10*time.Second, 20*time.Second+80*time.Millisecond, 30*time.Second, 40*time.Second), 80 * time.Millisecond, 0, 0},
		{"first late", at(50*time.Millisecond, 10*time.Second, 20*time.Second, 30*time.Second, 40*time.Second), 50 * time.Millisecond, 0, 0},
		{"one missing", at(0, 10*time.Second, 30*time.Second, 40*time.Second), 0, 1, 0},
		{"stopped early", at(0, 10*time.Second), 0, 3, 0},
		{"slot due within the slack is not expected but counts", at(0, 10*time.Second, 20*time.Second, 30*time.Second, 40*time.Second, 50*time.Second+20*time.Millisecond), 20 * time.Millisecond, 0, 0},
		{"unsorted", at(20*time.Second, 0, 40*time.Second, 10*time.Second, 30*time.Second), 0, 0, 0},
		{"double run", at(0, 10*time.Second, 10*time.Second+time.Millisecond, 20*time.Second, 30*time.Second, 40*time.Second), time.Millisecond, 0, 1},
		{"none", nil, 0, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := analyseCadence(tt.arrivals, iv, begin, end, time.Second)
			var worst time.Duration
			for _, j := range c.jitter {
				worst = max(worst, j)
			}
			if worst != tt.maxJitter || c.missed != tt.missed || c.extra != tt.extra {
				t.Errorf("jitter max %v, missed %d, extra %d; want %v, %d, %d", worst, c.missed, c.extra, tt.maxJitter, tt.missed, tt.extra)
			}
			if len(c.jitter) != len(tt.arrivals) {
				t.Errorf("%d jitter values for %d arrivals", len(c.jitter), len(tt.arrivals))
			}
		})
	}
}

func TestPace(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	tokens := make(chan struct{}, 1000)
	pace(ctx, tokens, 1000)
	if n := len(tokens); n < 300 || n > 520 {
		t.Errorf("pace at 1000/s offered %d tokens in 500ms, want about 500", n)
	}

	// Tokens nobody takes are dropped, not queued.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel2()
	one := make(chan struct{}, 1)
	pace(ctx2, one, 1000)
	if len(one) != 1 {
		t.Errorf("a full channel holds %d tokens, want 1", len(one))
	}
}
