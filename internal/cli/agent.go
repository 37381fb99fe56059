package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/hashicorp/go-sockaddr"

	"github.com/picket-dev/picket/agent"
	"github.com/picket-dev/picket/checks"
	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/collectors"
	"github.com/picket-dev/picket/exporters"
	"github.com/picket-dev/picket/internal/config"
	"github.com/picket-dev/picket/internal/version"
)

func versionString() string {
	return fmt.Sprintf("picket %s (revision %s, %s)", version.Version, version.Revision, version.GoVersion())
}

// loadConfig loads the file, or the embedded default when path is empty.
func loadConfig(e *env, path string) (*config.Config, error) {
	if path == "" {
		return config.Embedded(e.lookupEnv)
	}
	return config.Load(path)
}

// newLogger builds the one logger passed down to every part. level lets SIGHUP change the
// level without rebuilding loggers.
func newLogger(w io.Writer, c config.Log, level *slog.LevelVar) *slog.Logger {
	level.Set(parseLevel(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

func runAgent(e *env, args []string) int {
	fs := newFlagSet(e, "agent", "agent [-c FILE]")
	path := fs.String("c", "", "configuration file (default: the embedded single-node config)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return e.errorf("agent takes no arguments, got %q (did you mean -c %s?)", pos, pos[0])
	}
	cfg, err := loadConfig(e, *path)
	if err != nil {
		return e.errorf("%v", err)
	}
	level := new(slog.LevelVar)
	ship := agent.NewShipHandler(newLogger(e.stderr, cfg.Log, level).Handler(), slog.LevelWarn, cfg.NodeName)
	logger := slog.New(ship)
	if *path == "" {
		logger.Info("no -c given: running the embedded single-node default")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := wire(ctx, cfg, logger, ship)
	if err != nil {
		return e.errorf("%v", err)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload(e, *path, a, level, logger)
			}
		}
	}()

	err = a.Run(ctx)
	stop()
	<-reloadDone
	if err != nil {
		return e.errorf("%v", err)
	}
	return 0
}

// reload re-reads the configuration on SIGHUP; a bad or restart-requiring config is refused
// and the running one kept.
func reload(e *env, path string, a *agent.Agent, level *slog.LevelVar, logger *slog.Logger) {
	next, err := loadConfig(e, path)
	if err != nil {
		logger.Error("reload refused: the new configuration is invalid; the running one is kept", "err", err)
		return
	}
	if err := a.Reload(next); err != nil {
		logger.Error("reload refused", "err", err)
		return
	}
	level.Set(parseLevel(next.Log.Level))
}

// wire builds the agent's parts from the configuration, binding every port up front so a
// busy port fails the start with a clear error. The agent owns the parts from then on.
func wire(ctx context.Context, cfg *config.Config, logger *slog.Logger, ship *agent.ShipHandler) (a *agent.Agent, err error) {
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	if cfg.DataDir == "" {
		cfg.DataDir = config.DefaultDataDir()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w (set data_dir to a writable folder)", cfg.DataDir, err)
	}
	res, err := exporters.NewResource(cfg.NodeName, version.Version)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	tel, err := exporters.New(ctx, exporters.Options{
		Config: cfg.Exporters, Resource: res, Logger: logger, Version: version.Version,
	})
	if err != nil {
		return nil, fmt.Errorf("exporters: %w", err)
	}
	cleanup = append(cleanup, func() { tel.Shutdown(context.Background()) })
	mp := tel.MeterProvider()
	cols, err := collectors.New(cfg.Collectors, mp.Meter("picket/collectors"), logger)
	if err != nil {
		return nil, fmt.Errorf("collectors: %w", err)
	}

	httpTLS, err := agent.ServerTLS(cfg.HTTP.TLS)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w (is another picket or program using the port? set http.listen to a free address)", cfg.HTTP.Listen, err)
	}
	cleanup = append(cleanup, func() { ln.Close() })
	serverTLS, clientTLS, err := cluster.MutualTLS(cfg.Cluster.TLS)
	if err != nil {
		return nil, err
	}
	mux, err := cluster.ListenRPC(cfg.Cluster.RPCAddr(), serverTLS, clientTLS, logger)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { mux.Close() })
	rpcAddr := advertiseRPC(cfg.Cluster, mux.Addr())
	roles := []string{}
	if cfg.Cluster.Server {
		roles = append(roles, "server")
	}
	ms, err := cluster.NewMembership(cluster.Options{
		Config:   cfg.Cluster,
		NodeName: cfg.NodeName,
		Meta: cluster.Meta{
			RPCAddr:    rpcAddr,
			HTTPAddr:   ln.Addr().String(),
			Roles:      roles,
			Load:       cols.Load(),
			ConfigHash: cfg.Hash(),
		},
		Logger: logger,
		Meter:  mp.Meter("picket/cluster"),
	})
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { ms.Close() })

	var rn *cluster.Raft
	if cfg.Cluster.Server {
		rn, err = cluster.NewRaft(cluster.RaftOptions{
			NodeName:  cfg.NodeName,
			Dir:       filepath.Join(cfg.DataDir, "raft"),
			Config:    cfg.Cluster,
			Retention: cfg.Logs.Retention,
			Layer:     mux.RaftLayer(),
			Advertise: rpcAddr,
			Members:   ms.Members,
			Logger:    logger,
			Meter:     mp.Meter("picket/raft"),
		})
		if err != nil {
			return nil, fmt.Errorf("raft: %w", err)
		}
		cleanup = append(cleanup, func() { rn.Close() })
	}
	leader := agent.NewLeader(ms, rn, mux)
	shipper, err := cluster.NewShipper(cluster.ShipperOptions{
		Node:          cfg.NodeName,
		Dir:           filepath.Join(cfg.DataDir, "spool"),
		SpoolMaxBytes: int64(cfg.Logs.Spool.MaxBytes),
		Sink:          leader,
		Logger:        logger,
		Meter:         mp.Meter("picket/logs"),
	})
	if err != nil {
		return nil, fmt.Errorf("log spool: %w", err)
	}
	cleanup = append(cleanup, func() { shipper.Close() })
	ship.Attach(shipper)

	var logExport *agent.LogExport
	if rn != nil && cfg.Exporters.OTLP.Endpoint != "" && cfg.Exporters.OTLP.Logs {
		exp, err := tel.LogExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("exporters.otlp (logs): %w", err)
		}
		logExport = &agent.LogExport{Exporter: exp, Resource: res}
	}

	var ag *agent.Agent
	sched, err := checks.NewScheduler(checks.Options{
		Node:         cfg.NodeName,
		Probers:      checks.Probers(),
		Meter:        mp.Meter("picket/checks"),
		Logger:       logger,
		OnTransition: func(t checks.Transition) { ag.OnTransition(t) }, // ag is set before Run
	})
	if err != nil {
		return nil, fmt.Errorf("checks: %w", err)
	}
	ag, err = agent.New(agent.Parts{
		Config:         cfg,
		Logger:         logger,
		Version:        version.Version,
		Scheduler:      sched,
		Load:           cols,
		Collectors:     cols,
		Membership:     ms,
		RPC:            mux,
		Raft:           rn,
		Leader:         leader,
		Shipper:        shipper,
		LogExport:      logExport,
		Meter:          mp.Meter("picket/placement"),
		MetricsHandler: tel.Handler(),
		Listener:       ln,
		TLS:            httpTLS,
		Shutdown:       tel.Shutdown,
	})
	if err != nil {
		return nil, err
	}
	return ag, nil
}

// advertiseRPC is the RPC address peers dial. When the RPC listener is bound to every
// interface, its port is combined with the host peers use for gossip: cluster.advertise,
// else the bind host, else the first private IPv4 address (memberlist's own rule).
func advertiseRPC(c config.Cluster, rpc net.Addr) string {
	tcp, ok := rpc.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return rpc.String()
	}
	host := c.Advertise
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" {
		if h, _, err := net.SplitHostPort(c.Bind); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
			host = h
		}
	}
	if host == "" {
		if ip, err := sockaddr.GetPrivateIP(); err == nil && ip != "" {
			host = ip
		}
	}
	if host == "" {
		return rpc.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

func runValidate(e *env, args []string) int {
	fs := newFlagSet(e, "validate", "validate FILE...")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) == 0 {
		fs.Usage()
		return 2
	}
	code := 0
	for _, p := range pos {
		if _, err := config.Load(p); err != nil {
			fmt.Fprintf(e.stderr, "%v\n", err)
			code = 1
			continue
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", p)
	}
	return code
}
