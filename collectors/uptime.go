package collectors

import (
	"context"
	"fmt"
	"sync"

	gopsutilhost "github.com/shirou/gopsutil/v4/host"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/systemconv"
)

// uptimeCollector reports system.uptime, the seconds since the host booted (from the
// sysinfo system call, which a container shares with its host).
type uptimeCollector struct {
	uptime metric.Float64ObservableGauge

	mu  sync.Mutex
	v   float64
	set bool
}

func newUptime(m metric.Meter) (collector, metric.Registration, error) {
	c := &uptimeCollector{}
	var err error
	if c.uptime, err = m.Float64ObservableGauge(systemconv.Uptime{}.Name(),
		metric.WithDescription(systemconv.Uptime{}.Description()),
		metric.WithUnit(systemconv.Uptime{}.Unit())); err != nil {
		return nil, nil, err
	}
	reg, err := m.RegisterCallback(c.observe, c.uptime)
	if err != nil {
		return nil, nil, err
	}
	return c, reg, nil
}

func (c *uptimeCollector) collect(r *round) error {
	up, err := gopsutilhost.UptimeWithContext(r.ctx)
	if err != nil {
		return fmt.Errorf("read uptime (sysinfo): %w", err)
	}
	c.mu.Lock()
	c.v, c.set = float64(up), true
	c.mu.Unlock()
	return nil
}

func (c *uptimeCollector) observe(_ context.Context, o metric.Observer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set {
		o.ObserveFloat64(c.uptime, c.v)
	}
	return nil
}
