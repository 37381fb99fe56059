// Command picket is a monitoring agent for every host: host metrics, health checks, a
// self-organising cluster with an elected log aggregator, exported through OpenTelemetry
// and Prometheus. See README.md.
package main

import (
	"os"

	"github.com/picket-dev/picket/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
