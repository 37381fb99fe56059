package collectors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/shirou/gopsutil/v4/cpu"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/systemconv"
)

// CPU modes reported in cpu.mode. Linux's guest time is already part of user and nice, so
// it is not reported again.
const (
	modeUser = iota
	modeNice
	modeSystem
	modeIdle
	modeIOWait
	modeInterrupt
	modeSoftIRQ
	modeSteal
	numModes
)

func modeName(m int) string {
	switch m {
	case modeUser:
		return string(systemconv.CPUModeUser)
	case modeNice:
		return string(systemconv.CPUModeNice)
	case modeSystem:
		return string(systemconv.CPUModeSystem)
	case modeIdle:
		return string(systemconv.CPUModeIdle)
	case modeIOWait:
		return string(systemconv.CPUModeIOWait)
	case modeInterrupt:
		return string(systemconv.CPUModeInterrupt)
	case modeSoftIRQ:
		return "softirq" // not in the semconv enum; kept apart from interrupt like node_exporter
	case modeSteal:
		return string(systemconv.CPUModeSteal)
	}
	return "unknown"
}

type cpuModes [numModes]float64

type cpuPoint struct {
	n int // cpu.logical_number
	v cpuModes
}

// cpuCollector reports system.cpu.time per logical CPU and mode, system.cpu.utilization
// per mode over all CPUs (between the last two collections) and system.cpu.logical.count.
type cpuCollector struct {
	time  metric.Float64ObservableCounter
	util  metric.Float64ObservableGauge
	count metric.Int64ObservableUpDownCounter

	// Owned by collect.
	last      []cpuModes // highest value seen per CPU and mode: /proc/stat's iowait can go backwards
	spare     []cpuPoint
	prevSum   cpuModes
	prevTotal float64
	havePrev  bool

	mu       sync.Mutex // guards the snapshot below
	cur      []cpuPoint
	opts     [][numModes][]metric.ObserveOption // by logical number, then mode
	utilOpts [numModes][]metric.ObserveOption
	utilVal  cpuModes
	utilOK   bool
	countVal int64
}

func newCPU(m metric.Meter) (collector, metric.Registration, error) {
	c := &cpuCollector{}
	var err error
	if c.time, err = m.Float64ObservableCounter(systemconv.CPUTime{}.Name(),
		metric.WithDescription(systemconv.CPUTime{}.Description()),
		metric.WithUnit(systemconv.CPUTime{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.util, err = m.Float64ObservableGauge(systemconv.CPUUtilization{}.Name(),
		metric.WithDescription("Fraction of CPU time spent in each mode over all logical CPUs, between the last two collections."),
		metric.WithUnit(systemconv.CPUUtilization{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.count, err = m.Int64ObservableUpDownCounter(systemconv.CPULogicalCount{}.Name(),
		metric.WithDescription(systemconv.CPULogicalCount{}.Description()),
		metric.WithUnit(systemconv.CPULogicalCount{}.Unit())); err != nil {
		return nil, nil, err
	}
	for mode := range numModes {
		c.utilOpts[mode] = attrOpts(attribute.String("cpu.mode", modeName(mode)))
	}
	reg, err := m.RegisterCallback(c.observe, c.time, c.util, c.count)
	if err != nil {
		return nil, nil, err
	}
	return c, reg, nil
}

func (c *cpuCollector) collect(r *round) error {
	ts, err := cpu.TimesWithContext(r.ctx, true)
	if err != nil {
		return fmt.Errorf("read %s: %w", r.h.proc("stat"), err)
	}
	if len(ts) == 0 {
		return errors.New("read " + r.h.proc("stat") + ": no per-CPU lines (is /proc mounted?)")
	}
	next := c.spare[:0]
	var sum cpuModes
	var total float64
	maxN := -1
	for i := range ts {
		t := &ts[i]
		n, err := strconv.Atoi(strings.TrimPrefix(t.CPU, "cpu"))
		if err != nil || n < 0 {
			continue
		}
		v := cpuModes{t.User, t.Nice, t.System, t.Idle, t.Iowait, t.Irq, t.Softirq, t.Steal}
		for len(c.last) <= n {
			c.last = append(c.last, cpuModes{})
		}
		for mode := range numModes {
			v[mode] = max(v[mode], c.last[n][mode])
			sum[mode] += v[mode]
			total += v[mode]
		}
		c.last[n] = v
		next = append(next, cpuPoint{n: n, v: v})
		maxN = max(maxN, n)
	}

	// Utilization needs CPU time to have passed (/proc/stat counts in 10ms ticks): with no
	// new ticks the last value stays; when the total shrinks (a CPU went offline) the
	// baseline restarts.
	var util cpuModes
	newUtil := false
	switch dt := total - c.prevTotal; {
	case c.havePrev && dt > 0:
		newUtil = true
		for mode := range numModes {
			util[mode] = min(1, max(0, sum[mode]-c.prevSum[mode])/dt)
		}
		c.prevSum, c.prevTotal = sum, total
	case !c.havePrev || dt < 0:
		c.prevSum, c.prevTotal, c.havePrev = sum, total, true
	}

	c.mu.Lock()
	for len(c.opts) <= maxN {
		n := len(c.opts)
		var o [numModes][]metric.ObserveOption
		for mode := range numModes {
			o[mode] = attrOpts(attribute.String("cpu.mode", modeName(mode)), attribute.Int("cpu.logical_number", n))
		}
		c.opts = append(c.opts, o)
	}
	c.spare, c.cur = c.cur, next
	if newUtil {
		c.utilVal, c.utilOK = util, true
	}
	c.countVal = int64(len(next))
	c.mu.Unlock()
	return nil
}

func (c *cpuCollector) observe(_ context.Context, o metric.Observer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.cur {
		p := &c.cur[i]
		for mode := range numModes {
			o.ObserveFloat64(c.time, p.v[mode], c.opts[p.n][mode]...)
		}
	}
	if c.utilOK {
		for mode := range numModes {
			o.ObserveFloat64(c.util, c.utilVal[mode], c.utilOpts[mode]...)
		}
	}
	if c.countVal > 0 {
		o.ObserveInt64(c.count, c.countVal)
	}
	return nil
}
