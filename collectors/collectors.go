// Package collectors reads host metrics with gopsutil and reports them as OpenTelemetry
// instruments named after the semantic conventions for system metrics (system.cpu.time,
// system.memory.usage, ...).
//
// One file per collector, like node_exporter's collector/ folder: cpu, load, memory, swap,
// filesystem, disk, network and uptime. Collection runs on the Set's own schedule and stores a
// snapshot; the observable callbacks only read the latest snapshot, so a scrape or an OTLP
// export never waits on the host.
package collectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/picket-dev/picket/internal/config"
)

// DefaultInterval is the collection interval used when collectors.interval is zero.
const DefaultInterval = 15 * time.Second

// mountTimeout bounds the statfs calls of one collection, so that a dead network
// filesystem cannot stall the other collectors (node_exporter's --collector.filesystem.mount-timeout).
const mountTimeout = 5 * time.Second

// stopGrace is how long Run waits, when it ends, for a statfs call still blocked in the kernel.
const stopGrace = time.Second

// ErrRunning is returned by Run when the Set is already running or has run.
var ErrRunning = errors.New("collectors: Run was already called on this Set")

// collector reads one part of the host.
//
// collect is called only from the Set's Run goroutine (or a test), never concurrently with
// itself; it reads the host and stores a snapshot. The callback the collector registered on
// its meter may run at any time, concurrently with collect, and reads only that snapshot
// under the collector's own lock.
type collector interface {
	collect(r *round) error
}

// round carries what one collection shares between collectors: the context holding the
// gopsutil host paths, and reads two collectors need (memory and swap both use /proc/meminfo;
// load and the node load both use /proc/loadavg).
type round struct {
	ctx context.Context
	h   *host

	vm     *mem.VirtualMemoryStat
	vmErr  error
	vmRead bool

	avg     *load.AvgStat
	avgErr  error
	avgRead bool
}

func (r *round) virtualMemory() (*mem.VirtualMemoryStat, error) {
	if !r.vmRead {
		r.vmRead = true
		r.vm, r.vmErr = mem.VirtualMemoryWithContext(r.ctx)
		if r.vmErr != nil {
			r.vmErr = fmt.Errorf("read %s: %w", r.h.proc("meminfo"), r.vmErr)
		}
	}
	return r.vm, r.vmErr
}

func (r *round) loadAvg() (*load.AvgStat, error) {
	if !r.avgRead {
		r.avgRead = true
		r.avg, r.avgErr = load.AvgWithContext(r.ctx)
		if r.avgErr != nil {
			r.avgErr = fmt.Errorf("read %s: %w", r.h.proc("loadavg"), r.avgErr)
		}
	}
	return r.avg, r.avgErr
}

// host locates the host's /proc, /sys, /etc, /run, /var, /dev and / for gopsutil.
type host struct {
	root string // "/" unless picket runs in a container with the host mounted elsewhere
	env  common.EnvMap
}

func newHost(root string) *host {
	if root == "" {
		root = "/"
	}
	root = filepath.Clean(root)
	return &host{root: root, env: common.EnvMap{
		common.HostProcEnvKey: filepath.Join(root, "proc"),
		common.HostSysEnvKey:  filepath.Join(root, "sys"),
		common.HostEtcEnvKey:  filepath.Join(root, "etc"),
		common.HostRunEnvKey:  filepath.Join(root, "run"),
		common.HostVarEnvKey:  filepath.Join(root, "var"),
		common.HostDevEnvKey:  filepath.Join(root, "dev"),
		common.HostRootEnvKey: root,
	}}
}

// context returns ctx carrying the host paths. They are always set, so gopsutil's HOST_*
// environment variables never disagree with collectors.host_root.
func (h *host) context(ctx context.Context) context.Context {
	return context.WithValue(ctx, common.EnvKey, h.env)
}

// proc returns a path under the host's /proc.
func (h *host) proc(name string) string { return filepath.Join(h.env[common.HostProcEnvKey], name) }

// sys returns a path under the host's /sys.
func (h *host) sys(name string) string { return filepath.Join(h.env[common.HostSysEnvKey], name) }

// path returns where the host path p (such as a mount point) is seen by this process.
func (h *host) path(p string) string {
	if h.root == "/" {
		return p
	}
	return filepath.Join(h.root, p)
}

// unit is one enabled collector with its own health: the duration of its last run, its
// error count and the last error logged.
type unit struct {
	name string
	c    collector
	opts []metric.ObserveOption // {collector=name}

	mu       sync.Mutex
	duration float64 // seconds of the last run
	errors   int64
	ran      bool

	lastErr string // only the Run goroutine touches it
}

// Set runs the enabled collectors on one schedule. Load is safe for concurrent use; Run is
// called once and owns the collection goroutine (its caller's).
type Set struct {
	logger   *slog.Logger
	interval time.Duration
	host     *host
	units    []*unit
	regs     []metric.Registration

	statfs sync.WaitGroup // statfs workers of the filesystem collector

	load    atomic.Uint64 // math.Float64bits of the 1-minute load average ÷ CPUs
	loadErr string        // only the Run goroutine touches it
	running atomic.Bool
}

// New builds the collectors not listed in cfg.Disabled and registers their instruments on
// meter. It returns an error naming the key when cfg.Disabled holds an unknown name.
func New(cfg config.Collectors, meter metric.Meter, logger *slog.Logger) (*Set, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	disabled := make(map[string]bool, len(cfg.Disabled))
	known := config.CollectorNames() // also the collection order
	for _, name := range cfg.Disabled {
		if !contains(known, name) {
			return nil, fmt.Errorf("collectors.disabled: unknown collector %q (known: %s)", name, strings.Join(known, ", "))
		}
		disabled[name] = true
	}
	s := &Set{
		logger:   logger.With("component", "collectors"),
		interval: cfg.Interval.D(),
		host:     newHost(cfg.HostRoot),
	}
	if s.interval <= 0 {
		s.interval = DefaultInterval
	}
	for _, name := range known {
		if disabled[name] {
			continue
		}
		c, reg, err := s.build(name, meter)
		if err != nil {
			s.unregister()
			return nil, fmt.Errorf("collector %s: %w", name, err)
		}
		s.regs = append(s.regs, reg)
		s.units = append(s.units, &unit{
			name: name,
			c:    c,
			opts: []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("collector", name)))},
		})
	}
	if err := s.registerOwn(meter); err != nil {
		s.unregister()
		return nil, err
	}
	return s, nil
}

// build is the one explicit wiring of collector names to constructors.
func (s *Set) build(name string, m metric.Meter) (collector, metric.Registration, error) {
	switch name {
	case config.CollectorCPU:
		return newCPU(m)
	case config.CollectorLoad:
		return newLoad(m)
	case config.CollectorMemory:
		return newMemory(m)
	case config.CollectorSwap:
		return newSwap(m)
	case config.CollectorFilesystem:
		timeout := min(mountTimeout, s.interval)
		return newFilesystem(m, s.host, timeout, &s.statfs)
	case config.CollectorDisk:
		return newDisk(m)
	case config.CollectorNetwork:
		return newNetwork(m, s.host)
	case config.CollectorUptime:
		return newUptime(m)
	}
	return nil, nil, fmt.Errorf("no constructor for collector %q", name)
}

// registerOwn registers picket_collector_duration_seconds, picket_collector_errors_total
// and picket_node_load.
func (s *Set) registerOwn(m metric.Meter) error {
	duration, err := m.Float64ObservableGauge("picket.collector.duration",
		metric.WithDescription("Duration of the last run of each host metric collector."),
		metric.WithUnit("s"))
	if err != nil {
		return fmt.Errorf("create picket.collector.duration: %w", err)
	}
	errs, err := m.Int64ObservableCounter("picket.collector.errors",
		metric.WithDescription("Runs of each host metric collector that failed, in whole or in part."),
		metric.WithUnit("{error}"))
	if err != nil {
		return fmt.Errorf("create picket.collector.errors: %w", err)
	}
	nodeLoad, err := m.Float64ObservableGauge("picket.node.load",
		metric.WithDescription("1-minute load average divided by the number of logical CPUs; gossiped and used to place checks."))
	if err != nil {
		return fmt.Errorf("create picket.node.load: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, u := range s.units {
			u.mu.Lock()
			if u.ran {
				o.ObserveFloat64(duration, u.duration, u.opts...)
				o.ObserveInt64(errs, u.errors, u.opts...)
			}
			u.mu.Unlock()
		}
		o.ObserveFloat64(nodeLoad, s.Load())
		return nil
	}, duration, errs, nodeLoad)
	if err != nil {
		return fmt.Errorf("register collector health callback: %w", err)
	}
	s.regs = append(s.regs, reg)
	return nil
}

func (s *Set) unregister() {
	for _, r := range s.regs {
		_ = r.Unregister() // the SDK's Unregister only fails for a foreign registration
	}
	s.regs = nil
}

// Load returns the latest 1-minute load average divided by the number of logical CPUs, or 0
// before the first collection. It is read even when the load collector is disabled, since
// placement depends on it. Safe for concurrent use.
func (s *Set) Load() float64 { return math.Float64frombits(s.load.Load()) }

// Run collects at once, then every collectors.interval, until ctx ends. It then unregisters
// the Set's callbacks and returns nil. A Set runs once; a second call returns ErrRunning.
func (s *Set) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.stop()
	s.collect(ctx)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.collect(ctx)
		}
	}
}

// stop unregisters the callbacks and waits, for a bounded time, for statfs workers. A statfs
// blocked in the kernel by a dead network filesystem cannot be interrupted; its goroutine
// ends when the kernel call returns.
func (s *Set) stop() {
	s.unregister()
	done := make(chan struct{})
	go func() {
		s.statfs.Wait()
		close(done)
	}()
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.logger.Warn("a statfs call is still blocked in the kernel (unresponsive mount); not waiting for it")
	}
}

// collect runs every enabled collector once, in order, then updates the node load.
func (s *Set) collect(ctx context.Context) {
	r := &round{ctx: s.host.context(ctx), h: s.host}
	for _, u := range s.units {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		err := u.c.collect(r)
		u.finish(time.Since(start), err, s.logger)
	}
	s.updateLoad(r)
}

// finish records one run of u and logs its error when it differs from the last one.
func (u *unit) finish(d time.Duration, err error, logger *slog.Logger) {
	u.mu.Lock()
	u.ran = true
	u.duration = d.Seconds()
	if err != nil {
		u.errors++
	}
	u.mu.Unlock()

	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == u.lastErr {
		return
	}
	if err != nil {
		logger.Warn("host metric collector failed; its metrics may be missing or stale until it recovers (failures are counted in picket_collector_errors_total)",
			"collector", u.name, "err", err)
	} else {
		logger.Info("host metric collector recovered", "collector", u.name)
	}
	u.lastErr = msg
}

// updateLoad stores the node load from the round's load average and the host's CPU count.
func (s *Set) updateLoad(r *round) {
	avg, err := r.loadAvg()
	var n int
	if err == nil {
		n, err = onlineCPUs(r)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	} else {
		s.load.Store(math.Float64bits(avg.Load1 / float64(n)))
	}
	if msg != s.loadErr {
		if err != nil {
			s.logger.Warn("cannot compute the node load; placement uses the last known value", "err", err)
		} else {
			s.logger.Info("node load readable again")
		}
		s.loadErr = msg
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// attrOpts builds the observe options for one attribute set; callers cache the result so a
// collection allocates no attribute sets for series it already knows.
func attrOpts(kvs ...attribute.KeyValue) []metric.ObserveOption {
	return []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(kvs...))}
}
