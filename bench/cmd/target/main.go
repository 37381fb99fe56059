// Command target is the local service of picket's benchmarks: an HTTP server and a TCP
// listener on 127.0.0.1 that every check and probe of a bench run goes to. It writes its
// addresses as JSON to the -addrs file once it listens, and serves until SIGTERM or SIGINT.
// See package bench (Target) for its endpoints.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/picket-dev/picket/bench"
)

func main() {
	addrs := flag.String("addrs", "target-addrs.json", "file to write the listening addresses to (JSON)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := bench.RunTarget(ctx, *addrs); err != nil {
		fmt.Fprintln(os.Stderr, "target:", err)
		os.Exit(1)
	}
}
