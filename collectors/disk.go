package collectors

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/shirou/gopsutil/v4/disk"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/systemconv"
)

// diskSeries holds the cached attributes of one block device. Its options never change once
// built, so the callback reads them without the collector's lock.
type diskSeries struct {
	read, write, device []metric.ObserveOption
	gen                 uint64 // last collection that saw the device; owned by collect
}

// diskValues are the counters of one device, converted to bytes, operations and seconds.
type diskValues struct {
	readBytes, writeBytes   int64
	readOps, writeOps       int64
	readMerged, writeMerged int64
	ioTime                  float64
	readTime, writeTime     float64
}

type diskPoint struct {
	s *diskSeries
	v diskValues
}

// diskCollector reports system.disk.io, .operations, .io_time, .operation_time and .merged
// per whole block device from /proc/diskstats. Like node_exporter, it skips partitions and
// ram, zram, loop and floppy devices.
type diskCollector struct {
	io, ops, merged metric.Int64ObservableCounter
	ioTime, opTime  metric.Float64ObservableCounter

	series map[string]*diskSeries // owned by collect
	gen    uint64
	spare  []diskPoint

	mu  sync.Mutex
	cur []diskPoint
}

func newDisk(m metric.Meter) (collector, metric.Registration, error) {
	c := &diskCollector{series: make(map[string]*diskSeries)}
	var err error
	if c.io, err = m.Int64ObservableCounter(systemconv.DiskIOObservable{}.Name(),
		metric.WithDescription(systemconv.DiskIOObservable{}.Description()),
		metric.WithUnit(systemconv.DiskIOObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.ops, err = m.Int64ObservableCounter(systemconv.DiskOperationsObservable{}.Name(),
		metric.WithDescription(systemconv.DiskOperationsObservable{}.Description()),
		metric.WithUnit(systemconv.DiskOperationsObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.merged, err = m.Int64ObservableCounter(systemconv.DiskMergedObservable{}.Name(),
		metric.WithDescription(systemconv.DiskMergedObservable{}.Description()),
		metric.WithUnit(systemconv.DiskMergedObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.ioTime, err = m.Float64ObservableCounter(systemconv.DiskIOTimeObservable{}.Name(),
		metric.WithDescription(systemconv.DiskIOTimeObservable{}.Description()),
		metric.WithUnit(systemconv.DiskIOTimeObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.opTime, err = m.Float64ObservableCounter(systemconv.DiskOperationTimeObservable{}.Name(),
		metric.WithDescription(systemconv.DiskOperationTimeObservable{}.Description()),
		metric.WithUnit(systemconv.DiskOperationTimeObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	reg, err := m.RegisterCallback(c.observe, c.io, c.ops, c.merged, c.ioTime, c.opTime)
	if err != nil {
		return nil, nil, err
	}
	return c, reg, nil
}

func (c *diskCollector) collect(r *round) error {
	stats, err := disk.IOCountersWithContext(r.ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", r.h.proc("diskstats"), err)
	}
	c.gen++
	next := c.spare[:0]
	for name, st := range stats {
		if excludedDisk(name) {
			continue
		}
		s := c.series[name]
		if s == nil {
			s = newDiskSeries(name)
			c.series[name] = s
		}
		s.gen = c.gen
		next = append(next, diskPoint{s: s, v: diskValues{
			readBytes: clampInt(st.ReadBytes), writeBytes: clampInt(st.WriteBytes),
			readOps: clampInt(st.ReadCount), writeOps: clampInt(st.WriteCount),
			readMerged: clampInt(st.MergedReadCount), writeMerged: clampInt(st.MergedWriteCount),
			ioTime:   float64(st.IoTime) / 1000,
			readTime: float64(st.ReadTime) / 1000, writeTime: float64(st.WriteTime) / 1000,
		}})
	}
	for name, s := range c.series {
		if s.gen != c.gen {
			delete(c.series, name)
		}
	}
	c.mu.Lock()
	c.spare, c.cur = c.cur, next
	c.mu.Unlock()
	clear(c.spare) // drop references to removed devices
	return nil
}

func newDiskSeries(name string) *diskSeries {
	d := systemconv.DiskIOObservable{}
	dev := d.AttrDevice(name)
	return &diskSeries{
		read:   attrOpts(dev, d.AttrDiskIODirection(systemconv.DiskIODirectionRead)),
		write:  attrOpts(dev, d.AttrDiskIODirection(systemconv.DiskIODirectionWrite)),
		device: attrOpts(dev),
	}
}

func (c *diskCollector) observe(_ context.Context, o metric.Observer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.cur {
		s, v := c.cur[i].s, &c.cur[i].v
		o.ObserveInt64(c.io, v.readBytes, s.read...)
		o.ObserveInt64(c.io, v.writeBytes, s.write...)
		o.ObserveInt64(c.ops, v.readOps, s.read...)
		o.ObserveInt64(c.ops, v.writeOps, s.write...)
		o.ObserveInt64(c.merged, v.readMerged, s.read...)
		o.ObserveInt64(c.merged, v.writeMerged, s.write...)
		o.ObserveFloat64(c.opTime, v.readTime, s.read...)
		o.ObserveFloat64(c.opTime, v.writeTime, s.write...)
		o.ObserveFloat64(c.ioTime, v.ioTime, s.device...)
	}
	return nil
}

// excludedDisk reports whether node_exporter's default device exclusion,
// ^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$, matches name.
func excludedDisk(name string) bool {
	i := len(name)
	for i > 0 && isDigit(name[i-1]) {
		i--
	}
	if i == len(name) {
		return false // no trailing number
	}
	prefix := name[:i]
	switch prefix {
	case "ram", "zram", "loop", "fd":
		return true
	}
	// (h|s|v|xv)d[a-z]: a partition of a classic disk.
	if n := len(prefix); n >= 3 && prefix[n-2] == 'd' && prefix[n-1] >= 'a' && prefix[n-1] <= 'z' {
		switch prefix[:n-2] {
		case "h", "s", "v", "xv":
			return true
		}
	}
	// nvme\d+n\d+p: a partition of an NVMe namespace.
	if rest, ok := strings.CutPrefix(prefix, "nvme"); ok && len(rest) > 0 && rest[len(rest)-1] == 'p' {
		rest = rest[:len(rest)-1]
		j := 0
		for j < len(rest) && isDigit(rest[j]) {
			j++
		}
		if j == 0 || j >= len(rest) || rest[j] != 'n' {
			return false
		}
		tail := rest[j+1:]
		if len(tail) == 0 {
			return false
		}
		for k := 0; k < len(tail); k++ {
			if !isDigit(tail[k]) {
				return false
			}
		}
		return true
	}
	return false
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
