package bench

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name string
		line string
		want time.Duration
		err  bool
	}{
		{"plain", "42 (picket) S 1 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 9 0 100 0 0", 1750 * time.Millisecond, false},
		{"name with spaces and parens", "42 (a (b) c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0", 100 * time.Millisecond, false},
		{"no name", "42 picket S", 0, true},
		{"short", "42 (x) S 1 2", 0, true},
		{"not a number", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 x 3 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.line))
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("parseStatCPU = %v, %v; want %v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	got, err := parseStatusRSS([]byte("Name:\tx\nVmPeak:\t 999 kB\nVmRSS:\t   2048 kB\nThreads: 3\n"))
	if err != nil || got != 2048*1024 {
		t.Errorf("parseStatusRSS = %d, %v; want %d", got, err, 2048*1024)
	}
	if _, err := parseStatusRSS([]byte("Name:\tzombie\n")); err == nil {
		t.Error("parseStatusRSS without VmRSS: no error")
	}
}

func TestProcCPUAndRSSOfSelf(t *testing.T) {
	before, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) { // burn CPU until the kernel has counted some
		after, err := ProcCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			break
		}
	}
	if after, _ := ProcCPU(os.Getpid()); after <= before {
		t.Errorf("CPU time did not grow while spinning: %v then %v", before, after)
	}
	rss, err := ProcRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("ProcRSS(self) = %d, %v", rss, err)
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Errorf("FreePorts returned %v: not distinct positive ports", ports)
		}
		seen[p] = true
	}
}

func TestProcsStartStop(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep program")
	}
	ps := &Procs{Dir: t.TempDir()}
	p, err := ps.Start("sleeper", sleep, "60")
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("sleep exited at once")
	}
	if _, err := p.CPU(); err != nil {
		t.Errorf("CPU of a running process: %v", err)
	}
	start := time.Now()
	ps.StopAll()
	if !p.Exited() {
		t.Error("process still running after StopAll")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("StopAll took %s; SIGTERM should end sleep at once", d)
	}
	if err := p.Stop(); err != nil { // idempotent
		t.Errorf("second Stop: %v", err)
	}

	q, err := ps.Start("fails", sleep, "not-a-number")
	if err != nil {
		t.Fatal(err)
	}
	err = WaitHTTP(t.Context(), q, "http://127.0.0.1:1/", 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited before serving") {
		t.Errorf("WaitHTTP on an exiting process: %v", err)
	}
	ps.StopAll()
}
