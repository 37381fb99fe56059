package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/picket-dev/picket/internal/api"
)

// logRecord is a record of GET /v1/logs as the CLI prints it.
type logRecord struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"`
	Message string            `json:"message"`
	Node    string            `json:"node"`
	Seq     uint64            `json:"seq"`
	Attrs   map[string]string `json:"attrs"`
}

func (r logRecord) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-5s  %-12s  %s", r.Time.Local().Format("2006-01-02 15:04:05.000"), r.Level, r.Node, r.Message)
	keys := make([]string, 0, len(r.Attrs))
	for k := range r.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, strconv.Quote(r.Attrs[k]))
	}
	return b.String()
}

func runLeader(e *env, args []string) int {
	_, cf, c, code, ok := clientCommand(e, "leader", "leader [-o json]", args, none)
	if !ok {
		return code
	}
	var l api.Leader
	if err := c.do(context.Background(), "GET", "/v1/leader", nil, &l); err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, l)
		return 0
	}
	fmt.Fprintf(e.stdout, "aggregator %s at %s, term %d\n", l.Name, l.Address, l.Term)
	return 0
}

func runLogs(e *env, args []string) int {
	fs := newFlagSet(e, "logs", "logs [-f] [--level L] [--node N] [--since D] [--contains TEXT] [--limit N] [-o json]\n\nThe cluster log, oldest of the selection first. --level is a minimum (warn shows warn and error);\n--since takes a duration before now (15m) or an RFC 3339 time. -f keeps following new records.")
	cf := addClientFlags(e, fs)
	follow := fs.Bool("f", false, "follow: print new records as they are committed")
	level := fs.String("level", "", "minimum level: debug, info, warn or error")
	node := fs.String("node", "", "only records of this node")
	since := fs.String("since", "", "only records since this duration before now (15m) or time")
	contains := fs.String("contains", "", "only records whose message contains this text (any case)")
	limit := fs.Int("limit", 100, "most records to show (the newest)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if err := cf.check(); err != nil {
		return e.errorf("%v", err)
	}
	if len(pos) > 0 {
		fs.Usage()
		return 2
	}
	q := url.Values{}
	for k, v := range map[string]string{"level": *level, "node": *node, "since": *since, "contains": *contains, "limit": strconv.Itoa(*limit)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	c := newClient(e, cf)
	if *follow {
		q.Set("follow", "true")
		c.http.Timeout = 0
		if err := c.follow(context.Background(), "/v1/logs?"+q.Encode(), func(data []byte) {
			var r logRecord
			if json.Unmarshal(data, &r) != nil {
				return
			}
			if cf.output == "json" {
				fmt.Fprintln(e.stdout, string(data))
			} else {
				fmt.Fprintln(e.stdout, r.line())
			}
		}); err != nil {
			return e.errorf("%v", err)
		}
		return 0
	}
	var recs []logRecord
	if err := c.do(context.Background(), "GET", "/v1/logs?"+q.Encode(), nil, &recs); err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, recs)
		return 0
	}
	for i := len(recs) - 1; i >= 0; i-- {
		fmt.Fprintln(e.stdout, recs[i].line())
	}
	return 0
}

// follow reads a Server-Sent Events stream and calls onData with each "log" event's data.
func (c *client) follow(ctx context.Context, path string, onData func([]byte)) error {
	err := c.events(ctx, "GET", path, nil, 16<<20, func(event string, data []byte) (bool, error) {
		if event == "error" {
			var e api.Error
			json.Unmarshal(data, &e)
			return true, fmt.Errorf("log stream: %s", e.Error)
		}
		onData(data)
		return false, nil
	})
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("log stream ended (the agent stopped?)")
	}
	return err
}

func runLog(e *env, args []string) int {
	usage := "log LEVEL MESSAGE [key=value...]\n\nSends one record to the cluster log and returns once it is committed."
	pos, cf, c, code, ok := clientCommand(e, "log", usage, args, func(n int) bool { return n >= 2 })
	if !ok {
		return code
	}
	rec := api.LogRecord{Level: pos[0], Message: pos[1], Attrs: map[string]string{}}
	for _, kv := range pos[2:] {
		k, v, found := strings.Cut(kv, "=")
		if !found || k == "" {
			return e.errorf("attribute %q: want key=value", kv)
		}
		rec.Attrs[k] = v
	}
	var out api.LogsAccepted
	if err := c.do(context.Background(), "POST", "/v1/logs", []api.LogRecord{rec}, &out); err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, out)
	} else {
		fmt.Fprintf(e.stdout, "committed %d record\n", out.Accepted)
	}
	return 0
}

func runRegistry(e *env, args []string) int {
	usage := "registry list | register NAME [VALUE] | whereis NAME | unregister NAME\n\nGlobal names: the first to register a name owns it (this agent's node); a dead owner's names are released."
	pos, cf, c, code, ok := clientCommand(e, "registry", usage, args, func(n int) bool { return n >= 1 && n <= 3 })
	if !ok {
		return code
	}
	ctx := context.Background()
	var out any
	var err error
	switch {
	case pos[0] == "list" && len(pos) == 1:
		var regs []api.Registration
		err = c.do(ctx, "GET", "/v1/registry", nil, &regs)
		out = regs
		if err == nil && cf.output != "json" {
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tOWNER\tVALUE\tSINCE")
			for _, r := range regs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Owner, r.Value, ago(r.Since))
			}
			tw.Flush()
			return 0
		}
	case pos[0] == "register" && len(pos) >= 2:
		var reg api.Registration
		body := api.RegisterRequest{}
		if len(pos) == 3 {
			body.Value = pos[2]
		}
		err = c.do(ctx, "PUT", "/v1/registry/"+url.PathEscape(pos[1]), body, &reg)
		out = reg
		if err == nil && cf.output != "json" {
			fmt.Fprintf(e.stdout, "%s registered to %s\n", reg.Name, reg.Owner)
			return 0
		}
	case pos[0] == "whereis" && len(pos) == 2:
		var reg api.Registration
		err = c.do(ctx, "GET", "/v1/registry/"+url.PathEscape(pos[1]), nil, &reg)
		out = reg
		if err == nil && cf.output != "json" {
			fmt.Fprintf(e.stdout, "%s is at %s", reg.Name, reg.Owner)
			if reg.Value != "" {
				fmt.Fprintf(e.stdout, " (%s)", reg.Value)
			}
			fmt.Fprintln(e.stdout)
			return 0
		}
	case pos[0] == "unregister" && len(pos) == 2:
		err = c.do(ctx, "DELETE", "/v1/registry/"+url.PathEscape(pos[1]), nil, nil)
		out = map[string]bool{"unregistered": err == nil}
		if err == nil && cf.output != "json" {
			fmt.Fprintf(e.stdout, "%s unregistered\n", pos[1])
			return 0
		}
	default:
		return e.errorf("usage: picket %s", usage)
	}
	if err != nil {
		return e.errorf("%v", err)
	}
	printJSON(e.stdout, out)
	return 0
}
