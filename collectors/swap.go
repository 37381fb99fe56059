package collectors

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/systemconv"
)

// swapCollector reports system.paging.usage and system.paging.utilization (state used|free)
// from the SwapTotal and SwapFree lines of /proc/meminfo, shared with the memory collector.
type swapCollector struct {
	usage metric.Int64ObservableUpDownCounter
	util  metric.Float64ObservableGauge

	used, free []metric.ObserveOption // immutable after construction

	mu        sync.Mutex
	usedBytes int64
	freeBytes int64
	set       bool
}

func newSwap(m metric.Meter) (collector, metric.Registration, error) {
	c := &swapCollector{}
	var err error
	if c.usage, err = m.Int64ObservableUpDownCounter(systemconv.PagingUsage{}.Name(),
		metric.WithDescription(systemconv.PagingUsage{}.Description()),
		metric.WithUnit(systemconv.PagingUsage{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.util, err = m.Float64ObservableGauge(systemconv.PagingUtilization{}.Name(),
		metric.WithDescription("Fraction of swap space in each state; absent when there is no swap."),
		metric.WithUnit(systemconv.PagingUtilization{}.Unit())); err != nil {
		return nil, nil, err
	}
	pu := systemconv.PagingUsage{}
	c.used = attrOpts(pu.AttrPagingState(systemconv.PagingStateUsed))
	c.free = attrOpts(pu.AttrPagingState(systemconv.PagingStateFree))
	reg, err := m.RegisterCallback(c.observe, c.usage, c.util)
	if err != nil {
		return nil, nil, err
	}
	return c, reg, nil
}

func (c *swapCollector) collect(r *round) error {
	vm, err := r.virtualMemory()
	if err != nil {
		return err
	}
	total, free := clampInt(vm.SwapTotal), clampInt(vm.SwapFree)
	c.mu.Lock()
	c.usedBytes, c.freeBytes, c.set = max(0, total-free), free, true
	c.mu.Unlock()
	return nil
}

func (c *swapCollector) observe(_ context.Context, o metric.Observer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.set {
		return nil
	}
	o.ObserveInt64(c.usage, c.usedBytes, c.used...)
	o.ObserveInt64(c.usage, c.freeBytes, c.free...)
	if total := c.usedBytes + c.freeBytes; total > 0 {
		o.ObserveFloat64(c.util, float64(c.usedBytes)/float64(total), c.used...)
		o.ObserveFloat64(c.util, float64(c.freeBytes)/float64(total), c.free...)
	}
	return nil
}
