// Command picket-bench runs picket's benchmarks against its peers (node_exporter,
// blackbox_exporter, a bare raft cluster, the OTel SDK's log pipeline) in one run and prints
// one table: metric, picket, baseline, ratio, target, verdict. `make bench` runs it.
//
//	go run ./bench/cmd/picket-bench [-quick] [-only scrape,probes] [-out bench/results.md]
//
// PICKET_BIN names the picket binary to measure; without it one is built from the module.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/picket-dev/picket/bench"
)

func main() {
	quick := flag.Bool("quick", false, "short smoke run (about 3 minutes); figures too noisy to judge by")
	only := flag.String("only", "", "comma-separated workloads to run (default all): "+strings.Join(bench.WorkloadNames(), ","))
	out := flag.String("out", "", "Markdown results file (default: bench/results.md in the module; \"-\" for none)")
	profile := flag.String("profile", "auto", "profile what misses (go test -cpuprofile of the collectors and exporters for P1/P2, perf on the aggregator for P7): auto, always, never")
	timeout := flag.Duration("timeout", 14*time.Minute, "stop everything after this long")
	picket := flag.String("picket", os.Getenv("PICKET_BIN"), "picket binary to measure (default $PICKET_BIN, else built from the module)")
	flag.Parse()

	switch *profile {
	case "auto", "always", "never":
	default:
		fmt.Fprintf(os.Stderr, "picket-bench: -profile %q: use auto, always or never\n", *profile)
		os.Exit(2)
	}
	module, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "picket-bench:", err)
		os.Exit(2)
	}
	switch *out {
	case "":
		*out = filepath.Join(module, "bench", "results.md")
	case "-":
		*out = ""
	}
	plan := bench.DefaultPlan()
	if *quick {
		plan = bench.QuickPlan()
	}
	var workloads []string
	if *only != "" {
		workloads = strings.Split(*only, ",")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	err = bench.Run(ctx, bench.Options{
		Module: module, PicketBin: *picket, Out: *out, Only: workloads, Profile: *profile, Plan: plan, Stdout: os.Stdout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "picket-bench:", err)
		cancel()
		stop()
		os.Exit(1)
	}
}

// moduleRoot is the folder of the go.mod governing the working directory.
func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module: run from the picket source tree")
	}
	return filepath.Dir(gomod), nil
}
