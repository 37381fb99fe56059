package collectors

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/picket-dev/picket/internal/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// metricsOf maps each collector to the metrics it must produce on any Linux host.
// system.cpu.utilization needs two collections and system.paging.utilization a swap device,
// so they are checked separately.
func metricsOf() map[string][]string {
	return map[string][]string{
		config.CollectorCPU:        {"system.cpu.time", "system.cpu.logical.count"},
		config.CollectorLoad:       {"system.cpu.load_average.1m", "system.cpu.load_average.5m", "system.cpu.load_average.15m"},
		config.CollectorMemory:     {"system.memory.usage", "system.memory.utilization", "system.memory.limit", "system.memory.linux.available"},
		config.CollectorSwap:       {"system.paging.usage"},
		config.CollectorFilesystem: {"system.filesystem.usage", "system.filesystem.utilization", "system.filesystem.limit"},
		config.CollectorDisk:       {"system.disk.io", "system.disk.operations", "system.disk.io_time", "system.disk.operation_time", "system.disk.merged"},
		config.CollectorNetwork:    {"system.network.io", "system.network.packet.count", "system.network.errors", "system.network.packet.dropped"},
		config.CollectorUptime:     {"system.uptime"},
	}
}

// allNames lists every metric name any collector may produce.
func allNames() []string {
	var names []string
	for _, ms := range metricsOf() {
		names = append(names, ms...)
	}
	return append(names, "system.cpu.utilization", "system.paging.utilization")
}

type harness struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	set    *Set
	logs   *syncBuffer
}

func newHarness(t testing.TB, cfg config.Collectors) *harness {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	s, err := New(cfg, mp.Meter("test"), logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &harness{reader: reader, mp: mp, set: s, logs: logs}
}

// gather collects the reader and indexes metrics by name.
func (h *harness) gather(t testing.TB) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if points(m) > 0 {
				out[m.Name] = m
			}
		}
	}
	return out
}

func points(m metricdata.Metrics) int {
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		return len(d.DataPoints)
	case metricdata.Sum[float64]:
		return len(d.DataPoints)
	case metricdata.Gauge[int64]:
		return len(d.DataPoints)
	case metricdata.Gauge[float64]:
		return len(d.DataPoints)
	}
	return 0
}

// value returns the value of the point of m whose attributes include want, and whether
// there is exactly one such point.
func value(m metricdata.Metrics, want ...attribute.KeyValue) (float64, bool) {
	match := func(s attribute.Set) bool {
		for _, kv := range want {
			v, ok := s.Value(kv.Key)
			if !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	var vals []float64
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				vals = append(vals, float64(p.Value))
			}
		}
	case metricdata.Sum[float64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				vals = append(vals, p.Value)
			}
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				vals = append(vals, float64(p.Value))
			}
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				vals = append(vals, p.Value)
			}
		}
	}
	if len(vals) != 1 {
		return 0, false
	}
	return vals[0], true
}

func TestRealHostEveryCollector(t *testing.T) {
	h := newHarness(t, config.Collectors{Interval: config.Duration(time.Hour), HostRoot: "/"})
	ctx := context.Background()
	// Utilization needs two snapshots at least one clock tick apart.
	deadline := time.Now().Add(5 * time.Second)
	var got map[string]metricdata.Metrics
	for {
		h.set.collect(ctx)
		got = h.gather(t)
		if _, ok := got["system.cpu.utilization"]; ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for coll, names := range metricsOf() {
		for _, n := range names {
			if _, ok := got[n]; !ok {
				t.Errorf("collector %s: no %s series", coll, n)
			}
		}
		if _, ok := value(got["picket.collector.duration"], attribute.String("collector", coll)); !ok {
			t.Errorf("no picket.collector.duration{collector=%s}", coll)
		}
		if v, ok := value(got["picket.collector.errors"], attribute.String("collector", coll)); !ok || v != 0 {
			t.Errorf("picket.collector.errors{collector=%s} = %v, %v; want 0 on this host (logs: %s)", coll, v, ok, h.logs)
		}
	}
	if _, ok := got["system.cpu.utilization"]; !ok {
		t.Error("no system.cpu.utilization after two collections")
	}
	var sum float64
	for _, mode := range []string{"user", "nice", "system", "idle", "iowait", "interrupt", "softirq", "steal"} {
		v, ok := value(got["system.cpu.utilization"], attribute.String("cpu.mode", mode))
		if !ok || v < 0 || v > 1 {
			t.Errorf("system.cpu.utilization{cpu.mode=%s} = %v, %v", mode, v, ok)
		}
		sum += v
	}
	if math.Abs(sum-1) > 1e-6 && sum != 0 {
		t.Errorf("cpu utilization over all modes sums to %v, want 1", sum)
	}
	if load, ok := value(got["picket.node.load"]); !ok || load != h.set.Load() || load < 0 {
		t.Errorf("picket.node.load = %v, %v; Load() = %v", load, ok, h.set.Load())
	}
	// The root filesystem is always there and never excluded.
	if _, ok := value(got["system.filesystem.limit"], attribute.String("system.filesystem.mountpoint", "/")); !ok {
		t.Errorf("no filesystem series for /")
	}
	if _, ok := value(got["system.network.io"], attribute.String("network.interface.name", "lo"), attribute.String("network.io.direction", "receive")); !ok {
		t.Errorf("no network series for lo (loopback is kept, as node_exporter does)")
	}
	if h.logs.Len() != 0 {
		t.Errorf("unexpected log output: %s", h.logs)
	}
}

func TestDisabledCollectorsRegisterNothing(t *testing.T) {
	for _, disabled := range config.CollectorNames() {
		t.Run(disabled, func(t *testing.T) {
			h := newHarness(t, config.Collectors{Disabled: []string{disabled}})
			h.set.collect(context.Background())
			got := h.gather(t)
			for coll, names := range metricsOf() {
				for _, n := range names {
					_, ok := got[n]
					if coll == disabled && ok {
						t.Errorf("disabled collector %s still produced %s", coll, n)
					}
					if coll != disabled && !ok {
						t.Errorf("enabled collector %s produced no %s", coll, n)
					}
				}
				_, ok := value(got["picket.collector.duration"], attribute.String("collector", coll))
				if ok != (coll != disabled) {
					t.Errorf("picket.collector.duration{collector=%s} present = %v", coll, ok)
				}
			}
		})
	}
	t.Run("all", func(t *testing.T) {
		h := newHarness(t, config.Collectors{Disabled: config.CollectorNames()})
		h.set.collect(context.Background())
		got := h.gather(t)
		for _, n := range allNames() {
			if _, ok := got[n]; ok {
				t.Errorf("%s produced with every collector disabled", n)
			}
		}
		// Placement needs the node load even without the load collector.
		if _, ok := got["picket.node.load"]; !ok {
			t.Error("picket.node.load missing with every collector disabled")
		}
	})
}

func TestUnknownCollectorName(t *testing.T) {
	mp := sdkmetric.NewMeterProvider()
	defer func() { _ = mp.Shutdown(context.Background()) }()
	_, err := New(config.Collectors{Disabled: []string{"cpu", "gpu"}}, mp.Meter("t"), nil)
	want := `collectors.disabled: unknown collector "gpu" (known: cpu, load, memory, swap, filesystem, disk, network, uptime)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestRunCollectsOnScheduleAndStops(t *testing.T) {
	h := newHarness(t, config.Collectors{Interval: config.Duration(20 * time.Millisecond)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.set.Run(ctx) }()

	// Utilization appears only once a second collection ran on the ticker.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := h.gather(t)["system.cpu.utilization"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no second collection within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := h.set.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := h.gather(t); len(got) != 0 {
		t.Errorf("callbacks still registered after Run returned: %d metrics", len(got))
	}
}

// fakeHost writes a host tree under a temporary root.
type fakeHost struct {
	t    *testing.T
	root string
}

func newFakeHost(t *testing.T) *fakeHost {
	f := &fakeHost{t: t, root: t.TempDir()}
	f.write("proc/loadavg", "1.50 1.00 0.50 1/100 12345\n")
	f.write("sys/devices/system/cpu/online", "0-2\n")
	f.write("proc/stat", procStat([3][8]uint64{}))
	f.write("proc/meminfo", strings.Join([]string{
		"MemTotal:       1000 kB", "MemFree:         100 kB", "MemAvailable:    600 kB",
		"Buffers:          50 kB", "Cached:          200 kB", "SReclaimable:     30 kB",
		"SwapTotal:       400 kB", "SwapFree:        300 kB", "",
	}, "\n"))
	f.write("proc/filesystems", "nodev\tsysfs\nnodev\tproc\nnodev\ttmpfs\n\text4\n")
	f.write("proc/1/mountinfo", strings.Join([]string{
		"1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw",
		"2 1 8:2 / /data ro,relatime - ext4 /dev/sda2 ro",
		"3 1 0:5 / /proc rw - proc proc rw",
		"4 1 0:6 / /run rw - tmpfs tmpfs rw",
		"5 1 8:3 / /var/lib/docker/overlay2/x rw - ext4 /dev/sda3 rw",
		"",
	}, "\n"))
	if err := os.MkdirAll(filepath.Join(f.root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.write("proc/diskstats", strings.Join([]string{
		diskLine("sda", 10, 20, 30, 40, 50, 60, 70),
		diskLine("sda1", 1, 1, 1, 1, 1, 1, 1),
		diskLine("loop0", 1, 1, 1, 1, 1, 1, 1),
		diskLine("nvme0n1", 1, 1, 1, 1, 1, 1, 1),
		diskLine("nvme0n1p1", 1, 1, 1, 1, 1, 1, 1),
		diskLine("dm-0", 1, 1, 1, 1, 1, 1, 1),
		"",
	}, "\n"))
	f.write("proc/1/net/dev", strings.Join([]string{
		"Inter-|   Receive                                                |  Transmit",
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
		"  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0",
		"    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0",
		"",
	}, "\n"))
	return f
}

func (f *fakeHost) write(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// procStat renders /proc/stat for three CPUs from ticks (USER_HZ=100) in the order user,
// nice, system, idle, iowait, irq, softirq, steal.
func procStat(cpus [3][8]uint64) string {
	var b strings.Builder
	b.WriteString("cpu  0 0 0 0 0 0 0 0 0 0\n")
	for i, c := range cpus {
		b.WriteString("cpu" + itoa(uint64(i)))
		for _, v := range c {
			b.WriteString(" " + itoa(v))
		}
		b.WriteString(" 0 0\n")
	}
	b.WriteString("intr 0\nctxt 0\nbtime 1700000000\n")
	return b.String()
}

// diskLine renders one /proc/diskstats line.
func diskLine(name string, reads, rsect, rms, writes, wsect, wms, ioms uint64) string {
	f := []string{"8", "0", name, itoa(reads), "2", itoa(rsect), itoa(rms), itoa(writes), "3", itoa(wsect), itoa(wms), "0", itoa(ioms), "0"}
	return strings.Join(f, " ")
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	return string(b)
}

func TestHostRootFakeTree(t *testing.T) {
	f := newFakeHost(t)
	h := newHarness(t, config.Collectors{HostRoot: f.root})
	h.set.collect(context.Background())

	// Second snapshot: CPU 0 spends 30 ticks user and 10 idle; CPU 1's iowait goes
	// backwards (a kernel quirk) and must be held, not reported as a counter reset.
	f.write("proc/stat", procStat([3][8]uint64{
		{30, 0, 0, 10, 0, 0, 0, 0},
		{0, 0, 0, 0, 0, 0, 0, 0},
		{0, 0, 0, 0, 0, 0, 0, 0},
	}))
	h.set.collect(context.Background())
	f.write("proc/stat", procStat([3][8]uint64{
		{30, 0, 0, 10, 0, 0, 0, 0},
		{0, 0, 0, 0, 5, 0, 0, 0},
		{0, 0, 0, 0, 0, 0, 0, 0},
	}))
	h.set.collect(context.Background())
	f.write("proc/stat", procStat([3][8]uint64{
		{30, 0, 0, 10, 0, 0, 0, 0},
		{0, 0, 0, 0, 3, 0, 0, 0},
		{0, 0, 0, 0, 0, 0, 0, 10},
	}))
	h.set.collect(context.Background())
	got := h.gather(t)

	str := attribute.String
	cases := []struct {
		name   string
		metric string
		attrs  []attribute.KeyValue
		want   float64
	}{
		{"load 1m", "system.cpu.load_average.1m", nil, 1.5},
		{"load 15m", "system.cpu.load_average.15m", nil, 0.5},
		{"node load is load1/cpus", "picket.node.load", nil, 0.5},
		{"cpu time user", "system.cpu.time", []attribute.KeyValue{str("cpu.mode", "user"), attribute.Int("cpu.logical_number", 0)}, 0.3},
		{"iowait held at its maximum", "system.cpu.time", []attribute.KeyValue{str("cpu.mode", "iowait"), attribute.Int("cpu.logical_number", 1)}, 0.05},
		{"utilization steal", "system.cpu.utilization", []attribute.KeyValue{str("cpu.mode", "steal")}, 1},
		{"logical count", "system.cpu.logical.count", nil, 3},
		{"memory used", "system.memory.usage", []attribute.KeyValue{str("system.memory.state", "used")}, (1000 - 100 - 50 - 230) * 1024},
		{"memory cached includes reclaimable slab", "system.memory.usage", []attribute.KeyValue{str("system.memory.state", "cached")}, 230 * 1024},
		{"memory limit", "system.memory.limit", nil, 1000 * 1024},
		{"memory free ratio", "system.memory.utilization", []attribute.KeyValue{str("system.memory.state", "free")}, 0.1},
		{"swap used", "system.paging.usage", []attribute.KeyValue{str("system.paging.state", "used")}, 100 * 1024},
		{"swap used ratio", "system.paging.utilization", []attribute.KeyValue{str("system.paging.state", "used")}, 0.25},
		{"disk read bytes", "system.disk.io", []attribute.KeyValue{str("system.device", "sda"), str("disk.io.direction", "read")}, 20 * 512},
		{"disk write ops", "system.disk.operations", []attribute.KeyValue{str("system.device", "sda"), str("disk.io.direction", "write")}, 40},
		{"disk io time", "system.disk.io_time", []attribute.KeyValue{str("system.device", "sda")}, 0.07},
		{"disk read time", "system.disk.operation_time", []attribute.KeyValue{str("system.device", "sda"), str("disk.io.direction", "read")}, 0.03},
		{"disk merged writes", "system.disk.merged", []attribute.KeyValue{str("system.device", "sda"), str("disk.io.direction", "write")}, 3},
		{"net rx bytes", "system.network.io", []attribute.KeyValue{str("network.interface.name", "eth0"), str("network.io.direction", "receive")}, 1000},
		{"net tx packets", "system.network.packet.count", []attribute.KeyValue{str("system.device", "eth0"), str("network.io.direction", "transmit")}, 20},
		{"net rx errors", "system.network.errors", []attribute.KeyValue{str("network.interface.name", "eth0"), str("network.io.direction", "receive")}, 1},
		{"net tx dropped", "system.network.packet.dropped", []attribute.KeyValue{str("network.interface.name", "eth0"), str("network.io.direction", "transmit")}, 4},
	}
	for _, c := range cases {
		v, ok := value(got[c.metric], c.attrs...)
		if !ok || math.Abs(v-c.want) > 1e-9 {
			t.Errorf("%s: %s%v = %v (found %v), want %v", c.name, c.metric, c.attrs, v, ok, c.want)
		}
	}

	// Only whole disks, like node_exporter.
	var devices []string
	for _, p := range got["system.disk.io_time"].Data.(metricdata.Sum[float64]).DataPoints {
		d, _ := p.Attributes.Value("system.device")
		devices = append(devices, d.AsString())
	}
	slices.Sort(devices)
	if want := []string{"dm-0", "nvme0n1", "sda"}; !slices.Equal(devices, want) {
		t.Errorf("disks = %v, want %v", devices, want)
	}

	// Only / and /data; statfs ran under the host root.
	var mounts []string
	for _, p := range got["system.filesystem.limit"].Data.(metricdata.Sum[int64]).DataPoints {
		mp, _ := p.Attributes.Value("system.filesystem.mountpoint")
		mode, _ := p.Attributes.Value("system.filesystem.mode")
		dev, _ := p.Attributes.Value("system.device")
		mounts = append(mounts, mp.AsString()+" "+mode.AsString()+" "+dev.AsString())
	}
	slices.Sort(mounts)
	if want := []string{"/ rw /dev/sda1", "/data ro /dev/sda2"}; !slices.Equal(mounts, want) {
		t.Errorf("filesystems = %v, want %v", mounts, want)
	}
	if h.logs.Len() != 0 {
		t.Errorf("unexpected logs: %s", h.logs)
	}
}

func TestErrorsCountedAndLoggedOncePerChange(t *testing.T) {
	f := newFakeHost(t)
	if err := os.Remove(filepath.Join(f.root, "proc/diskstats")); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, config.Collectors{HostRoot: f.root, Disabled: []string{"cpu", "load", "memory", "swap", "filesystem", "network", "uptime"}})
	for range 3 {
		h.set.collect(context.Background())
	}
	got := h.gather(t)
	if v, _ := value(got["picket.collector.errors"], attribute.String("collector", "disk")); v != 3 {
		t.Errorf("disk errors = %v, want 3", v)
	}
	if n := strings.Count(h.logs.String(), "host metric collector failed"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, h.logs)
	}
	if !strings.Contains(h.logs.String(), filepath.Join(f.root, "proc/diskstats")) {
		t.Errorf("log does not name the file: %s", h.logs)
	}

	f.write("proc/diskstats", diskLine("sda", 1, 1, 1, 1, 1, 1, 1)+"\n")
	h.set.collect(context.Background())
	h.set.collect(context.Background())
	if n := strings.Count(h.logs.String(), "host metric collector recovered"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, h.logs)
	}
	if v, _ := value(h.gather(t)["picket.collector.errors"], attribute.String("collector", "disk")); v != 3 {
		t.Errorf("disk errors after recovery = %v, want 3", v)
	}
}

func TestExcludedDisk(t *testing.T) {
	for name, want := range map[string]bool{
		"sda": false, "sda1": true, "vdb2": true, "xvda1": true, "hdc3": true,
		"nvme0n1": false, "nvme0n1p1": true, "nvme10n2p12": true,
		"loop0": true, "ram1": true, "zram0": true, "fd0": true,
		"dm-0": false, "md127": false, "mmcblk0": false, "sr0": false, "vda": false, "loop": false,
	} {
		if got := excludedDisk(name); got != want {
			t.Errorf("excludedDisk(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestExcludedFS(t *testing.T) {
	cases := []struct {
		fstype, mountpoint string
		want               bool
	}{
		{"ext4", "/", false},
		{"xfs", "/home", false},
		{"nfs4", "/mnt/nfs", false},
		{"ext4", "/var/lib/docker", false},
		{"ext4", "/var/lib/docker/overlay2/abc", true},
		{"ext4", "/var/lib/containers/storage/x", true},
		{"ext4", "/devices", false},
		{"ext4", "/dev/sdb", true},
		{"ext4", "/sys", true},
		{"ext4", "/run/credentials/x.service", true},
		{"tmpfs", "/tmp", true},
		{"overlay", "/", true},
		{"proc", "/proc", true},
		{"cgroup2", "/sys/fs/cgroup", true},
		{"squashfs", "/snap/core/1", true},
	}
	for _, c := range cases {
		if got := excludedFS(c.fstype, c.mountpoint); got != c.want {
			t.Errorf("excludedFS(%q, %q) = %v, want %v", c.fstype, c.mountpoint, got, c.want)
		}
	}
}

func TestCountCPUList(t *testing.T) {
	for in, want := range map[string]int{"0\n": 1, "0-3": 4, "0-3,5,7-8\n": 7, "": -1, "3-1": -1, "a": -1} {
		n, ok := countCPUList([]byte(in))
		if (want < 0 && ok) || (want >= 0 && (!ok || n != want)) {
			t.Errorf("countCPUList(%q) = %d, %v; want %d", in, n, ok, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// TestStuckMountSkipped simulates a statfs that hangs in the kernel (a dead NFS server):
// the collection gives up on it after the timeout, keeps reporting the other mounts, skips
// it while it hangs and reports it again once the call returns.
func TestStuckMountSkipped(t *testing.T) {
	f := newFakeHost(t)
	h := newHarness(t, config.Collectors{HostRoot: f.root, Disabled: []string{"cpu", "load", "memory", "swap", "disk", "network", "uptime"}})
	var fc *filesystemCollector
	for _, u := range h.set.units {
		if c, ok := u.c.(*filesystemCollector); ok {
			fc = c
		}
	}
	release := make(chan struct{})
	stuck := filepath.Join(f.root, "data")
	fc.timeout = 50 * time.Millisecond
	fc.statfs = func(ctx context.Context, path string) (*disk.UsageStat, error) {
		if path == stuck {
			<-release
		}
		return disk.UsageWithContext(ctx, path)
	}
	mounts := func() []string {
		var out []string
		m, ok := h.gather(t)["system.filesystem.limit"]
		if !ok {
			return nil
		}
		for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
			mp, _ := p.Attributes.Value("system.filesystem.mountpoint")
			out = append(out, mp.AsString())
		}
		slices.Sort(out)
		return out
	}
	errorsOf := func() float64 {
		v, _ := value(h.gather(t)["picket.collector.errors"], attribute.String("collector", "filesystem"))
		return v
	}

	h.set.collect(context.Background())
	if got := mounts(); !slices.Equal(got, []string{"/"}) {
		t.Errorf("while /data hangs: mounts %v, want [/]", got)
	}
	if !strings.Contains(h.logs.String(), "statfs /data: no answer within 50ms; skipped until it returns") {
		t.Errorf("log lacks the stuck mount: %s", h.logs)
	}
	h.set.collect(context.Background())
	if got := mounts(); !slices.Equal(got, []string{"/"}) {
		t.Errorf("second collection: mounts %v, want [/]", got)
	}
	if v := errorsOf(); v != 2 {
		t.Errorf("errors = %v, want 2", v)
	}

	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		fc.inFlightMu.Lock()
		n := len(fc.inFlight)
		fc.inFlightMu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("statfs worker did not finish after release")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.set.collect(context.Background())
	if got := mounts(); !slices.Equal(got, []string{"/", "/data"}) {
		t.Errorf("after the hang: mounts %v, want [/ /data]", got)
	}
	if v := errorsOf(); v != 2 {
		t.Errorf("errors after recovery = %v, want 2", v)
	}
	h.set.stop() // waits for the statfs workers
}
