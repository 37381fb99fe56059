package collectors

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/shirou/gopsutil/v4/cpu"
	"go.opentelemetry.io/otel/metric"
)

// loadCollector reports system.cpu.load_average.1m, .5m and .15m. Semantic conventions
// v1.43 define no load metric; these are the names of the OTel Collector's hostmetrics
// receiver.
type loadCollector struct {
	l1, l5, l15 metric.Float64ObservableGauge

	mu  sync.Mutex
	v   [3]float64
	set bool
}

func newLoad(m metric.Meter) (collector, metric.Registration, error) {
	c := &loadCollector{}
	var err error
	for _, g := range []struct {
		dst    *metric.Float64ObservableGauge
		name   string
		window string
	}{
		{&c.l1, "system.cpu.load_average.1m", "1 minute"},
		{&c.l5, "system.cpu.load_average.5m", "5 minutes"},
		{&c.l15, "system.cpu.load_average.15m", "15 minutes"},
	} {
		*g.dst, err = m.Float64ObservableGauge(g.name,
			metric.WithDescription("Average number of runnable and uninterruptible tasks over the last "+g.window+"."),
			metric.WithUnit("{thread}"))
		if err != nil {
			return nil, nil, err
		}
	}
	reg, err := m.RegisterCallback(c.observe, c.l1, c.l5, c.l15)
	if err != nil {
		return nil, nil, err
	}
	return c, reg, nil
}

func (c *loadCollector) collect(r *round) error {
	avg, err := r.loadAvg()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.v = [3]float64{avg.Load1, avg.Load5, avg.Load15}
	c.set = true
	c.mu.Unlock()
	return nil
}

func (c *loadCollector) observe(_ context.Context, o metric.Observer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set {
		o.ObserveFloat64(c.l1, c.v[0])
		o.ObserveFloat64(c.l5, c.v[1])
		o.ObserveFloat64(c.l15, c.v[2])
	}
	return nil
}

// onlineCPUs counts the host's online logical CPUs from /sys/devices/system/cpu/online (a
// few bytes, unlike /proc/cpuinfo), falling back to gopsutil.
func onlineCPUs(r *round) (int, error) {
	path := r.h.sys("devices/system/cpu/online")
	b, err := os.ReadFile(path)
	if err == nil {
		if n, ok := countCPUList(b); ok {
			return n, nil
		}
	}
	n, err := cpu.CountsWithContext(r.ctx, true)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("count CPUs: %s unreadable and gopsutil found none: %w", path, err)
	}
	return n, nil
}

// countCPUList counts the CPUs of a kernel CPU list such as "0-3,5,7-8\n".
func countCPUList(b []byte) (int, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0, false
	}
	total := 0
	for len(b) > 0 {
		part := b
		if i := bytes.IndexByte(b, ','); i >= 0 {
			part, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		lo, hi := part, part
		if i := bytes.IndexByte(part, '-'); i >= 0 {
			lo, hi = part[:i], part[i+1:]
		}
		a, err1 := strconv.Atoi(string(lo))
		z, err2 := strconv.Atoi(string(hi))
		if err1 != nil || err2 != nil || a < 0 || z < a {
			return 0, false
		}
		total += z - a + 1
	}
	return total, true
}
