// Package checks runs picket's health checks: one prober per check type (one file each,
// wired in the explicit map returned by Probers) and a scheduler that runs them on their
// intervals and turns results into states with thresholds and flap detection.
package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

// Status is the state of a check or the verdict of one result.
type Status int

// Statuses, ordered from best to worst so that a larger value is worse.
const (
	Unknown Status = iota
	Passing
	Warning
	Critical
)

var statusNames = [...]string{"unknown", "passing", "warning", "critical"}

func (s Status) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return fmt.Sprintf("status(%d)", int(s))
	}
	return statusNames[s]
}

// ParseStatus parses "unknown", "passing", "warning" or "critical".
func ParseStatus(s string) (Status, error) {
	for i, n := range statusNames {
		if n == s {
			return Status(i), nil
		}
	}
	return Unknown, fmt.Errorf("%q is not a check status (want unknown, passing, warning or critical)", s)
}

// MarshalText writes the status name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a status name.
func (s *Status) UnmarshalText(b []byte) error {
	v, err := ParseStatus(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Failure reasons carried by non-passing results. They are label values of
// picket_check_runs_total{reason}, so the set is small and fixed.
const (
	ReasonNone        = ""            // passing
	ReasonTimeout     = "timeout"     // the check's timeout elapsed
	ReasonDNS         = "dns"         // name resolution of the target failed
	ReasonConnect     = "connect"     // connection refused, reset or unreachable
	ReasonTLS         = "tls"         // handshake or verification failed
	ReasonCertExpiry  = "cert_expiry" // certificate expires within the warning/critical days
	ReasonStatus      = "status"      // unexpected HTTP status, DNS rcode, gRPC serving status or exit code
	ReasonBody        = "body"        // body, reply or answers did not match
	ReasonProtocol    = "protocol"    // malformed reply or other protocol error
	ReasonConfig      = "config"      // the definition cannot run (bad URL, missing file, ...)
	ReasonCanceled    = "canceled"    // the agent stopped the run
	ReasonUnreachable = "unreachable" // the node asked to run it could not be reached
)

// Phase is one timed part of a probe: dns, connect, tls, processing or transfer.
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"-"`
}

// MarshalJSON writes the phase with its duration in seconds.
func (p Phase) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name    string  `json:"name"`
		Seconds float64 `json:"duration_seconds"`
	}{p.Name, p.Duration.Seconds()})
}

// Result is the outcome of one run of one check.
type Result struct {
	Status   Status        // Passing, Warning or Critical (never Unknown)
	Reason   string        // one of the Reason constants; empty when passing
	Output   string        // human-readable: "200 OK", "connection refused", ...
	Duration time.Duration // whole run
	Phases   []Phase       // in the order they happened; may be empty
	// CertExpiry is the earliest NotAfter of the peer's certificate chain, for http and tls
	// checks over TLS; zero otherwise.
	CertExpiry time.Time
	Time       time.Time // when the run started
}

// Prober runs one check once. It must return by the time ctx is done (the scheduler sets the
// check's timeout on ctx), never panic on bad input, and always fill Status, Reason when not
// passing, and Output. Probers are called concurrently, for different checks and, through
// /v1/run, for the same check.
type Prober func(ctx context.Context, c *config.Check) Result

// ReasonPanic marks a result whose prober panicked: a bug in picket, reported as critical.
const ReasonPanic = "panic"
