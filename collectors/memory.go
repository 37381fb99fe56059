package collectors

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/systemconv"
)

// Memory states of system.memory.usage. They add up to system.memory.limit: used is what
// is left after free, buffers and cached (page cache plus reclaimable slab).
const (
	memUsed = iota
	memFree
	memBuffers
	memCached
	numMemStates
)

// memoryCollector reports system.memory.usage and system.memory.utilization per state,
// system.memory.limit and system.memory.linux.available.
type memoryCollector struct {
	usage     metric.Int64ObservableUpDownCounter
	util      metric.Float64ObservableGauge
	limit     metric.Int64ObservableUpDownCounter
	available metric.Int64ObservableUpDownCounter

	opts [numMemStates][]metric.ObserveOption // immutable after construction

	mu     sync.Mutex
	states [numMemStates]int64
	total  int64
	avail  int64
	set    bool
}

func newMemory(m metric.Meter) (collector, metric.Registration, error) {
	c := &memoryCollector{}
	var err error
	if c.usage, err = m.Int64ObservableUpDownCounter(systemconv.MemoryUsage{}.Name(),
		metric.WithDescription(systemconv.MemoryUsage{}.Description()),
		metric.WithUnit(systemconv.MemoryUsage{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.util, err = m.Float64ObservableGauge(systemconv.MemoryUtilization{}.Name(),
		metric.WithDescription("Fraction of memory in each state."),
		metric.WithUnit(systemconv.MemoryUtilization{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.limit, err = m.Int64ObservableUpDownCounter(systemconv.MemoryLimit{}.Name(),
		metric.WithDescription(systemconv.MemoryLimit{}.Description()),
		metric.WithUnit(systemconv.MemoryLimit{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.available, err = m.Int64ObservableUpDownCounter(systemconv.MemoryLinuxAvailable{}.Name(),
		metric.WithDescription(systemconv.MemoryLinuxAvailable{}.Description()),
		metric.WithUnit(systemconv.MemoryLinuxAvailable{}.Unit())); err != nil {
		return nil, nil, err
	}
	mu := systemconv.MemoryUsage{}
	for i, s := range [numMemStates]systemconv.MemoryStateAttr{
		systemconv.MemoryStateUsed, systemconv.MemoryStateFree, systemconv.MemoryStateBuffers, systemconv.MemoryStateCached,
	} {
		c.opts[i] = attrOpts(mu.AttrMemoryState(s))
	}
	reg, err := m.RegisterCallback(c.observe, c.usage, c.util, c.limit, c.available)
	if err != nil {
		return nil, nil, err
	}
	return c, reg, nil
}

func (c *memoryCollector) collect(r *round) error {
	vm, err := r.virtualMemory()
	if err != nil {
		return err
	}
	free, buffers, cached := clampInt(vm.Free), clampInt(vm.Buffers), clampInt(vm.Cached)
	total := clampInt(vm.Total)
	used := max(0, total-free-buffers-cached)
	c.mu.Lock()
	c.states = [numMemStates]int64{used, free, buffers, cached}
	c.total, c.avail, c.set = total, clampInt(vm.Available), true
	c.mu.Unlock()
	return nil
}

func (c *memoryCollector) observe(_ context.Context, o metric.Observer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.set {
		return nil
	}
	for i, v := range c.states {
		o.ObserveInt64(c.usage, v, c.opts[i]...)
		if c.total > 0 {
			o.ObserveFloat64(c.util, float64(v)/float64(c.total), c.opts[i]...)
		}
	}
	o.ObserveInt64(c.limit, c.total)
	o.ObserveInt64(c.available, c.avail)
	return nil
}

// clampInt converts a kernel counter to int64, saturating instead of wrapping.
func clampInt(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}
