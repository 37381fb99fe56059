package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// perfTopLines is how many frames of `perf report` a diagnosis keeps.
const perfTopLines = 24

// PerfProgram is the Linux profiler the bench uses to see inside a running picket (its
// binary keeps symbols and frame pointers); without it, those diagnoses are skipped.
const PerfProgram = "perf"

// perfRecord samples process pid's CPU (with call graphs) for d into dir and returns the
// frames of `perf report --children` that belong to picket's components, by cumulative share.
func perfRecord(ctx context.Context, pid int, d time.Duration, dir string) (string, error) {
	perf, err := exec.LookPath(PerfProgram)
	if err != nil {
		return "", fmt.Errorf("%s is not on PATH (apt-get install -y linux-perf): %w", PerfProgram, err)
	}
	data := filepath.Join(dir, "perf.data")
	secs := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	rec := exec.CommandContext(ctx, perf, "record", "-F", "499", "-g", "-o", data, "-p", strconv.Itoa(pid), "--", "sleep", secs)
	if out, err := rec.CombinedOutput(); err != nil {
		return "", fmt.Errorf("perf record -p %d: %w\n%s", pid, err, out)
	}
	rep := exec.CommandContext(ctx, perf, "report", "-i", data, "--children", "--sort", "symbol", "--stdio", "-g", "none")
	out, err := rep.Output()
	if err != nil {
		return "", fmt.Errorf("perf report: %w", err)
	}
	return perfComponents(string(out), perfTopLines), nil
}

// perfComponents keeps, from `perf report --children --sort symbol -g none` output, the
// first n lines whose symbol is one of picket's components (its packages, its libraries,
// encoding/json, net/http, the allocator and GC, syscalls), as "children% self% symbol".
func perfComponents(report string, n int) string {
	var b strings.Builder
	b.WriteString("  total%  self%  function (cumulative share of the process's samples)\n")
	kept := 0
	for line := range strings.SplitSeq(report, "\n") {
		f := strings.Fields(line)
		// "   68.24%     0.12%  [.] net/http.(*conn).serve   -   -"
		if len(f) < 4 || !strings.HasSuffix(f[0], "%") || !strings.HasSuffix(f[1], "%") || !strings.HasPrefix(f[2], "[") {
			continue
		}
		sym := f[3]
		if !perfInteresting(sym) {
			continue
		}
		fmt.Fprintf(&b, "  %6s %6s  %s\n", f[0], f[1], sym)
		if kept++; kept == n {
			break
		}
	}
	return b.String()
}

func perfInteresting(sym string) bool {
	for _, p := range []string{"github.com/", "encoding/json.", "net/http.(*conn).serve", "net/http.(*connReader)",
		"runtime.mallocgc", "runtime.gcBgMarkWorker", "syscall.", "internal/runtime/syscall"} {
		if strings.HasPrefix(sym, p) {
			return !strings.Contains(sym, "raftState).goFunc") && !strings.HasSuffix(sym, "-fm")
		}
	}
	return false
}
