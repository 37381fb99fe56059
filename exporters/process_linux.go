//go:build linux

package exporters

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, 100 on every Linux ABI).
const userHZ = 100

// processCollector reports picket's own process_* metrics, the names and HELP of
// client_golang's process collector, for a fraction of its cost: client_golang reads and
// parses /proc/self/stat, /proc/stat, /proc/self/limits, /proc/self/net/netstat and the
// /proc/self/fd directory on every scrape (≈ 0.4 ms here). This one calls getrusage and
// getrlimit, reads /proc/self/statm (one short line) and stats /proc/self/fd (see countFDs);
// the start time is read once.
//
// It leaves out process_network_receive_bytes_total and process_network_transmit_bytes_total:
// client_golang takes them from /proc/self/net/netstat, which counts the traffic of the whole
// network namespace rather than the process's (system_network_io_bytes_total already reports
// the host's), and that file alone costs ≈ 85 µs per scrape.
//
// Collect is safe for concurrent use.
type processCollector struct {
	cpu, openFDs, maxFDs, vsize, maxVsize, rss, start *prometheus.Desc

	pageSize  float64
	startTime float64 // 0 when it could not be read
	startErr  error

	mu  sync.Mutex
	buf []byte // for /proc/self/statm and the directory entries of /proc/self/fd
}

func newProcessCollector() prometheus.Collector {
	c := &processCollector{
		cpu:      prometheus.NewDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", nil, nil),
		openFDs:  prometheus.NewDesc("process_open_fds", "Number of open file descriptors.", nil, nil),
		maxFDs:   prometheus.NewDesc("process_max_fds", "Maximum number of open file descriptors.", nil, nil),
		vsize:    prometheus.NewDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.", nil, nil),
		maxVsize: prometheus.NewDesc("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", nil, nil),
		rss:      prometheus.NewDesc("process_resident_memory_bytes", "Resident memory size in bytes.", nil, nil),
		start:    prometheus.NewDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", nil, nil),
		pageSize: float64(os.Getpagesize()),
		buf:      make([]byte, 8192),
	}
	c.startTime, c.startErr = processStartTime()
	return c
}

// Describe sends the descriptors of every metric Collect may send.
func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.openFDs, c.maxFDs, c.vsize, c.maxVsize, c.rss, c.start} {
		ch <- d
	}
}

// Collect reads the process's figures; a figure that cannot be read is sent as an invalid
// metric, which the handler counts and logs as a gathering error.
func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		ch <- prometheus.NewInvalidMetric(c.cpu, fmt.Errorf("getrusage: %w", err))
	} else {
		cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, cpu)
	}
	c.rlimit(ch, c.maxFDs, syscall.RLIMIT_NOFILE, "RLIMIT_NOFILE")
	c.rlimit(ch, c.maxVsize, syscall.RLIMIT_AS, "RLIMIT_AS")
	if c.startErr != nil {
		ch <- prometheus.NewInvalidMetric(c.start, c.startErr)
	} else {
		ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, c.startTime)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if size, resident, err := c.statm(); err != nil {
		ch <- prometheus.NewInvalidMetric(c.vsize, err)
		ch <- prometheus.NewInvalidMetric(c.rss, err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.vsize, prometheus.GaugeValue, size*c.pageSize)
		ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, resident*c.pageSize)
	}
	if n, err := c.countFDs(); err != nil {
		ch <- prometheus.NewInvalidMetric(c.openFDs, err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.openFDs, prometheus.GaugeValue, float64(n))
	}
}

// rlimit sends the soft limit of resource, as /proc/self/limits shows it (unlimited is
// 2^64-1, as client_golang reports it).
func (c *processCollector) rlimit(ch chan<- prometheus.Metric, d *prometheus.Desc, resource int, name string) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(resource, &rl); err != nil {
		ch <- prometheus.NewInvalidMetric(d, fmt.Errorf("getrlimit %s: %w", name, err))
		return
	}
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(rl.Cur))
}

// statm returns the virtual and resident size in pages from /proc/self/statm, the same
// kernel counters as the vsize and rss fields of /proc/self/stat.
func (c *processCollector) statm() (size, resident float64, err error) {
	const path = "/proc/self/statm"
	b, err := readSmall(path, c.buf)
	if err != nil {
		return 0, 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("read %s: %d fields, want at least 2", path, len(f))
	}
	s, err1 := strconv.ParseUint(string(f[0]), 10, 64)
	r, err2 := strconv.ParseUint(string(f[1]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", path, err)
	}
	return float64(s), float64(r), nil
}

// countFDs returns the number of open file descriptors. Since Linux 6.2 the size stat
// reports for /proc/self/fd is that number (one system call, no directory read); before,
// the size is 0 and the directory's entries are counted with getdents into a reused buffer,
// without a name allocated per entry. Either way the count leaves out any descriptor this
// function opens itself.
func (c *processCollector) countFDs() (int, error) {
	const path = "/proc/self/fd"
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Size > 0 {
		return int(st.Size), nil
	}
	return c.listFDs()
}

// listFDs counts the entries of /proc/self/fd, less the descriptor it reads them through.
func (c *processCollector) listFDs() (int, error) {
	const path = "/proc/self/fd"
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer syscall.Close(fd)
	count := -1 // fd itself
	for {
		n, err := syscall.ReadDirent(fd, c.buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		if n <= 0 {
			return count, nil
		}
		count += countDirents(c.buf[:n])
	}
}

// countDirents counts the entries other than "." and ".." in a buffer of struct
// linux_dirent64 records: ino u64, off s64, reclen u16, type u8, then the NUL-terminated name.
func countDirents(b []byte) int {
	count := 0
	for off := 0; off+19 < len(b); {
		reclen := int(binary.NativeEndian.Uint16(b[off+16:]))
		if reclen < 20 || off+reclen > len(b) {
			break // malformed; the kernel does not write such records
		}
		if !isDotEntry(b[off+19 : off+reclen]) {
			count++
		}
		off += reclen
	}
	return count
}

// isDotEntry reports whether a NUL-terminated directory entry name is "." or "..".
func isDotEntry(name []byte) bool {
	switch {
	case len(name) >= 2 && name[0] == '.' && name[1] == 0:
		return true
	case len(name) >= 3 && name[0] == '.' && name[1] == '.' && name[2] == 0:
		return true
	}
	return false
}

// processStartTime returns when this process started, in seconds since the epoch: the
// boot time from /proc/stat plus field 22 of /proc/self/stat, as client_golang computes it.
func processStartTime() (float64, error) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, fmt.Errorf("read start time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces or parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("read /proc/self/stat: no ')' after the command name")
	}
	fields := bytes.Fields(stat[i+1:]) // fields 3, 4, ...
	if len(fields) < 20 {
		return 0, fmt.Errorf("read /proc/self/stat: %d fields after the command name, want at least 20", len(fields))
	}
	ticks, err := strconv.ParseUint(string(fields[22-3]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read /proc/self/stat: start time: %w", err)
	}
	procStat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read boot time: %w", err)
	}
	for line := range bytes.SplitSeq(procStat, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			boot, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read /proc/stat: btime: %w", err)
			}
			return float64(boot) + float64(ticks)/userHZ, nil
		}
	}
	return 0, errors.New("read /proc/stat: no btime line")
}

// readSmall reads the file at path into buf with plain system calls (no poller
// registration, no allocation) and returns the bytes read. A file larger than buf is an error.
func readSmall(path string, buf []byte) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer syscall.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			return nil, fmt.Errorf("read %s: larger than %d bytes", path, len(buf))
		}
		m, err := syscall.Read(fd, buf[n:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}
