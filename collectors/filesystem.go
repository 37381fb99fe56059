package collectors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/systemconv"
)

// maxFSErrors bounds how many statfs failures one collection error names.
const maxFSErrors = 3

// fsSeries holds the cached attributes of one mount point. Its options never change once
// built, so the callback reads them without the collector's lock.
type fsSeries struct {
	device, fstype, mode      string // identity besides the mount point
	used, free, reserved, all []metric.ObserveOption
	gen                       uint64 // owned by collect
}

type fsValues struct {
	used, free, reserved, limit int64
	util                        float64
	utilOK                      bool
}

type fsPoint struct {
	s *fsSeries
	v fsValues
}

// statResult is the outcome of statfs on one mount.
type statResult struct {
	u   *disk.UsageStat
	err error
}

// statJob is shared by one collection and its statfs worker.
type statJob struct {
	mu        sync.Mutex
	results   []statResult
	done      int  // results[:done] are filled
	abandoned bool // the collection stopped waiting; the worker stops after its current mount
}

// filesystemCollector reports system.filesystem.usage (state used|free|reserved),
// system.filesystem.utilization and system.filesystem.limit per mounted filesystem.
//
// It skips the pseudo and container filesystems node_exporter skips by default, and tmpfs
// and ramfs too. statfs runs in a worker goroutine with a deadline: a mount that does not
// answer (a dead NFS server) is reported as an error and skipped until its call returns, so
// it cannot stall the other collectors.
type filesystemCollector struct {
	usage, limit metric.Int64ObservableUpDownCounter
	util         metric.Float64ObservableGauge

	h       *host
	timeout time.Duration
	workers *sync.WaitGroup                                                 // owned by the Set, which waits for them when Run ends
	statfs  func(ctx context.Context, path string) (*disk.UsageStat, error) // tests inject a hang

	inFlightMu sync.Mutex
	inFlight   map[string]bool // mount points whose statfs has not returned yet

	series map[string]*fsSeries // by mount point; owned by collect
	index  map[string]int       // scratch: mount point → position in the mount list
	gen    uint64
	spare  []fsPoint

	mu  sync.Mutex
	cur []fsPoint
}

func newFilesystem(m metric.Meter, h *host, timeout time.Duration, workers *sync.WaitGroup) (collector, metric.Registration, error) {
	c := &filesystemCollector{
		h: h, timeout: timeout, workers: workers, statfs: disk.UsageWithContext,
		inFlight: make(map[string]bool),
		series:   make(map[string]*fsSeries),
		index:    make(map[string]int),
	}
	var err error
	if c.usage, err = m.Int64ObservableUpDownCounter(systemconv.FilesystemUsageObservable{}.Name(),
		metric.WithDescription(systemconv.FilesystemUsageObservable{}.Description()),
		metric.WithUnit(systemconv.FilesystemUsageObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.util, err = m.Float64ObservableGauge(systemconv.FilesystemUtilizationObservable{}.Name(),
		metric.WithDescription("Fraction of the filesystem's space in use, of the space available to unprivileged users (as df shows)."),
		metric.WithUnit(systemconv.FilesystemUtilizationObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.limit, err = m.Int64ObservableUpDownCounter(systemconv.FilesystemLimitObservable{}.Name(),
		metric.WithDescription(systemconv.FilesystemLimitObservable{}.Description()),
		metric.WithUnit(systemconv.FilesystemLimitObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	reg, err := m.RegisterCallback(c.observe, c.usage, c.util, c.limit)
	if err != nil {
		return nil, nil, err
	}
	return c, reg, nil
}

func (c *filesystemCollector) collect(r *round) error {
	parts, err := disk.PartitionsWithContext(r.ctx, true)
	if err != nil {
		return fmt.Errorf("list mounts from %s: %w", r.h.proc("1/mountinfo"), err)
	}
	var errs []error
	// The worker owns mounts; a later mount on the same point hides the earlier one.
	clear(c.index)
	mounts := make([]disk.PartitionStat, 0, len(parts))
	c.inFlightMu.Lock()
	for _, p := range parts {
		if excludedFS(p.Fstype, p.Mountpoint) {
			continue
		}
		if c.inFlight[p.Mountpoint] {
			errs = append(errs, fmt.Errorf("statfs %s: still blocked since an earlier collection; skipped", p.Mountpoint))
			continue
		}
		if i, ok := c.index[p.Mountpoint]; ok {
			mounts[i] = p
			continue
		}
		c.index[p.Mountpoint] = len(mounts)
		mounts = append(mounts, p)
	}
	c.inFlightMu.Unlock()

	results, blocked := c.statAll(r.ctx, mounts)
	if blocked != "" {
		errs = append(errs, fmt.Errorf("statfs %s: no answer within %s; skipped until it returns", blocked, c.timeout))
	}

	c.gen++
	next := c.spare[:0]
	failed := 0
	for i, res := range results {
		p := &mounts[i]
		if res.err != nil {
			// A mount this process may not read, or one gone since the mount list was read,
			// is skipped quietly, as node_exporter does.
			if errors.Is(res.err, fs.ErrPermission) || errors.Is(res.err, fs.ErrNotExist) {
				continue
			}
			failed++
			if failed <= maxFSErrors {
				errs = append(errs, fmt.Errorf("statfs %s: %w", p.Mountpoint, res.err))
			}
			continue
		}
		next = append(next, fsPoint{s: c.seriesFor(p), v: fsValuesOf(res.u)})
	}
	if failed > maxFSErrors {
		errs = append(errs, errors.New("statfs failed on "+strconv.Itoa(failed-maxFSErrors)+" more mounts"))
	}
	for mp, s := range c.series {
		if s.gen != c.gen {
			delete(c.series, mp)
		}
	}
	c.mu.Lock()
	c.spare, c.cur = c.cur, next
	c.mu.Unlock()
	clear(c.spare)
	return errors.Join(errs...)
}

// statAll runs statfs on each mount in a worker goroutine and waits up to c.timeout. It
// returns the results gathered in time and, on timeout, the mount point the worker is stuck on.
func (c *filesystemCollector) statAll(ctx context.Context, mounts []disk.PartitionStat) ([]statResult, string) {
	if len(mounts) == 0 {
		return nil, ""
	}
	job := &statJob{results: make([]statResult, len(mounts))}
	finished := make(chan struct{})
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		defer close(finished)
		for i := range mounts {
			job.mu.Lock()
			stop := job.abandoned
			job.mu.Unlock()
			if stop {
				return
			}
			mp := mounts[i].Mountpoint
			c.setInFlight(mp, true)
			u, err := c.statfs(ctx, c.h.path(mp))
			c.setInFlight(mp, false)
			job.mu.Lock()
			job.results[i] = statResult{u: u, err: err}
			job.done = i + 1
			job.mu.Unlock()
		}
	}()
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	select {
	case <-finished:
		return job.results, ""
	case <-t.C:
	}
	job.mu.Lock()
	defer job.mu.Unlock()
	job.abandoned = true
	if job.done == len(mounts) {
		return job.results, ""
	}
	return job.results[:job.done], mounts[job.done].Mountpoint
}

func (c *filesystemCollector) setInFlight(mountpoint string, on bool) {
	c.inFlightMu.Lock()
	if on {
		c.inFlight[mountpoint] = true
	} else {
		delete(c.inFlight, mountpoint)
	}
	c.inFlightMu.Unlock()
}

// seriesFor returns the cached series of p, rebuilt when its device, type or mode changed.
func (c *filesystemCollector) seriesFor(p *disk.PartitionStat) *fsSeries {
	mode := "rw"
	for _, o := range p.Opts {
		if o == "ro" {
			mode = "ro"
			break
		}
	}
	s := c.series[p.Mountpoint]
	if s == nil || s.device != p.Device || s.fstype != p.Fstype || s.mode != mode {
		f := systemconv.FilesystemUsageObservable{}
		base := []attribute.KeyValue{
			f.AttrDevice(p.Device),
			f.AttrFilesystemMountpoint(p.Mountpoint),
			f.AttrFilesystemType(systemconv.FilesystemTypeAttr(p.Fstype)),
			f.AttrFilesystemMode(mode),
		}
		with := func(st systemconv.FilesystemStateAttr) []metric.ObserveOption {
			return attrOpts(append(base[:len(base):len(base)], f.AttrFilesystemState(st))...)
		}
		s = &fsSeries{
			device: p.Device, fstype: p.Fstype, mode: mode,
			used:     with(systemconv.FilesystemStateUsed),
			free:     with(systemconv.FilesystemStateFree),
			reserved: with(systemconv.FilesystemStateReserved),
			all:      attrOpts(base...),
		}
		c.series[p.Mountpoint] = s
	}
	s.gen = c.gen
	return s
}

func fsValuesOf(u *disk.UsageStat) fsValues {
	total, used, free := clampInt(u.Total), clampInt(u.Used), clampInt(u.Free)
	v := fsValues{used: used, free: free, reserved: max(0, total-used-free), limit: total}
	if used+free > 0 {
		v.util, v.utilOK = float64(used)/float64(used+free), true
	}
	return v
}

func (c *filesystemCollector) observe(_ context.Context, o metric.Observer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.cur {
		s, v := c.cur[i].s, &c.cur[i].v
		o.ObserveInt64(c.usage, v.used, s.used...)
		o.ObserveInt64(c.usage, v.free, s.free...)
		o.ObserveInt64(c.usage, v.reserved, s.reserved...)
		o.ObserveInt64(c.limit, v.limit, s.all...)
		if v.utilOK {
			o.ObserveFloat64(c.util, v.util, s.all...)
		}
	}
	return nil
}

// excludedFS reports whether a mount is left out: node_exporter's default
// --collector.filesystem.fs-types-exclude and mount-points-exclude, plus tmpfs and ramfs.
func excludedFS(fstype, mountpoint string) bool {
	switch fstype {
	case "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
		"devtmpfs", "erofs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "overlay",
		"proc", "procfs", "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs",
		"sysfs", "tmpfs", "tracefs":
		return true
	}
	// ^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)
	for _, p := range [...]string{"/dev", "/proc", "/sys"} {
		if rest, ok := strings.CutPrefix(mountpoint, p); ok && (rest == "" || rest[0] == '/') {
			return true
		}
	}
	for _, p := range [...]string{"/run/credentials/", "/var/lib/docker/", "/var/lib/containers/storage/"} {
		if rest, ok := strings.CutPrefix(mountpoint, p); ok && rest != "" {
			return true
		}
	}
	return false
}
