package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/picket-dev/picket/internal/config"
	"github.com/picket-dev/picket/internal/logstore"
)

// Sentinel errors of the aggregator, checked with errors.Is.
var (
	// ErrNotLeader: this node is not the Raft leader (the aggregator). Every write error
	// that means "not done here, or outcome unknown: retry on the leader" wraps it,
	// including ErrNoLeader. Retrying log groups with the same seqs is always safe.
	ErrNotLeader = errors.New("this node is not the aggregator (Raft leader)")
	// ErrNoLeader: no aggregator is known or reachable right now (an election is under
	// way, or this node is on the minority side of a partition). Retryable.
	ErrNoLeader = errors.New("no aggregator (Raft leader) is reachable; retry shortly")
	// ErrNameTaken: the registry name is held by another owner.
	ErrNameTaken = errors.New("name is already registered")
	// ErrNotOwner: an unregister named an owner that does not hold the name.
	ErrNotOwner = errors.New("name is held by another owner")
	// ErrUnknownName: nobody holds the registry name.
	ErrUnknownName = errors.New("name is not registered")
	// ErrStaleTerm: an Assign decided in an older Raft term was ignored.
	ErrStaleTerm = errors.New("assignment from a stale Raft term ignored")
	// ErrRaftClosed: the Raft node was shut down.
	ErrRaftClosed = errors.New("raft node is shut down")
	// ErrOutOfOrder: a log call of an ordered stream (StreamPos) was refused because the
	// call before it was not applied (it failed, or has not arrived). Nothing of the call
	// was applied; its sender starts its stream over and sends the records again.
	ErrOutOfOrder = errors.New("log call out of order in its sender's stream; nothing of it was applied")
	// ErrStreamUnsupported: the aggregator, or a member of its Raft group, runs a picket
	// that does not apply ordered log streams (StreamPos). Nothing was applied; the sender
	// goes back to one unordered call at a time.
	ErrStreamUnsupported = errors.New("ordered log streams are not supported by every member of the Raft group (an older picket); send one call at a time")
)

// RoleServer is the role (in Meta.Roles) of a member that may be a Raft voter
// (cluster.server: true). Only members with it take part in bootstrap and autopilot.
const RoleServer = "server"

// Log ingestion limits.
const (
	// MaxLogGroupBytes bounds one group's encoded size (one POST /v1/logs body's records).
	MaxLogGroupBytes = 8 << 20
	// maxBatchBytes and maxBatchRecords bound one Raft entry of log groups; a single
	// group larger than that gets an entry of its own.
	maxBatchBytes   = 1 << 20
	maxBatchRecords = 8192
	// maxInflight is how many log entries the leader has proposed and not yet seen
	// committed; proposals arriving meanwhile are coalesced into the next entry.
	maxInflight = 2
)

const (
	walSegmentSize  = 32 << 20
	logCacheEntries = 64
	minSnapshotSize = 64 << 20 // applied command bytes that trigger a snapshot, at least
	shutdownTimeout = 10 * time.Second
	applyEnqueue    = 5 * time.Second
	ageTickInterval = time.Minute
)

// RaftOptions configures NewRaft.
type RaftOptions struct {
	// NodeName is this node's name: its Raft server ID. Required.
	NodeName string
	// Dir holds the Raft log (raft-wal), snapshots and the log store: data_dir/raft.
	// Created when missing. Required.
	Dir string
	// Config is the cluster section: server, raft.voters, raft.bootstrap_expect, profile.
	Config config.Cluster
	// Retention bounds the cluster log store (logs.retention).
	Retention config.Retention
	// Layer carries Raft traffic: Mux.RaftLayer(). Required.
	Layer raft.StreamLayer
	// Advertise is this node's RPC host:port as peers dial it (the Meta.RPCAddr it
	// gossips). Required.
	Advertise string
	// Members lists the cluster members (Membership.Members). Nil: a lone node that
	// bootstraps itself when bootstrap_expect is 1, with no autopilot and no release of
	// dead owners' names.
	Members func() []Member
	// Logger receives the node's logs (component=raft); nil discards.
	Logger *slog.Logger
	// Meter creates the picket_raft_* and picket_logs_* instruments; nil records nothing.
	Meter metric.Meter

	// Test hooks.
	transport     raft.Transport // instead of a NetworkTransport over Layer
	walSegment    int            // raft-wal segment size; 0: walSegmentSize
	snapshotBytes int64          // snapshot trigger; 0: max(minSnapshotSize, retention max_bytes)
}

// LeaderInfo names the aggregator (GET /v1/leader).
type LeaderInfo struct {
	Name    string `json:"name"`
	Address string `json:"address"` // its RPC address
	Term    uint64 `json:"term"`
}

// LeaderChange is one state of leadership as this node sees it, sent by Observe.
type LeaderChange struct {
	Leader   LeaderInfo // zero when Known is false
	Known    bool       // a leader is known
	IsLeader bool       // this node is the leader
	State    string     // this node's Raft state: leader, follower, candidate, shutdown
}

// RaftStats describes the node for /v1/agent and debugging.
type RaftStats struct {
	State        string            `json:"state"`
	Leader       LeaderInfo        `json:"leader"`
	Term         uint64            `json:"term"`
	CommitIndex  uint64            `json:"commit_index"`
	AppliedIndex uint64            `json:"applied_index"`
	LastIndex    uint64            `json:"last_index"`
	Voters       []string          `json:"voters"`
	NonVoters    []string          `json:"non_voters"`
	Logs         logstore.Stats    `json:"logs"`
	Raw          map[string]string `json:"raw"` // raft.Raft.Stats
}

// raftTiming holds the timeouts of a cluster profile.
type raftTiming struct {
	heartbeat, election, lease, commit time.Duration
	tick                               time.Duration // maintenance loop
	settleTicks                        int           // bootstrap set stable for this many ticks
	promoteAfter                       time.Duration // a new server stays non-voter this long
	detection                          time.Duration // the gossip profile's failure detection
}

func raftTimingFor(profile string) raftTiming {
	t := raftTimingOf(profile)
	t.detection = DetectionTime(profile)
	return t
}

func raftTimingOf(profile string) raftTiming {
	switch profile {
	case ProfileFast:
		return raftTiming{heartbeat: 300 * time.Millisecond, election: 300 * time.Millisecond,
			lease: 250 * time.Millisecond, commit: 20 * time.Millisecond,
			tick: 100 * time.Millisecond, settleTicks: 3, promoteAfter: 500 * time.Millisecond}
	case ProfileWAN:
		return raftTiming{heartbeat: 3 * time.Second, election: 3 * time.Second,
			lease: 1500 * time.Millisecond, commit: 100 * time.Millisecond,
			tick: time.Second, settleTicks: 3, promoteAfter: 10 * time.Second}
	default:
		return raftTiming{heartbeat: time.Second, election: time.Second,
			lease: 500 * time.Millisecond, commit: 50 * time.Millisecond,
			tick: 500 * time.Millisecond, settleTicks: 3, promoteAfter: 3 * time.Second}
	}
}

// Raft is this node's member of the aggregator's Raft group: the replicated cluster log
// store, name registry, check definitions and assignments. Every method is safe for
// concurrent use. Writes (AppendLogs, ApplyCommand and the helpers built on it) work on
// the leader only and need Run to be running; reads (Whereis, QueryLogs, ...) return
// this node's applied state, which on a follower may lag the leader: use ReadIndex on
// the leader and WaitApplied here for a linearizable read.
type Raft struct {
	o      RaftOptions
	log    *slog.Logger
	timing raftTiming

	raft     *raft.Raft
	fsm      *fsm
	store    *logstore.Store
	wal      *wal.WAL
	walMeta  *metadb.BoltMetaDB
	trans    raft.Transport
	hadState bool

	proposals chan *proposal
	turns     streamTurns // orders the calls of each sender's stream into proposals

	streamsMu      sync.Mutex
	streamsOK      bool      // every member of the Raft group applies log streams
	streamsChecked time.Time // when streamsOK was worked out

	obsCh    chan raft.Observation
	observer *raft.Observer

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	running   atomic.Bool

	trackMu  sync.Mutex
	tracking bool // false once shutdown started
	wg       sync.WaitGroup

	subsMu     sync.Mutex
	subs       map[*leaderSub]struct{}
	subsClosed bool
	lastChange LeaderChange

	failMu  sync.Mutex
	failing map[raft.ServerID]bool // peers whose heartbeats fail (from raft observations)

	// Owned by the maintenance goroutine.
	bootstrapDone bool
	bootSet       string
	bootStable    int
	bootWaitLog   time.Time
	departed      map[raft.ServerID]time.Time
	staged        map[raft.ServerID]time.Time
	ownerGone     map[string]time.Time
	quorumLogged  time.Time
	snapshotting  atomic.Bool

	committed    metric.Int64Counter
	applyLatency metric.Float64Histogram
	levelAttrs   map[string]metric.AddOption
	metricsReg   metric.Registration
}

// proposal is one AppendLogs call waiting for its groups to commit.
type proposal struct {
	node    string
	stream  StreamPos
	groups  []LogGroup
	bytes   int
	records int
	done    chan proposalResult // buffered 1
}

type proposalResult struct {
	accepted []int
	err      error
}

// inflightBatch is a proposed log entry and the calls it carries.
type inflightBatch struct {
	f     raft.ApplyFuture
	props []*proposal
	start time.Time
}

type leaderSub struct{ ch chan LeaderChange }

// NewRaft opens the node's stores and starts Raft. On existing state (a restart) the
// node rejoins its cluster from its log and snapshots; a new server node bootstraps
// once Run sees enough servers (see Run). Close, or Run's end, shuts it down.
func NewRaft(o RaftOptions) (*Raft, error) {
	switch {
	case o.NodeName == "":
		return nil, errors.New("raft: node name is empty")
	case o.Dir == "":
		return nil, errors.New("raft: data directory is empty (data_dir/raft)")
	case o.Layer == nil && o.transport == nil:
		return nil, errors.New("raft: no stream layer (pass Mux.RaftLayer())")
	case o.Advertise == "" && o.transport == nil:
		return nil, errors.New("raft: advertise address is empty (the RPC host:port peers dial)")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Meter == nil {
		o.Meter = noop.NewMeterProvider().Meter("raft")
	}
	if o.walSegment <= 0 {
		o.walSegment = walSegmentSize
	}
	if o.snapshotBytes <= 0 {
		o.snapshotBytes = max(minSnapshotSize, int64(o.Retention.MaxBytes))
	}
	r := &Raft{
		o:         o,
		log:       o.Logger.With("component", "raft"),
		timing:    raftTimingFor(o.Config.Profile),
		proposals: make(chan *proposal, 1024),
		obsCh:     make(chan raft.Observation, 64),
		closed:    make(chan struct{}),
		tracking:  true,
		subs:      map[*leaderSub]struct{}{},
		failing:   map[raft.ServerID]bool{},
		departed:  map[raft.ServerID]time.Time{},
		staged:    map[raft.ServerID]time.Time{},
		ownerGone: map[string]time.Time{},
	}
	if err := r.open(); err != nil {
		return nil, errors.Join(err, r.closeStores())
	}
	if err := r.registerMetrics(); err != nil {
		r.shutdown()
		return nil, err
	}
	return r, nil
}

// open creates the stores, the transport and the raft.Raft.
func (r *Raft) open() error {
	o := r.o
	hl := newRaftLogger(r.log)
	walDir := filepath.Join(o.Dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return fmt.Errorf("create raft directory %s: %w (check data_dir)", walDir, err)
	}
	var err error
	// raft-wal v0.4.0's Close leaves its meta database (bolt) open and locked; own it
	// so that closeStores can close it and a restart in the same process can reopen.
	r.walMeta = &metadb.BoltMetaDB{}
	r.wal, err = wal.Open(walDir, wal.WithLogger(hl.Named("wal")), wal.WithSegmentSize(o.walSegment), wal.WithMetaStore(r.walMeta))
	if err != nil {
		return fmt.Errorf("open raft log in %s: %w", walDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(o.Dir, 2, hl.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("open raft snapshots in %s: %w", o.Dir, err)
	}
	r.store, err = logstore.Open(filepath.Join(o.Dir, "logstore"), o.Retention, logstore.WithLogger(r.log))
	if err != nil {
		return fmt.Errorf("open cluster log store: %w", err)
	}
	r.fsm = newFSM(r.store, r.log)
	r.hadState, err = raft.HasExistingState(r.wal, r.wal, snaps)
	if err != nil {
		return fmt.Errorf("read raft state in %s: %w", o.Dir, err)
	}

	if o.transport != nil {
		r.trans = o.transport
	} else {
		r.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  advertisedLayer{StreamLayer: o.Layer, addr: advertiseAddr(o.Advertise)},
			MaxPool: 4,
			Timeout: 10 * time.Second,
			Logger:  hl.Named("transport"),
		})
	}

	t := r.timing
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(o.NodeName)
	conf.Logger = hl
	conf.HeartbeatTimeout = t.heartbeat
	conf.ElectionTimeout = t.election
	conf.LeaderLeaseTimeout = t.lease
	conf.CommitTimeout = t.commit
	// Not BatchApplyCh: raft v1.8.0 never answers futures still buffered in its apply
	// channel at shutdown, and awaitBatches and await would wait forever. The batcher
	// already puts many records into one entry.
	conf.BatchApplyCh = false
	conf.MaxAppendEntries = 256
	conf.NoLegacyTelemetry = true
	// A server removed by autopilot (gone too long) keeps running, so that it can be
	// added back when it returns.
	conf.ShutdownOnRemove = false
	// Disk stays bounded: snapshots come from the byte trigger in maintain (about one
	// store's worth of applied commands) or, for many small entries, every 16k entries;
	// after a snapshot only TrailingLogs entries stay in the WAL.
	conf.SnapshotThreshold = 16384
	conf.SnapshotInterval = 30 * time.Second
	conf.TrailingLogs = 256
	if err := raft.ValidateConfig(conf); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}
	// The cache spares the leader reading recent entries back from disk to replicate
	// them; entries are at most about 1 MiB, so it holds at most about 64 MiB.
	logs, err := raft.NewLogCache(logCacheEntries, r.wal)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	r.raft, err = raft.NewRaft(conf, r.fsm, logs, r.wal, snaps, r.trans)
	if err != nil {
		if c, ok := r.trans.(raft.WithClose); ok {
			_ = c.Close()
		}
		return fmt.Errorf("start raft: %w", err)
	}
	r.observer = raft.NewObserver(r.obsCh, false, func(ob *raft.Observation) bool {
		switch ob.Data.(type) {
		case raft.LeaderObservation, raft.RaftState, raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	r.raft.RegisterObserver(r.observer)
	if r.hadState {
		r.log.Info("raft state found; rejoining the cluster", "dir", o.Dir, "last_index", r.raft.LastIndex())
	}
	return nil
}

// advertisedLayer is the stream layer with the address peers dial: raft puts
// Addr() in its RPC headers and bootstrap configuration, and the listener's own address
// may be 0.0.0.0.
type advertisedLayer struct {
	raft.StreamLayer
	addr net.Addr
}

func (a advertisedLayer) Addr() net.Addr { return a.addr }

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

func (r *Raft) registerMetrics() error {
	m := r.o.Meter
	var err error
	r.committed, err = m.Int64Counter("picket_logs_committed",
		metric.WithDescription("Log records committed to the cluster log by a Raft majority, counted on the aggregator, by level."))
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	r.applyLatency, err = m.Float64Histogram("picket_raft_apply_duration_seconds",
		metric.WithDescription("Time from proposing a log batch to its commit on the aggregator, in seconds."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	r.levelAttrs = map[string]metric.AddOption{}
	for _, l := range []string{logstore.LevelDebug, logstore.LevelInfo, logstore.LevelWarn, logstore.LevelError} {
		r.levelAttrs[l] = metric.WithAttributeSet(attribute.NewSet(attribute.String("level", l)))
	}
	leader, err := m.Int64ObservableGauge("picket_raft_leader",
		metric.WithDescription("1 on the Raft leader (the aggregator), 0 on other nodes."))
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	term, err := m.Int64ObservableGauge("picket_raft_term", metric.WithDescription("Current Raft term of this node."))
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	commit, err := m.Int64ObservableGauge("picket_raft_commit_index", metric.WithDescription("Raft commit index of this node."))
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	retained, err := m.Int64ObservableGauge("picket_logs_retained",
		metric.WithDescription("Log records kept in this voter's copy of the cluster log."))
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	memory, err := m.Int64ObservableGauge("picket_logs_store_memory_bytes", metric.WithUnit("By"),
		metric.WithDescription("Estimated heap held by this voter's cluster log index (the records themselves are on disk)."))
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	disk, err := m.Int64ObservableGauge("picket_logs_store_disk_bytes", metric.WithUnit("By"),
		metric.WithDescription("Size of this voter's cluster log segment files."))
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	r.metricsReg, err = m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		isLeader := int64(0)
		if r.raft.State() == raft.Leader {
			isLeader = 1
		}
		obs.ObserveInt64(leader, isLeader)
		obs.ObserveInt64(term, int64(r.raft.CurrentTerm()))
		obs.ObserveInt64(commit, int64(r.raft.CommitIndex()))
		if st, err := r.store.Stats(); err == nil {
			obs.ObserveInt64(retained, int64(st.Records))
			obs.ObserveInt64(memory, st.MemoryBytes)
			obs.ObserveInt64(disk, st.DiskBytes)
		}
		return nil
	}, leader, term, commit, retained, memory, disk)
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	return nil
}

// Run drives the node until ctx ends (or Close): it bootstraps a new cluster when this
// server sees enough servers, coalesces AppendLogs calls into Raft entries, publishes
// leadership changes to Observe, and on the leader runs autopilot (adds alive servers
// as voters up to raft.voters, removes voters gone for 3× the failure-detection time
// while quorum allows), releases the names of owners dead for longer than the detection
// time, and ages out old records in a quiet cluster. It then shuts Raft down within a
// deadline and closes the stores. It returns nil after a clean shutdown.
//
// Bootstrap happens only with cluster.server true and no existing Raft state: once at
// least bootstrap_expect alive members with role "server" and an RPC address are seen
// (this node counts itself), the first raft.voters of them by name form the initial
// configuration, and each of them bootstraps that same configuration after it has
// stayed unchanged for a few ticks. Nodes outside it never bootstrap; autopilot adds
// them. A restart with existing state never bootstraps.
func (r *Raft) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("raft: Run called twice")
	}
	select {
	case <-r.closed:
		return ErrRaftClosed
	default:
	}
	loopCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	inflight := make(chan *inflightBatch, maxInflight)
	var wg sync.WaitGroup
	wg.Go(func() { r.batch(loopCtx, inflight) })
	wg.Go(func() { r.awaitBatches(inflight) })
	wg.Go(func() { r.watchLeader(loopCtx) })
	wg.Go(func() { r.maintain(loopCtx) })
	select {
	case <-ctx.Done():
	case <-r.closed:
	}
	cancel()
	err := r.shutdown()
	wg.Wait()
	return err
}

// Close shuts the node down (as Run does when its context ends). Idempotent.
func (r *Raft) Close() error { return r.shutdown() }

func (r *Raft) shutdown() error {
	r.closeOnce.Do(func() {
		close(r.closed)
		r.trackMu.Lock()
		r.tracking = false
		r.trackMu.Unlock()
		if r.metricsReg != nil {
			_ = r.metricsReg.Unregister()
		}
		r.raft.DeregisterObserver(r.observer)
		done := make(chan error, 1)
		go func() { done <- r.raft.Shutdown().Error() }()
		select {
		case err := <-done:
			if err != nil {
				r.closeErr = fmt.Errorf("raft shutdown: %w", err)
			}
		case <-time.After(shutdownTimeout):
			// Raft still uses the stores: leave them open rather than pull them away.
			r.closeErr = fmt.Errorf("raft shutdown did not finish within %s; its stores stay open", shutdownTimeout)
			r.log.Error("raft shutdown timed out", "timeout", shutdownTimeout)
			return
		}
		if nt, ok := r.trans.(*raft.NetworkTransport); ok {
			nt.CloseStreams()
		}
		r.wg.Wait()
		r.closeErr = errors.Join(r.closeErr, r.closeStores())
		r.subsMu.Lock()
		r.subsClosed = true
		for s := range r.subs {
			close(s.ch)
		}
		clear(r.subs)
		r.subsMu.Unlock()
		r.log.Info("raft stopped")
	})
	return r.closeErr
}

func (r *Raft) closeStores() error {
	var errs []error
	if r.wal != nil {
		errs = append(errs, r.wal.Close())
	}
	if r.walMeta != nil {
		errs = append(errs, r.walMeta.Close())
	}
	if r.store != nil {
		errs = append(errs, r.store.Close())
	}
	return errors.Join(errs...)
}

// track runs f on a goroutine that shutdown waits for; false when shutting down.
func (r *Raft) track(f func()) bool {
	r.trackMu.Lock()
	defer r.trackMu.Unlock()
	if !r.tracking {
		return false
	}
	r.wg.Go(f)
	return true
}

// await waits for a raft future or ctx. Raft resolves every future by its shutdown.
func (r *Raft) await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	if !r.track(func() { done <- f.Error() }) {
		return fmt.Errorf("%w: %w", ErrNotLeader, ErrRaftClosed)
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for raft: %w (the change may still be committed)", ctx.Err())
	}
}

// notLeader returns the error for a write on a node that is not the leader.
func (r *Raft) notLeader() error {
	select {
	case <-r.closed:
		return fmt.Errorf("%w: %w", ErrNotLeader, ErrRaftClosed)
	default:
	}
	if l, ok := r.Leader(); ok {
		return fmt.Errorf("%w: the aggregator is %s at %s", ErrNotLeader, l.Name, l.Address)
	}
	return fmt.Errorf("%w: %w", ErrNotLeader, ErrNoLeader)
}

// raftError maps raft's errors: the ones that mean "not done here, or unknown" become
// ErrNotLeader (retryable).
func (r *Raft) raftError(err error) error {
	for _, e := range []error{raft.ErrNotLeader, raft.ErrLeadershipLost, raft.ErrLeadershipTransferInProgress,
		raft.ErrRaftShutdown, raft.ErrEnqueueTimeout, raft.ErrAbortedByRestore} {
		if errors.Is(err, e) {
			if errors.Is(r.notLeader(), ErrNoLeader) {
				return fmt.Errorf("%w: %w (%v; the write may or may not be committed)", ErrNotLeader, ErrNoLeader, err)
			}
			return fmt.Errorf("%w (%v; the write may or may not be committed)", ErrNotLeader, err)
		}
	}
	return fmt.Errorf("raft: %w", err)
}

// AppendLogs commits log groups through Raft; node is the agent that queued them (it
// fills records without a node and namespaces idempotency keys). It must be called on
// the leader (else ErrNotLeader, wrapping ErrNoLeader when no leader is known). Calls
// from many goroutines are coalesced into few Raft entries (up to 1 MiB / 8192 records
// each); each call returns after its own groups have been committed by a majority and
// applied here, with the accepted count of each group: its new records, or for a group
// whose key was committed before, the first commit's count. Records already committed
// (by node and seq) are skipped, so a retry after any error is safe and exactly-once
// as long as the caller has one call in flight at a time (else see AppendLogStream).
//
// A group the log store would refuse fails the call with an error wrapping
// logstore.ErrInvalid before anything is proposed. ErrNotLeader after proposing, or a
// ctx error, means the outcome is unknown: retry with the same seqs.
func (r *Raft) AppendLogs(ctx context.Context, node string, groups []LogGroup) ([]int, error) {
	return r.AppendLogStream(ctx, node, StreamPos{}, groups)
}

// AppendLogStream is AppendLogs for a call at pos of node's ordered stream (see
// StreamPos): calls of the stream are proposed in stream order, a call overtaken on
// the way waiting up to a second for the one before it, and a call that cannot follow
// the node's last applied call fails with ErrOutOfOrder without being applied. The zero
// pos is an unordered call (AppendLogs).
func (r *Raft) AppendLogStream(ctx context.Context, node string, pos StreamPos, groups []LogGroup) ([]int, error) {
	ordered := pos != StreamPos{}
	switch {
	case ordered && pos.Pos == 0:
		return nil, fmt.Errorf("%w: stream position 0 of epoch %d (calls count from 1)", logstore.ErrInvalid, pos.Epoch)
	case ordered && len(groups) == 0:
		// The FSM answers a refused call through its groups' results.
		return nil, fmt.Errorf("%w: call %d of epoch %d carries no log groups", logstore.ErrInvalid, pos.Pos, pos.Epoch)
	}
	if r.raft.State() != raft.Leader {
		return nil, r.notLeader()
	}
	if ordered && !r.streamsSupported() {
		return nil, ErrStreamUnsupported
	}
	p, err := newProposal(node, groups)
	if err != nil {
		if ordered {
			r.turns.fail(node, pos)
		}
		return nil, err
	}
	if len(groups) == 0 {
		return []int{}, nil
	}
	p.stream = pos
	if ordered {
		if err := r.turns.take(ctx, node, pos, streamTurnWait); err != nil {
			return nil, err
		}
	}
	queued := false
	select {
	case r.proposals <- p:
		queued = true
	case <-ctx.Done():
		err = ctx.Err()
	case <-r.closed:
		err = r.notLeader()
	}
	if ordered {
		r.turns.done(node, pos, queued)
	}
	if !queued {
		return nil, err
	}
	select {
	case res := <-p.done:
		return res.accepted, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the log commit: %w (the records may still be committed; retry with the same seqs)", ctx.Err())
	case <-r.closed:
		return nil, r.notLeader()
	}
}

// streamsSupported reports whether every member of the Raft group can apply ordered log
// streams (entries of kind cmdLogCalls), as their gossiped metadata says
// (Meta.LogStreams): a voter of an earlier version would skip those entries and its copy
// of the cluster log would lose their records. A member whose metadata this node does
// not know counts as one that cannot. Worked out at most once a second.
func (r *Raft) streamsSupported() bool {
	if r.o.Members == nil {
		return true // a lone node without membership: only this binary
	}
	r.streamsMu.Lock()
	defer r.streamsMu.Unlock()
	now := time.Now()
	if now.Sub(r.streamsChecked) < time.Second {
		return r.streamsOK
	}
	r.streamsChecked = now
	r.streamsOK = false
	f := r.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	members := r.members()
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == r.o.NodeName {
			continue // this binary; its own Meta is not the gossiped one
		}
		if m, ok := members[string(srv.ID)]; !ok || !m.Meta.LogStreams {
			return false
		}
	}
	r.streamsOK = true
	return true
}

// newProposal validates and copies the groups, canonicalising levels and filling nodes.
func newProposal(node string, groups []LogGroup) (*proposal, error) {
	if node == "" {
		return nil, fmt.Errorf("%w: sending node is empty", logstore.ErrInvalid)
	}
	p := &proposal{node: node, groups: make([]LogGroup, len(groups)), done: make(chan proposalResult, 1)}
	probe := time.Now()
	for i, g := range groups {
		recs := slices.Clone(g.Records)
		for j := range recs {
			if recs[j].Node == "" {
				recs[j].Node = node
			}
			lv, err := logstore.NormalizeLevel(recs[j].Level)
			if err != nil {
				return nil, fmt.Errorf("%w: group %d record %d: %v", logstore.ErrInvalid, i, j, err)
			}
			recs[j].Level = lv
		}
		// Keys are global, not per node: a client may retry a batch through any agent
		// (DESIGN.md §5) and it must still be committed at most once.
		key := g.Key
		if err := (logstore.Batch{Records: recs, IdempotencyKey: key, Now: probe}).Validate(); err != nil {
			return nil, fmt.Errorf("log group %d from %s: %w", i, node, err)
		}
		lg := LogGroup{Key: key, Records: recs}
		size := logsEncodedSize(&lg)
		if size > MaxLogGroupBytes {
			return nil, fmt.Errorf("%w: log group %d from %s is about %d bytes, the limit is %d; send fewer records per request",
				logstore.ErrInvalid, i, node, size, MaxLogGroupBytes)
		}
		p.groups[i] = lg
		p.bytes += size
		p.records += len(recs)
	}
	return p, nil
}

// batch coalesces proposals into Raft entries, keeping at most maxInflight entries
// proposed and not yet committed (out's capacity). It closes out when ctx ends.
func (r *Raft) batch(ctx context.Context, out chan<- *inflightBatch) {
	defer close(out)
	var carry *proposal
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-r.proposals:
			case <-ctx.Done():
				r.failQueued()
				return
			}
		}
		props := []*proposal{first}
		bytes, records := first.bytes, first.records
	gather:
		for bytes < maxBatchBytes && records < maxBatchRecords {
			select {
			case p := <-r.proposals:
				if bytes+p.bytes > maxBatchBytes || records+p.records > maxBatchRecords {
					carry = p
					break gather
				}
				props = append(props, p)
				bytes += p.bytes
				records += p.records
			default:
				break gather
			}
		}
		calls := make([]logCall, len(props))
		for i, p := range props {
			calls[i] = logCall{node: p.node, stream: p.stream, groups: p.groups}
		}
		data, err := encodeLogCalls(make([]byte, 0, bytes+32*len(calls)), time.Now(), calls)
		if err != nil {
			failProposals(props, err)
			continue
		}
		if r.raft.State() != raft.Leader {
			failProposals(props, r.notLeader())
			continue
		}
		out <- &inflightBatch{f: r.raft.Apply(data, applyEnqueue), props: props, start: time.Now()}
	}
}

func failProposals(props []*proposal, err error) {
	for _, p := range props {
		p.done <- proposalResult{err: err}
	}
}

// failQueued answers proposals still queued when the batcher stops.
func (r *Raft) failQueued() {
	for {
		select {
		case p := <-r.proposals:
			p.done <- proposalResult{err: fmt.Errorf("%w: %w", ErrNotLeader, ErrRaftClosed)}
		default:
			return
		}
	}
}

// awaitBatches waits for proposed entries in order and answers their calls.
func (r *Raft) awaitBatches(in <-chan *inflightBatch) {
	ctx := context.Background()
	for b := range in {
		err := b.f.Error()
		r.applyLatency.Record(ctx, time.Since(b.start).Seconds())
		if err != nil {
			failProposals(b.props, r.raftError(err))
			continue
		}
		resp, _ := b.f.Response().([]groupResult)
		n := 0
		for _, p := range b.props {
			n += len(p.groups)
		}
		if len(resp) != n {
			failProposals(b.props, fmt.Errorf("raft: log batch at index %d answered %d groups, expected %d", b.f.Index(), len(resp), n))
			continue
		}
		i := 0
		for _, p := range b.props {
			res := proposalResult{accepted: make([]int, len(p.groups))}
			for j := range p.groups {
				g := resp[i]
				i++
				if g.err != nil && res.err == nil {
					res.err = fmt.Errorf("store log group on the aggregator: %w", g.err)
				}
				res.accepted[j] = g.applied.Accepted
				for level, c := range g.applied.New {
					if opt, ok := r.levelAttrs[level]; ok {
						r.committed.Add(ctx, int64(c), opt)
					}
				}
			}
			p.done <- res
		}
	}
}

// ApplyCommand commits cmd through Raft on the leader and returns the command's result
// (see each Command type). Errors: ErrInvalidCommand before proposing; ErrNotLeader
// (wrapping ErrNoLeader when none is known) when this node is not the leader or lost
// leadership while committing (outcome unknown); the command's own errors
// (ErrNameTaken, ErrNotOwner, ErrUnknownName, ErrStaleTerm); a ctx error (the command
// may still commit).
func (r *Raft) ApplyCommand(ctx context.Context, cmd Command) (any, error) {
	if cmd == nil {
		return nil, fmt.Errorf("%w: nil command", ErrInvalidCommand)
	}
	if err := cmd.validate(); err != nil {
		return nil, err
	}
	if r.raft.State() != raft.Leader {
		return nil, r.notLeader()
	}
	data, err := encodeJSONCommand(cmd.commandKind(), time.Now(), cmd)
	if err != nil {
		return nil, err
	}
	f := r.raft.Apply(data, applyEnqueue)
	if err := r.await(ctx, f); err != nil {
		if errors.Is(err, ctx.Err()) || errors.Is(err, ErrRaftClosed) {
			return nil, err
		}
		return nil, r.raftError(err)
	}
	res, ok := f.Response().(cmdResult)
	if !ok {
		return nil, fmt.Errorf("raft: command at index %d gave no result", f.Index())
	}
	return res.value, res.err
}

// Register claims name for owner (a member's node name) with value: ErrNameTaken when
// another owner holds it. Registering again as the same owner updates the value.
func (r *Raft) Register(ctx context.Context, name, owner, value string) error {
	_, err := r.ApplyCommand(ctx, RegisterName{Name: name, Owner: owner, Value: value})
	return err
}

// Unregister releases name: ErrUnknownName when nobody holds it, ErrNotOwner when owner
// is not empty and does not hold it. An empty owner releases it whoever holds it.
func (r *Raft) Unregister(ctx context.Context, name, owner string) error {
	_, err := r.ApplyCommand(ctx, UnregisterName{Name: name, Owner: owner})
	return err
}

// Whereis looks a name up in this node's applied state.
func (r *Raft) Whereis(name string) (Registration, bool) { return r.fsm.whereis(name) }

// Names lists every registered name, sorted, from this node's applied state.
func (r *Raft) Names() []Registration { return r.fsm.names() }

// Checks returns the committed cluster check definitions (name → JSON).
func (r *Raft) Checks() map[string]json.RawMessage { return r.fsm.checks() }

// Assignments returns the committed assignments and the highest term that wrote any.
func (r *Raft) Assignments() (map[string]CheckAssignment, uint64) { return r.fsm.assignments() }

// ExportCursor returns the replicated OTLP export cursor: the log store index up to
// which records were exported.
func (r *Raft) ExportCursor() uint64 { return r.fsm.exportCursor() }

// AdvanceExportCursor commits a new export cursor (it never moves back) and returns it.
func (r *Raft) AdvanceExportCursor(ctx context.Context, index uint64) (uint64, error) {
	v, err := r.ApplyCommand(ctx, AdvanceExportCursor{Index: index})
	if err != nil {
		return 0, err
	}
	c, _ := v.(uint64)
	return c, nil
}

// StateChanged returns a channel closed at the next change of the registry, check
// definitions, assignments or export cursor on this node (not at log appends: use
// Store().Changed for those).
func (r *Raft) StateChanged() <-chan struct{} { return r.fsm.stateChanged() }

// QueryLogs queries this node's copy of the cluster log.
func (r *Raft) QueryLogs(q logstore.Query) ([]logstore.Record, error) { return r.store.Query(q) }

// Store is this node's copy of the cluster log (for Since, Changed and Stats).
func (r *Raft) Store() *logstore.Store { return r.store }

// Leader returns the current leader as this node knows it.
func (r *Raft) Leader() (LeaderInfo, bool) {
	addr, id := r.raft.LeaderWithID()
	if id == "" {
		return LeaderInfo{}, false
	}
	return LeaderInfo{Name: string(id), Address: string(addr), Term: r.raft.CurrentTerm()}, true
}

// InConfiguration reports whether this node is a voter or non-voter of the Raft group.
// A server outside it (more servers than raft.voters, or not yet added) follows no leader
// through Raft and must learn the aggregator another way.
func (r *Raft) InConfiguration() bool {
	f := r.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(r.o.NodeName) {
			return true
		}
	}
	return false
}

// IsVoter reports whether this node is a voter in the latest Raft configuration.
func (r *Raft) IsVoter() bool {
	f := r.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(r.o.NodeName) {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// IsLeader reports whether this node is the Raft leader (the aggregator).
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// State is this node's Raft state: leader, follower, candidate or shutdown.
func (r *Raft) State() string { return strings.ToLower(r.raft.State().String()) }

// Term is this node's current Raft term.
func (r *Raft) Term() uint64 { return r.raft.CurrentTerm() }

// AppliedIndex is the index of the last entry applied to this node's state.
func (r *Raft) AppliedIndex() uint64 { return r.raft.AppliedIndex() }

// Stats describes the node.
func (r *Raft) Stats() RaftStats {
	s := RaftStats{
		State:        r.State(),
		Term:         r.raft.CurrentTerm(),
		CommitIndex:  r.raft.CommitIndex(),
		AppliedIndex: r.raft.AppliedIndex(),
		LastIndex:    r.raft.LastIndex(),
		Raw:          r.raft.Stats(),
	}
	s.Leader, _ = r.Leader()
	if f := r.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				s.Voters = append(s.Voters, string(srv.ID))
			} else {
				s.NonVoters = append(s.NonVoters, string(srv.ID))
			}
		}
	}
	s.Logs, _ = r.store.Stats()
	return s
}

// Barrier waits (on the leader) until every entry committed before it is applied here:
// reads after it see every write acknowledged before it. ErrNotLeader elsewhere.
func (r *Raft) Barrier(ctx context.Context) error {
	if r.raft.State() != raft.Leader {
		return r.notLeader()
	}
	if err := r.await(ctx, r.raft.Barrier(raftTimeoutOf(ctx))); err != nil {
		if errors.Is(err, ctx.Err()) {
			return err
		}
		return r.raftError(err)
	}
	return nil
}

// VerifyLeader confirms with a quorum that this node is still the leader.
func (r *Raft) VerifyLeader(ctx context.Context) error {
	if err := r.await(ctx, r.raft.VerifyLeader()); err != nil {
		if errors.Is(err, ctx.Err()) {
			return err
		}
		return r.raftError(err)
	}
	return nil
}

// ReadIndex (on the leader) returns an index such that a node that has applied it
// sees every write acknowledged before the call: a follower answering a linearizable
// read asks the leader for it and waits with WaitApplied.
func (r *Raft) ReadIndex(ctx context.Context) (uint64, error) {
	if err := r.Barrier(ctx); err != nil {
		return 0, err
	}
	return r.raft.AppliedIndex(), nil
}

// WaitApplied waits until this node has applied index (or ctx ends).
func (r *Raft) WaitApplied(ctx context.Context, index uint64) error {
	if r.raft.AppliedIndex() >= index {
		return nil
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for r.raft.AppliedIndex() < index {
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for raft index %d (applied %d): %w", index, r.raft.AppliedIndex(), ctx.Err())
		case <-r.closed:
			return ErrRaftClosed
		}
	}
	// Raft counts an entry applied once it is handed to the FSM goroutine; wait until the
	// FSM itself has applied the last command at or below index.
	target := r.lastCommandAtOrBelow(index)
	for r.fsm.applied.Load() < target {
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the state machine to apply index %d (applied %d): %w", target, r.fsm.applied.Load(), ctx.Err())
		case <-r.closed:
			return ErrRaftClosed
		}
	}
	return nil
}

// lastCommandAtOrBelow returns the index of the last command entry at or below index, or 0
// when there is none in the log (compacted entries are in the restored snapshot).
func (r *Raft) lastCommandAtOrBelow(index uint64) uint64 {
	for i := index; i > 0; i-- {
		var l raft.Log
		if err := r.wal.GetLog(i, &l); err != nil {
			return 0
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return 0
}

func raftTimeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 0
}

// Observe subscribes to leadership changes. The channel first receives the current
// state, then every change; each value is a full state, not an edge. When the
// subscriber falls behind, older undelivered values are replaced by newer ones, so the
// last value received is always current (raft's own LeaderCh can drop the final
// signal; this cannot). The channel is closed by cancel or at shutdown.
//
// Changes are taken from a raft.Observer (LeaderObservation, RaftState) and, because
// raft drops observations when the observer is busy, also from polling every tick.
func (r *Raft) Observe(buf int) (<-chan LeaderChange, func()) {
	s := &leaderSub{ch: make(chan LeaderChange, max(buf, 1))}
	r.subsMu.Lock()
	defer r.subsMu.Unlock()
	if r.subsClosed {
		close(s.ch)
		return s.ch, func() {}
	}
	r.subs[s] = struct{}{}
	s.ch <- r.currentChange()
	return s.ch, func() {
		r.subsMu.Lock()
		defer r.subsMu.Unlock()
		if _, ok := r.subs[s]; ok {
			delete(r.subs, s)
			close(s.ch)
		}
	}
}

func (r *Raft) currentChange() LeaderChange {
	c := LeaderChange{State: r.State(), IsLeader: r.IsLeader()}
	c.Leader, c.Known = r.Leader()
	return c
}

// publish sends c to every subscriber, replacing a stale value when one is full.
// Caller holds subsMu.
func (r *Raft) publishLocked(c LeaderChange) {
	for s := range r.subs {
		select {
		case s.ch <- c:
			continue
		default:
		}
		select {
		case <-s.ch:
		default:
		}
		select {
		case s.ch <- c:
		default:
		}
	}
}

// watchLeader turns raft observations into LeaderChange values and logs; maintain polls
// with checkLeader every tick as well, since raft drops observations when we are busy.
func (r *Raft) watchLeader(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ob := <-r.obsCh:
			switch d := ob.Data.(type) {
			case raft.FailedHeartbeatObservation:
				r.failMu.Lock()
				r.failing[d.PeerID] = true
				r.failMu.Unlock()
			case raft.ResumedHeartbeatObservation:
				r.failMu.Lock()
				delete(r.failing, d.PeerID)
				r.failMu.Unlock()
			}
		}
		r.checkLeader()
	}
}

// checkLeader publishes and logs the leadership state when it changed.
func (r *Raft) checkLeader() {
	c := r.currentChange()
	r.subsMu.Lock()
	last := r.lastChange
	changed := c != last
	if changed {
		r.lastChange = c
		r.publishLocked(c)
	}
	r.subsMu.Unlock()
	if !changed {
		return
	}
	switch {
	case c.IsLeader && !last.IsLeader:
		r.log.Info("this node is now the aggregator (Raft leader)", "term", c.Leader.Term)
	case c.Known && (c.Leader.Name != last.Leader.Name || !last.Known):
		r.log.Info("aggregator elected", "leader", c.Leader.Name, "address", c.Leader.Address, "term", c.Leader.Term)
	case !c.Known && last.Known:
		r.log.Warn("aggregator lost; waiting for a Raft election (writes fail until one is elected)", "was", last.Leader.Name)
	}
}

// clearFailing forgets id's heartbeat failures: raft reports a resumed heartbeat only from
// the replication goroutine that saw the failure, and removing or re-adding a server
// replaces that goroutine, so without this a returning server would stay marked failing
// (and never be promoted) forever.
func (r *Raft) clearFailing(id raft.ServerID) {
	r.failMu.Lock()
	delete(r.failing, id)
	r.failMu.Unlock()
}

// isFailing reports whether the leader's heartbeats to id fail.
func (r *Raft) isFailing(id raft.ServerID) bool {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	return r.failing[id]
}
