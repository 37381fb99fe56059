package collectors

import (
	"context"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

// BenchmarkCollect measures one full collection of every collector on this host.
func BenchmarkCollect(b *testing.B) {
	h := newHarness(b, config.Collectors{Interval: config.Duration(time.Hour), HostRoot: "/"})
	ctx := context.Background()
	h.set.collect(ctx)
	series := 0
	for _, m := range h.gather(b) {
		series += points(m)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.set.collect(ctx)
	}
	b.ReportMetric(float64(series), "series")
}

// BenchmarkCollectEach measures each collector alone.
func BenchmarkCollectEach(b *testing.B) {
	for _, name := range config.CollectorNames() {
		b.Run(name, func(b *testing.B) {
			var disabled []string
			for _, n := range config.CollectorNames() {
				if n != name {
					disabled = append(disabled, n)
				}
			}
			h := newHarness(b, config.Collectors{Interval: config.Duration(time.Hour), Disabled: disabled})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				h.set.collect(ctx)
			}
		})
	}
}
