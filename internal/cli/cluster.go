package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/picket-dev/picket/internal/api"
)

// clientCommand parses the shared client flags plus any the command adds, checks the count
// of positional arguments, and returns them with a client. ok is false when the command
// must exit with code.
func clientCommand(e *env, name, usage string, args []string, nargs func(int) bool) (pos []string, cf *clientFlags, c *client, code int, ok bool) {
	fs := newFlagSet(e, name, usage)
	cf = addClientFlags(e, fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return nil, nil, nil, flagExit(err), false
	}
	if err := cf.check(); err != nil {
		return nil, nil, nil, e.errorf("%v", err), false
	}
	if !nargs(len(pos)) {
		fs.Usage()
		return nil, nil, nil, 2, false
	}
	return pos, cf, newClient(e, cf), 0, true
}

func none(n int) bool { return n == 0 }

func runMembers(e *env, args []string) int {
	_, cf, c, code, ok := clientCommand(e, "members", "members [-o json]", args, none)
	if !ok {
		return code
	}
	var ms []api.Member
	if err := c.do(context.Background(), "GET", "/v1/members", nil, &ms); err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, ms)
		return 0
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tSTATUS\tLOAD\tROLES\tVERSION")
	for _, m := range ms {
		roles := strings.Join(m.Roles, ",")
		if roles == "" {
			roles = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t%s\n", m.Name, m.Address, m.Status, m.Load, roles, m.Version)
	}
	tw.Flush()
	return 0
}

func runJoin(e *env, args []string) int {
	pos, cf, c, code, ok := clientCommand(e, "join", "join ADDR... (gossip addresses, host:port)", args,
		func(n int) bool { return n > 0 })
	if !ok {
		return code
	}
	var out api.JoinResponse
	if err := c.do(context.Background(), "POST", "/v1/members/join", api.JoinRequest{Addresses: pos}, &out); err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, out)
	} else {
		fmt.Fprintf(e.stdout, "joined: %d of %d addresses answered\n", out.Joined, len(pos))
	}
	return 0
}

func runLeave(e *env, args []string) int {
	_, _, c, code, ok := clientCommand(e, "leave", "leave (the agent leaves the cluster gracefully and stops)", args, none)
	if !ok {
		return code
	}
	if err := c.do(context.Background(), "POST", "/v1/members/leave", struct{}{}, nil); err != nil {
		return e.errorf("%v", err)
	}
	fmt.Fprintln(e.stdout, "left the cluster; the agent is stopping")
	return 0
}

func runPing(e *env, args []string) int {
	pos, cf, c, code, ok := clientCommand(e, "ping", "ping NODE", args, func(n int) bool { return n == 1 })
	if !ok {
		return code
	}
	var out api.Ping
	if err := c.do(context.Background(), "GET", "/v1/members/"+url.PathEscape(pos[0])+"/ping", nil, &out); err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, out)
	} else {
		rtt := time.Duration(out.RTTSeconds * float64(time.Second))
		fmt.Fprintf(e.stdout, "%s: rtt %s\n", out.Name, rtt.Round(time.Microsecond))
	}
	return 0
}

func runKeygen(e *env, args []string) int {
	fs := newFlagSet(e, "keygen", "keygen (prints a new 32-byte gossip key for cluster.key)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		fs.Usage()
		return 2
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return e.errorf("read random bytes: %v", err)
	}
	fmt.Fprintln(e.stdout, base64.StdEncoding.EncodeToString(k))
	return 0
}

func runKeyring(e *env, args []string) int {
	usage := "keyring list | install KEY | use KEY | remove KEY\n\nRotation: install the new key everywhere, use it, then remove the old one. Each call changes every alive member."
	pos, cf, c, code, ok := clientCommand(e, "keyring", usage, args, func(n int) bool { return n == 1 || n == 2 })
	if !ok {
		return code
	}
	op := pos[0]
	var method string
	var body any
	switch {
	case op == "list" && len(pos) == 1:
		method = "GET"
	case (op == "install" || op == "use") && len(pos) == 2:
		method, body = "POST", api.KeyringRequest{Op: op, Key: pos[1]}
	case op == "remove" && len(pos) == 2:
		method, body = "DELETE", api.KeyringRequest{Key: pos[1]}
	default:
		return e.errorf("usage: picket %s", usage)
	}
	var out api.Keyring
	err := c.do(context.Background(), method, "/v1/keyring", body, &out)
	if err != nil {
		return e.errorf("%v", err)
	}
	if cf.output == "json" {
		printJSON(e.stdout, out)
		return 0
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tINSTALLED\tPRIMARY")
	for _, k := range out.Keys {
		fmt.Fprintf(tw, "%s\t%d/%d\t%d/%d\n", k.Key, k.Nodes, out.Nodes, k.PrimaryOn, out.Nodes)
	}
	tw.Flush()
	return 0
}
