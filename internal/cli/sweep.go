package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

func runSweep(e *env, args []string) int {
	fs := newFlagSet(e, "sweep", "sweep TYPE -f TARGETS_FILE [--check-timeout D] [-o json]\n\nRuns a check of TYPE (http, tcp, dns, tls, grpc) against every target of the file (one per line,\n# comments allowed), spread over the cluster's nodes by load. Prints a summary; -o json adds\nevery result. Exit status: 0 when every target passes, 1 otherwise.")
	cf := addClientFlags(e, fs)
	file := fs.String("f", "", "file of targets, one per line (- for standard input)")
	checkTimeout := fs.Duration("check-timeout", 5*time.Second, "timeout of each check")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if err := cf.check(); err != nil {
		return e.errorf("%v", err)
	}
	timeoutSet := false
	fs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
	if !timeoutSet {
		cf.timeout = 30 * time.Minute // a sweep of thousands of targets takes a while
	}
	if len(pos) != 1 || *file == "" {
		fs.Usage()
		return 2
	}
	typ := pos[0]
	if config.TargetField(typ) == "" {
		return e.errorf("unknown check type %q: want http, tcp, dns, tls or grpc", typ)
	}
	targets, err := readTargets(*file)
	if err != nil {
		return e.errorf("%v", err)
	}
	if len(targets) == 0 {
		return e.errorf("%s has no targets", *file)
	}
	check, _ := json.Marshal(map[string]any{
		"name": "sweep", "type": typ, "interval": checkTimeout.String(), "timeout": checkTimeout.String(),
	})
	c := newClient(e, cf)
	resp, err := c.sweep(context.Background(), api.SweepRequest{Check: check, Targets: targets}, progressPrinter(e.stderr))
	if err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, resp)
	} else {
		printSweep(e.stdout, resp.Summary)
	}
	if resp.Summary.ByStatus["passing"] != resp.Summary.Targets {
		return 1
	}
	return 0
}

func readTargets(path string) ([]string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

// progressPrinter draws "swept 120/1000" on a terminal's line; nil when w is not a terminal.
func progressPrinter(w io.Writer) func(api.SweepProgress) {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return func(p api.SweepProgress) {
		fmt.Fprintf(w, "\rswept %d/%d targets", p.Done, p.Total)
		if p.Done == p.Total {
			fmt.Fprintln(w)
		}
	}
}

// sweep posts the sweep and follows its Server-Sent Events to the result.
func (c *client) sweep(ctx context.Context, req api.SweepRequest, progress func(api.SweepProgress)) (api.SweepResponse, error) {
	var out api.SweepResponse
	err := c.events(ctx, "POST", "/v1/sweep", req, 256<<20, func(event string, data []byte) (bool, error) {
		switch event {
		case "progress":
			var p api.SweepProgress
			if json.Unmarshal(data, &p) == nil && progress != nil {
				progress(p)
			}
		case "result":
			return true, json.Unmarshal(data, &out)
		case "error":
			var e api.Error
			json.Unmarshal(data, &e)
			return true, fmt.Errorf("sweep failed: %s", e.Error)
		}
		return false, nil
	})
	if errors.Is(err, io.EOF) {
		return out, fmt.Errorf("sweep stream ended without a result")
	}
	return out, err
}

func printSweep(w io.Writer, s api.SweepSummary) {
	fmt.Fprintf(w, "%d targets in %s\n\n", s.Targets, time.Duration(s.DurationSeconds*float64(time.Second)).Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCOUNT")
	for _, st := range []string{"passing", "warning", "critical"} {
		fmt.Fprintf(tw, "%s\t%d\n", st, s.ByStatus[st])
	}
	tw.Flush()
	fmt.Fprintln(w)
	nodes := make([]string, 0, len(s.ByNode))
	for n := range s.ByNode {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tTARGETS")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%d\n", n, s.ByNode[n])
	}
	tw.Flush()
	sec := func(f float64) time.Duration {
		return time.Duration(f * float64(time.Second)).Round(10 * time.Microsecond)
	}
	fmt.Fprintf(w, "\nlatency p50 %s  p90 %s  p99 %s\n", sec(s.P50Seconds), sec(s.P90Seconds), sec(s.P99Seconds))
	if len(s.Slowest) > 0 {
		fmt.Fprintln(w, "\nslowest:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, r := range s.Slowest {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Target, r.Node, sec(r.DurationSeconds), r.Status)
		}
		tw.Flush()
	}
	if len(s.Failing) > 0 {
		fmt.Fprintln(w, "\nfailing:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, r := range s.Failing {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Target, r.Node, r.Status, oneLine(r.Output, 70))
		}
		tw.Flush()
	}
}
