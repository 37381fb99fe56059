package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

func runChecks(e *env, args []string) int {
	fs := newFlagSet(e, "checks", "checks [--http-addr ADDR] [-o json]")
	cf := addClientFlags(e, fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return e.errorf("checks takes no arguments, got %q", pos)
	}
	if err := cf.check(); err != nil {
		return e.errorf("%v", err)
	}
	var out []api.Check
	if err := newClient(e, cf).do(context.Background(), "GET", "/v1/checks", nil, &out); err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, out)
		return 0
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tPLACEMENT\tNODES\tSTATUS\tSINCE\tOUTPUT")
	for _, c := range out {
		status := c.Status
		if c.Flapping {
			status += " (flapping)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Type, c.Placement,
			strings.Join(c.Nodes, ","), status, ago(c.Since), oneLine(c.Output, 60))
	}
	tw.Flush()
	return 0
}

// ago renders a past time as "12s ago", or "-" for the zero time.
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Truncate(time.Second).String() + " ago"
}

func runRun(e *env, args []string) int {
	fs := newFlagSet(e, "run", "run TYPE TARGET [--node N | --all] [--check-timeout D] [-o json]\n\nTYPE is http, tcp, dns, tls or grpc; TARGET a URL (http), host:port (tcp, tls, grpc) or a name (dns).\nExit status: 0 when every result passes, 1 otherwise.")
	cf := addClientFlags(e, fs)
	node := fs.String("node", "", "run on this node")
	all := fs.Bool("all", false, "run on every alive node")
	checkTimeout := fs.Duration("check-timeout", 5*time.Second, "timeout of the check itself")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if err := cf.check(); err != nil {
		return e.errorf("%v", err)
	}
	if len(pos) != 2 {
		fs.Usage()
		return 2
	}
	typ, target := pos[0], pos[1]
	field := config.TargetField(typ)
	if field == "" {
		if typ == "exec" {
			return e.errorf("exec checks run only from local config files, never over the API")
		}
		return e.errorf("unknown check type %q: want http, tcp, dns, tls or grpc", typ)
	}
	if *node != "" && *all {
		return e.errorf("--node and --all exclude each other")
	}
	check := map[string]any{
		"name":     "run",
		"type":     typ,
		"interval": checkTimeout.String(),
		"timeout":  checkTimeout.String(),
		typ:        map[string]any{field: target},
	}
	raw, _ := json.Marshal(check)
	req := api.RunRequest{Check: raw, Node: *node, All: *all}
	var out api.RunResponse
	if err := newClient(e, cf).do(context.Background(), "POST", "/v1/run", req, &out); err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, out)
	} else {
		printResults(e.stdout, out.Results)
	}
	for _, r := range out.Results {
		if r.Status != "passing" {
			return 1
		}
	}
	return 0
}

func printResults(w io.Writer, rs []api.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tDURATION\tOUTPUT")
	for _, r := range rs {
		out := r.Output
		if r.Error != "" {
			out = "error: " + r.Error
		}
		d := time.Duration(r.DurationSeconds * float64(time.Second)).Round(10 * time.Microsecond)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Node, r.Status, d, oneLine(out, 80))
	}
	tw.Flush()
}
