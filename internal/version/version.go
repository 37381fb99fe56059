// Package version carries picket's build identity, set at link time:
//
//	go build -ldflags "-X github.com/picket-dev/picket/internal/version.Version=1.2.3 -X ...Revision=abc123"
package version

import "runtime"

// Set by the linker; the defaults describe a development build.
var (
	Version  = "0.1.0-dev"
	Revision = "unknown"
)

// GoVersion is the Go toolchain that built the binary.
func GoVersion() string { return runtime.Version() }
