package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Stat summarises repeated measurements of one quantity: the median and the spread.
type Stat struct {
	Median float64
	Min    float64
	Max    float64
	N      int // number of measurements; 0 means none (n/a or pending)
}

// Summarize returns the median, minimum and maximum of xs.
func Summarize(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Stat{Median: median(s), Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of xs, 0 for none.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// Seconds converts durations to seconds, for Summarize and Percentile.
func Seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}

// Num formats v with about three significant digits and no exponent.
func Num(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100 || v == math.Trunc(v) && a < 1e15:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

// Format renders the median with its unit and, for more than one measurement, the range:
// "12.3 ms (11.9–12.8)".
func (s Stat) Format(unit string) string {
	if s.N == 0 {
		return "—"
	}
	out := Num(s.Median)
	if unit != "" {
		out += " " + unit
	}
	if s.N > 1 {
		out += fmt.Sprintf(" (%s–%s)", Num(s.Min), Num(s.Max))
	}
	return out
}
