// Package cli implements picket's command line: `picket agent` wires and runs an agent, the
// other commands are clients of a running agent's HTTP API.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand. run returns the process exit code.
type command struct {
	summary string
	run     func(env *env, args []string) int
}

// env is what a command may use instead of process globals, so tests can run commands
// in-process.
type env struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
}

func (e *env) getenv(k string) string {
	v, _ := e.lookupEnv(k)
	return v
}

// errorf prints "picket: ..." to stderr and returns exit code 1.
func (e *env) errorf(format string, a ...any) int {
	fmt.Fprintf(e.stderr, "picket: "+format+"\n", a...)
	return 1
}

// commands is the one explicit table of subcommands.
func commands() map[string]command {
	return map[string]command{
		"agent":    {"run the agent (the embedded single-node default without -c)", runAgent},
		"validate": {"check configuration files without starting", runValidate},
		"version":  {"print the version", runVersion},
		"checks":   {"list checks with their nodes and status", runChecks},
		"run":      {"run a check once: picket run TYPE TARGET [--node N | --all]", runRun},
		"sweep":    {"run a check against many targets spread over the cluster: picket sweep TYPE -f FILE", runSweep},
		"members":  {"list cluster members", runMembers},
		"leader":   {"show the aggregator (Raft leader) and its term", runLeader},
		"logs":     {"query or follow (-f) the cluster log", runLogs},
		"log":      {"send one record to the cluster log: picket log LEVEL MESSAGE [k=v...]", runLog},
		"registry": {"global names: list, register, whereis, unregister", runRegistry},
		"join":     {"join the cluster through gossip addresses", runJoin},
		"leave":    {"leave the cluster gracefully and stop the agent", runLeave},
		"ping":     {"round-trip time to a member", runPing},
		"keygen":   {"print a new gossip key", runKeygen},
		"keyring":  {"list, install, use or remove gossip keys on every member", runKeyring},
	}
}

// Main runs picket with the arguments after the program name and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv}
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "picket: unknown command %q\n\n", args[0])
		usage(e.stderr, cmds)
		return 2
	}
	return c.run(e, args[1:])
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "picket: a monitoring agent for every host\n\nUsage: picket COMMAND [flags] [args]\n\nCommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nClient commands talk to the local agent: --http-addr or PICKET_HTTP_ADDR (default 127.0.0.1:7948),\ntoken from PICKET_TOKEN; -o json prints JSON. Run 'picket COMMAND -h' for a command's flags.")
}

// parseFlags parses flags that may stand before, between or after positional arguments
// (`picket run http URL --node n2`) and returns the positional ones. "--" ends flags.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// newFlagSet returns a flag set that reports errors to env's stderr instead of exiting.
func newFlagSet(e *env, name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: picket %s\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// flagExit maps a flag parse error to an exit code: 0 for -h, 2 otherwise.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

func runVersion(e *env, args []string) int {
	fs := newFlagSet(e, "version", "version")
	if _, err := parseFlags(fs, args); err != nil {
		return flagExit(err)
	}
	fmt.Fprintln(e.stdout, versionString())
	return 0
}

// oneLine folds output to a single line for tables.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max-1] + "…"
	}
	return s
}
