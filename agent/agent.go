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
	Snapshot() []checks.CheckStatus
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
	RPC            *cluster.Mux
	MetricsHandler http.Handler // may be nil: /metrics answers 404
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
		"Listener": p.Listener != nil,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("agent: missing parts %v", missing)
	}
	evs, unsubscribe := p.Membership.Subscribe(256)
	return &Agent{
		parts:             p,
		cfg:               p.Config,
		log:               p.Logger.With("component", "agent"),
		events:            newEventLog(),
		rpcClient:         p.RPC.HTTPClient(),
		memberEvents:      evs,
		unsubscribeEvents: unsubscribe,
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

	a.parts.Scheduler.Set(a.Config().Checks)

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
	parts := []part{
		{"rpc", serve(rpcSrv, a.parts.RPC.AgentListener(), nil)},
		{"membership", a.parts.Membership.Run},
		{"events", a.watchMembership},
		{"meta", a.refreshMeta},
	}
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
	a.events.add(Event{Time: t.Time, Type: "check", Node: t.Node, Check: t.Check,
		From: t.From.String(), To: t.To.String(), Detail: detail})
}

// Reload applies a new configuration. Settings that need a restart are refused as a whole
// with an error naming them; otherwise the check set is replaced (unchanged checks keep their
// state and history) and the new config becomes current.
func (a *Agent) Reload(next *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if keys := config.RestartRequired(a.cfg, next); len(keys) > 0 {
		return fmt.Errorf("%w: %v changed; restart picket to apply them (the running config is kept)", ErrRestartRequired, keys)
	}
	a.parts.Scheduler.Set(next.Checks)
	a.cfg = next
	a.log.Info("configuration reloaded", "checks", len(next.Checks), "config_hash", next.Hash())
	return nil
}

// ErrRestartRequired is returned by Reload when the new config changes settings that only
// take effect at start.
var ErrRestartRequired = errors.New("reload refused")
