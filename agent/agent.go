// Package agent is picket's runtime: it holds the parts built by the caller (telemetry,
// collectors, the check scheduler, gossip membership, the RPC port), starts them in order,
// serves the HTTP API and agent RPC, reloads configuration on request and stops everything
// in reverse order, each step with a deadline.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/picket-dev/picket/checks"
	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/config"
)

// Runner is a part with a lifetime: Run blocks until ctx ends, then cleans up and returns.
type Runner interface {
	Run(ctx context.Context) error
}

// Scheduler is what the agent needs of the check scheduler. Its methods are safe for
// concurrent use.
type Scheduler interface {
	Runner
	Set(defs []config.Check)
	// SetWith is Set with options: cluster checks just assigned here start at once.
	SetWith(defs []config.Check, o checks.SetOptions)
	Snapshot() []checks.CheckStatus
	// Changed returns a channel closed at the next result or Set.
	Changed() <-chan struct{}
	RunOnce(ctx context.Context, c config.Check) checks.Result
}

// LoadSource reports the node's current load (1-minute load average ÷ CPUs). It must not block.
type LoadSource interface {
	Load() float64
}

// Parts are the agent's dependencies, constructed by the caller. Agent owns their lifetime
// once Run is called: it runs the Runners and stops them when Run's context ends.
type Parts struct {
	Config     *config.Config
	Logger     *slog.Logger
	Version    string
	Scheduler  Scheduler
	Load       LoadSource
	Collectors Runner // may be nil
	// Membership is the gossip membership, created (bound) but not yet running.
	Membership *cluster.Membership
	// RPC is the listening RPC port; the agent serves agent RPC on it and closes it last.
	RPC *cluster.Mux
	// Raft is this agent's Raft member; nil when cluster.server is false.
	Raft *cluster.Raft
	// Leader reaches the aggregator (NewLeader).
	Leader *Leader
	// Shipper delivers the agent's own records and /v1/logs posts to the aggregator; the
	// agent runs it and closes it after Run.
	Shipper *cluster.Shipper
	// LogExport, when set, exports the cluster log over OTLP while this agent is the
	// aggregator.
	LogExport      *LogExport
	MetricsHandler http.Handler // may be nil: /metrics answers 404
	// Meter creates the agent's own instruments (picket_placement_*); nil disables them.
	Meter metric.Meter
	// Listener is the HTTP API's listener, already bound.
	Listener net.Listener
	// TLS, when set, serves the HTTP API over TLS.
	TLS *tls.Config
	// Shutdown flushes telemetry; called last, after every other part stopped.
	Shutdown func(ctx context.Context) error
}

// StopTimeout bounds a graceful stop of each part.
const StopTimeout = 10 * time.Second

// Agent is one running picket agent.
type Agent struct {
	parts     Parts
	log       *slog.Logger
	events    *eventLog
	rpcClient *http.Client
	// memberEvents is subscribed in New, so no membership event is missed before Run.
	memberEvents      <-chan cluster.Event
	unsubscribeEvents func()
	// Cluster checks: this agent's share (runner), the aggregator's state (pl), and the
	// decoded definitions both use.
	runner *runner
	pl     *placement
	defs   *defCache
	pulse  *pulse // the once-a-second beat polling loops share

	mu      sync.RWMutex
	cfg     *config.Config // current effective config; replaced by Reload
	started time.Time
	stopFn  context.CancelCauseFunc // ends Run; set by Run
}

// New checks the parts and prepares the agent; nothing starts before Run.
func New(p Parts) (*Agent, error) {
	var missing []string
	for name, ok := range map[string]bool{
		"Config": p.Config != nil, "Logger": p.Logger != nil, "Scheduler": p.Scheduler != nil,
		"Load": p.Load != nil, "Membership": p.Membership != nil, "RPC": p.RPC != nil,
		"Listener": p.Listener != nil, "Leader": p.Leader != nil, "Shipper": p.Shipper != nil,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("agent: missing parts %v", missing)
	}
	log := p.Logger.With("component", "agent")
	pl, err := newPlacement(p.Logger, p.Meter)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	evs, unsubscribe := p.Membership.Subscribe(256)
	return &Agent{
		parts:             p,
		cfg:               p.Config,
		log:               log,
		events:            newEventLog(),
		rpcClient:         p.RPC.HTTPClient(),
		memberEvents:      evs,
		unsubscribeEvents: unsubscribe,
		runner:            newRunner(),
		pulse:             newPulse(),
		pl:                pl,
		defs:              newDefCache(log.Warn),
	}, nil
}

// Config returns the current effective configuration. Callers must not modify it.
func (a *Agent) Config() *config.Config {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cfg
}

// Addr returns the address the HTTP API listens on.
func (a *Agent) Addr() net.Addr { return a.parts.Listener.Addr() }

// stop ends Run, as if its context had ended, with cause.
func (a *Agent) stop(cause error) {
	a.mu.RLock()
	f := a.stopFn
	a.mu.RUnlock()
	if f != nil {
		f(cause)
	}
}

// part is one concurrently running piece of the agent, stopped in reverse start order.
type part struct {
	name string
	run  func(ctx context.Context) error
}

type runningPart struct {
	part
	cancel context.CancelFunc
	done   chan struct{}
}

// Run starts the parts, agent RPC and the HTTP API, and blocks until ctx ends, a part fails,
// or the agent leaves the cluster. It then stops the HTTP API, then each part in reverse
// order of start (each within StopTimeout), closes the RPC port and flushes telemetry. The
// returned error is the first failure, or nil after a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	a.mu.Lock()
	a.started = time.Now()
	a.stopFn = stop
	a.mu.Unlock()

	a.applyChecks()

	rpcSrv := &http.Server{
		Handler:           a.rpcHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	apiSrv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	parts := []part{{"rpc", serve(rpcSrv, a.parts.RPC.AgentListener(), nil)}}
	if a.parts.Raft != nil {
		parts = append(parts, part{"raft", a.parts.Raft.Run})
	}
	parts = append(parts,
		part{"membership", a.parts.Membership.Run},
		part{"events", a.watchMembership},
		part{"meta", a.refreshMeta},
		part{"shipper", a.parts.Shipper.Run},
	)
	if a.parts.Raft != nil {
		parts = append(parts, part{"leadership", a.watchLeadership}, part{"placement", a.runPlacement})
		if a.parts.LogExport != nil {
			parts = append(parts, part{"log export", a.exportLogs})
		}
	}
	parts = append(parts,
		part{"assignments", a.followAssignments},
		part{"results", a.reportResults},
		part{"config checks", a.sendConfigChecks},
	)
	if a.parts.Collectors != nil {
		parts = append(parts, part{"collectors", a.parts.Collectors.Run})
	}
	parts = append(parts,
		part{"checks", a.parts.Scheduler.Run},
		part{"http", serve(apiSrv, a.parts.Listener, a.parts.TLS)},
	)

	errc := make(chan error, len(parts))
	running := make([]runningPart, 0, len(parts))
	for _, p := range parts {
		pctx, cancel := context.WithCancel(context.Background())
		rp := runningPart{part: p, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(rp.done)
			if err := p.run(pctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", p.name, err)
			}
		}()
		running = append(running, rp)
	}
	cfg := a.Config()
	a.log.Info("agent started", "node", cfg.NodeName, "http", a.Addr().String(),
		"gossip", a.parts.Membership.LocalNode().Address, "rpc", a.parts.RPC.Addr().String(),
		"checks", len(cfg.Checks), "version", a.parts.Version)

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("stopping", "cause", context.Cause(ctx))
	case runErr = <-errc:
		a.log.Error("a part failed; stopping", "err", runErr)
	}

	for i := len(running) - 1; i >= 0; i-- {
		rp := running[i]
		rp.cancel()
		select {
		case <-rp.done:
		case <-time.After(StopTimeout):
			a.log.Error("part did not stop within the deadline", "part", rp.name, "timeout", StopTimeout)
			runErr = errors.Join(runErr, fmt.Errorf("%s did not stop within %s", rp.name, StopTimeout))
		}
	}
	a.parts.RPC.Close()
	if err := a.parts.Shipper.Close(); err != nil {
		a.log.Warn("close the log spool", "err", err)
	}
	if a.parts.Shutdown != nil {
		flushCtx, cancel := context.WithTimeout(context.Background(), StopTimeout)
		defer cancel()
		if err := a.parts.Shutdown(flushCtx); err != nil {
			a.log.Warn("telemetry flush failed", "err", err)
		}
	}
	a.log.Info("agent stopped")
	return runErr
}

// serve runs srv on ln until ctx ends, then shuts it down gracefully within StopTimeout.
func serve(srv *http.Server, ln net.Listener, tc *tls.Config) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() {
			var err error
			if tc != nil {
				srv.TLSConfig = tc
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		return <-errc
	}
}

// OnTransition records a check state change as an event. Give it to the scheduler as
// checks.Options.OnTransition; it never blocks.
func (a *Agent) OnTransition(t checks.Transition) {
	detail := t.Result.Output
	if t.Flapping {
		detail = "flapping: " + detail
	}
	e := Event{Time: t.Time, Type: "check", Node: t.Node, Check: t.Check,
		From: t.From.String(), To: t.To.String(), Detail: detail}
	a.events.add(e)
	a.shipEvent(e)
}

// Reload applies a new configuration. Settings that need a restart are refused as a whole
// with an error naming them; otherwise the new config becomes current, the check set is
// replaced (unchanged checks keep their state and history) and the config's cluster checks
// are sent to the aggregator.
func (a *Agent) Reload(next *config.Config) error {
	a.mu.Lock()
	if keys := config.RestartRequired(a.cfg, next); len(keys) > 0 {
		a.mu.Unlock()
		return fmt.Errorf("%w: %v changed; restart picket to apply them (the running config is kept)", ErrRestartRequired, keys)
	}
	a.cfg = next
	a.mu.Unlock()
	a.applyChecks()
	a.kickConfigChecks()
	a.log.Info("configuration reloaded", "checks", len(next.Checks), "config_hash", next.Hash())
	return nil
}

// ErrRestartRequired is returned by Reload when the new config changes settings that only
// take effect at start.
var ErrRestartRequired = errors.New("reload refused")
