package agent

// Placement of cluster checks, on the aggregator (the Raft leader).
//
// While this agent leads, one loop (leadPlacement) recomputes the assignment with the pure
// cluster.Place — on every membership event (a failed node at once, not at the next tick),
// on every change of the replicated state (a check added or removed), and every
// placementInterval (learnt costs, loads) — and commits what changed as one Assign fenced
// by the term it leads in. The aggregator also keeps, in memory only (DESIGN.md §9), the
// latest result of every (check, node), and the cluster check definitions each agent's
// config file holds, to add them, report conflicting ones as drift, and remove the ones
// that no config defines any more.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/picket-dev/picket/checks"
	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

const (
	// placementInterval is how often the aggregator re-places without a trigger, so
	// learnt costs and gossiped loads are taken into account.
	placementInterval = 3 * time.Second
	// placementRetry is how soon a failed commit of an assignment is tried again.
	placementRetry = 200 * time.Millisecond
	// placementSettle batches the metadata updates (loads) that trigger a re-placement.
	placementSettle = 500 * time.Millisecond
	// costSmoothing is the weight of a new run time in a check's learnt average.
	costSmoothing = 0.2
)

// Discard reasons of picket_placement_results_discarded_total.
const (
	discardNotAssigned = "not_assigned" // the sender no longer runs the check
	discardStaleTerm   = "stale_term"   // decided by an older assignment than the current one
)

var (
	errCheckExists  = errors.New("check exists")
	errUnknownCheck = errors.New("unknown check")
)

// RPC codes of the cluster check errors (see rpcError).
const (
	codeCheckExists  = "check_exists"
	codeUnknownCheck = "unknown_check"
	codeExecRefused  = "exec_refused"
)

// placement is the aggregator's state of cluster checks. Its methods are safe for
// concurrent use; the maps are kept only while this agent leads.
type placement struct {
	log       *slog.Logger
	moves     metric.Int64Counter
	discarded metric.Int64Counter
	meter     metric.Meter
	kick      chan struct{} // capacity 1: re-place now

	// writeMu serialises read-compare-write of definitions (POST, DELETE, YAML sync), so
	// two writers on this aggregator never both see a name as free.
	writeMu sync.Mutex

	mu       sync.Mutex
	leading  bool
	perNode  map[string]int                     // slots per node of the committed assignment
	results  map[string]map[string]nodeResult   // check → node → latest
	combined map[string]combinedState           // check → combined status and since
	runTime  map[string]float64                 // check → smoothed run time, seconds
	sources  map[string]map[string]config.Check // node → its config's cluster checks
	drift    map[string]json.RawMessage         // node \x00 check → definition reported as drift
}

// nodeResult is one node's latest report of a cluster check.
type nodeResult struct {
	term     uint64
	status   checks.Status // the node's state of the check (thresholds applied)
	flapping bool
	since    time.Time
	result   api.Result
}

type combinedState struct {
	status checks.Status
	since  time.Time
}

func newPlacement(log *slog.Logger, meter metric.Meter) (*placement, error) {
	if meter == nil {
		meter = noop.Meter{}
	}
	moves, err := meter.Int64Counter("picket.placement.moves",
		metric.WithDescription("Cluster check slots moved by the aggregator, by reason (new, node_failed, rebalance, removed)."))
	if err != nil {
		return nil, fmt.Errorf("create picket.placement.moves counter: %w", err)
	}
	// Every reason starts at 0, so dashboards and alerts see the series before a first move.
	for _, r := range []string{cluster.MoveNew, cluster.MoveNodeFailed, cluster.MoveRebalance, cluster.MoveRemoved} {
		moves.Add(context.Background(), 0, metric.WithAttributes(attribute.String("reason", r)))
	}
	discarded, err := meter.Int64Counter("picket.placement.results.discarded",
		metric.WithDescription("Cluster check results the aggregator discarded, by reason (not_assigned: the sender no longer runs the check; stale_term: sent under an older assignment)."))
	if err != nil {
		return nil, fmt.Errorf("create picket.placement.results.discarded counter: %w", err)
	}
	return &placement{
		log: log.With("component", "placement"), moves: moves, discarded: discarded, meter: meter,
		kick: make(chan struct{}, 1),
	}, nil
}

// registerGauge registers picket.placement.assignments, observed only while leading.
// The returned function unregisters it.
func (p *placement) registerGauge() (func(), error) {
	g, err := p.meter.Int64ObservableGauge("picket.placement.assignments",
		metric.WithDescription("Cluster check slots assigned to each node; reported by the aggregator only."))
	if err != nil {
		return nil, fmt.Errorf("create picket.placement.assignments gauge: %w", err)
	}
	reg, err := p.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.leading {
			return nil
		}
		for node, n := range p.perNode {
			o.ObserveInt64(g, int64(n), metric.WithAttributes(attribute.String("node", node)))
		}
		return nil
	}, g)
	if err != nil {
		return nil, fmt.Errorf("register picket.placement.assignments callback: %w", err)
	}
	return func() {
		if err := reg.Unregister(); err != nil {
			p.log.Debug("unregister the assignments gauge", "err", err)
		}
	}, nil
}

// begin resets the in-memory state for a new term of leadership: results and config
// sources are sent again by every agent when they see the new aggregator.
func (p *placement) begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leading = true
	p.perNode = map[string]int{}
	p.results = map[string]map[string]nodeResult{}
	p.combined = map[string]combinedState{}
	p.runTime = map[string]float64{}
	p.sources = map[string]map[string]config.Check{}
	p.drift = map[string]json.RawMessage{}
}

// end forgets the state when leadership is lost.
func (p *placement) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leading = false
	p.perNode, p.results, p.combined, p.runTime, p.sources, p.drift = nil, nil, nil, nil, nil, nil
}

// poke asks the placement loop to re-place now.
func (p *placement) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// cost is a check's learnt cost: average run time ÷ interval; 0 when not known yet.
func (p *placement) cost(c config.Check) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	iv := c.Interval.D()
	if iv <= 0 {
		return 0
	}
	return p.runTime[c.Name] / iv.Seconds()
}

// runPlacement follows this voter's leadership and runs the placement loop while it
// leads, stopping it (and forgetting the in-memory state) as soon as leadership is lost or
// a new term begins. It blocks until ctx ends.
func (a *Agent) runPlacement(ctx context.Context) error {
	unregister, err := a.pl.registerGauge()
	if err != nil {
		return err
	}
	defer unregister()
	ch, cancel := a.parts.Raft.Observe(4)
	defer cancel()
	type loop struct {
		term   uint64
		cancel context.CancelFunc
		done   chan struct{}
	}
	var cur *loop
	stop := func() {
		if cur == nil {
			return
		}
		cur.cancel()
		<-cur.done
		cur = nil
		a.pl.end()
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-ch:
			if !ok {
				return nil
			}
			if cur != nil && (!c.IsLeader || c.Leader.Term != cur.term) {
				a.pl.log.Info("placement stopped: no longer the aggregator of this term", "term", cur.term)
				stop()
			}
			if c.IsLeader && cur == nil {
				lctx, lcancel := context.WithCancel(ctx)
				cur = &loop{term: c.Leader.Term, cancel: lcancel, done: make(chan struct{})}
				a.pl.begin()
				go func(l *loop) {
					defer close(l.done)
					a.leadPlacement(lctx, l.term)
				}(cur)
			}
		}
	}
}

// leadPlacement is the aggregator's placement loop for one term of leadership.
func (a *Agent) leadPlacement(ctx context.Context, term uint64) {
	rn := a.parts.Raft
	a.pl.log.Info("placing cluster checks as the aggregator", "term", term)
	// Entries of earlier terms must be applied here before the state is read.
	for {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := rn.Barrier(bctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, cluster.ErrNotLeader) {
			return
		}
		a.pl.log.Warn("placement waits for the Raft log to be applied", "err", err)
		if !sleepCtx(ctx, placementRetry) {
			return
		}
	}
	evs, unsubscribe := a.parts.Membership.Subscribe(256)
	defer unsubscribe()
	tick := time.NewTicker(placementInterval)
	defer tick.Stop()
	// retry fires after a failed commit; settle after metadata updates (loads change every
	// second on every node: they are batched, while joins and failures act at once).
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	settle := time.NewTimer(time.Hour)
	defer settle.Stop()
	settling := false
	place := true
	for {
		changed := rn.StateChanged()
		if place && !a.placeOnce(ctx, term) {
			retry.Reset(placementRetry)
		}
		place = true
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-evs:
			if !ok {
				return
			}
			if ev.Type == cluster.EventUpdate || ev.Type == cluster.EventDrift {
				if !settling {
					settling = true
					settle.Reset(placementSettle)
				}
				place = false
			}
		case <-settle.C:
			settling = false
		case <-changed:
		case <-tick.C:
		case <-a.pl.kick:
		case <-retry.C:
		}
	}
}

// placeOnce computes the assignment and commits what changed. It reports false when the
// commit failed and should be retried soon.
func (a *Agent) placeOnce(ctx context.Context, term uint64) bool {
	rn := a.parts.Raft
	if !rn.IsLeader() || rn.Term() != term {
		return true // runPlacement stops this loop
	}
	defs := rn.Checks()
	current, _ := rn.Assignments()
	pcs := make([]cluster.PlacementCheck, 0, len(defs))
	for name, raw := range defs {
		c, err := a.defs.decode(name, raw)
		if err != nil {
			continue // logged by the cache; Place drops its assignment
		}
		pcs = append(pcs, cluster.PlacementCheck{Name: name, Nodes: c.Vantage.Nodes, Cost: a.pl.cost(c)})
	}
	cur := make(cluster.Assignment, len(current))
	for name, as := range current {
		cur[name] = as.Nodes
	}
	members := a.parts.Membership.Members()
	next, moves := cluster.Place(placementNodes(members), pcs, cur, cluster.DefaultPlacementPolicy())
	changes := map[string][]string{}
	for name, nodes := range next {
		if !slices.Equal(nodes, current[name].Nodes) {
			changes[name] = nodes
		}
	}
	for name := range current {
		if _, ok := next[name]; !ok {
			changes[name] = []string{}
		}
	}
	if len(changes) > 0 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := rn.ApplyCommand(cctx, cluster.Assign{Term: term, Nodes: changes})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				a.pl.log.Warn("cannot commit the placement of cluster checks; retrying", "term", term, "changes", len(changes), "err", err)
			}
			return errors.Is(err, cluster.ErrStaleTerm) // fenced off: a newer term decides
		}
		for _, m := range moves {
			a.recordMove(m, term)
		}
	}
	counts := next.PerNode()
	for _, m := range members {
		if _, ok := counts[m.Name]; !ok && m.Status == cluster.StatusAlive {
			counts[m.Name] = 0
		}
	}
	a.pl.placed(next, counts)
	return true
}

// placed records the committed assignment: the gauge's counts, and the results of nodes
// that no longer run a check are forgotten.
func (p *placement) placed(next cluster.Assignment, counts map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.leading {
		return
	}
	p.perNode = counts
	for check, rs := range p.results {
		nodes, ok := next[check]
		if !ok {
			delete(p.results, check)
			delete(p.combined, check)
			delete(p.runTime, check)
			continue
		}
		for node := range rs {
			if !slices.Contains(nodes, node) {
				delete(rs, node)
			}
		}
	}
}

// recordMove counts a move, records it as an event (shipped to the cluster log) and logs it.
func (a *Agent) recordMove(m cluster.Move, term uint64) {
	a.pl.moves.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", m.Reason)))
	node := m.To
	if node == "" {
		node = m.From
	}
	e := Event{Type: "placement", Node: node, Check: m.Check, From: m.From, To: m.To, Detail: m.Reason}
	a.events.add(e)
	a.shipEvent(e)
	switch {
	case m.Reason == cluster.MoveNodeFailed && m.To == "":
		a.pl.log.Warn("cluster check lost a node and no other alive node is free to take it", "check", m.Check, "from", m.From, "term", term)
	default:
		a.pl.log.Info("cluster check placed", "check", m.Check, "from", m.From, "to", m.To, "reason", m.Reason, "term", term)
	}
}

// acceptResults stores the reports of node that match the committed assignment: the node
// must run the check, under an assignment not older than the current one. It returns how
// many it kept; the others are counted as discarded.
func (a *Agent) acceptResults(node string, reps []resultReport) (int, error) {
	if !a.parts.Leader.local() {
		return 0, cluster.ErrNotLeader
	}
	assigns, _ := a.parts.Raft.Assignments()
	p := a.pl
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.leading {
		return 0, fmt.Errorf("%w: the placement loop is not running yet", cluster.ErrNotLeader)
	}
	now := time.Now()
	kept := 0
	drop := map[string]int{}
	for _, rep := range reps {
		as, ok := assigns[rep.Check]
		switch {
		case !ok || !slices.Contains(as.Nodes, node):
			drop[discardNotAssigned]++
			continue
		case rep.Term < as.Term:
			drop[discardStaleTerm]++
			continue
		}
		rs := p.results[rep.Check]
		if rs == nil {
			rs = map[string]nodeResult{}
			p.results[rep.Check] = rs
		}
		if old, ok := rs[node]; ok && old.result.Time.After(rep.Result.Time) {
			continue // an older report arriving late
		}
		rep.Result.Node = node
		rep.Result.Check = ""
		rs[node] = nodeResult{term: rep.Term, status: rep.Status, flapping: rep.Flapping, since: rep.Since, result: rep.Result}
		kept++
		if d := rep.Result.DurationSeconds; d >= 0 {
			if old, ok := p.runTime[rep.Check]; ok {
				p.runTime[rep.Check] = old + costSmoothing*(d-old)
			} else {
				p.runTime[rep.Check] = d
			}
		}
		if c, ok := a.defs.cached(rep.Check); ok { // placeOnce keeps the cache current
			p.refreshLocked(c, as.Nodes, now)
		}
	}
	for reason, n := range drop {
		p.discarded.Add(context.Background(), int64(n), metric.WithAttributes(attribute.String("reason", reason)))
		p.log.Debug("cluster check results discarded", "node", node, "reason", reason, "count", n)
	}
	return kept, nil
}

// refreshLocked recomputes a check's combined status and returns its view. Callers hold
// p.mu.
func (p *placement) refreshLocked(c config.Check, nodes []string, now time.Time) api.Check {
	rs := p.results[c.Name]
	var reports []nodeResult
	for _, n := range nodes {
		if r, ok := rs[n]; ok {
			reports = append(reports, r)
		}
	}
	status, flapping, output := combine(c.Vantage.Quorum, len(nodes), reports)
	st, ok := p.combined[c.Name]
	if !ok || st.status != status {
		since := now
		if !ok {
			// First sight on this aggregator: the nodes' own since, when they agree.
			for _, r := range reports {
				if r.status == status && !r.since.IsZero() && (since.Equal(now) || r.since.After(since)) {
					since = r.since
				}
			}
		}
		st = combinedState{status: status, since: since}
		p.combined[c.Name] = st
	}
	results := make([]api.Result, 0, len(reports))
	for _, r := range reports {
		results = append(results, r.result)
	}
	return api.Check{
		Name: c.Name, Type: c.Type, Placement: config.PlacementCluster, Nodes: nonNil(nodes),
		Status: status.String(), Flapping: flapping, Since: st.since.UTC(), Output: output, Results: results,
	}
}

// combine reduces the reports of a check's nodes (one per reporting node, in node order)
// to its combined status. quorum is vantage.quorum, capped by the number of assigned
// nodes (a check that runs on fewer nodes than its vantage asks can still fail):
//
//   - unknown when no node has reported a known state;
//   - critical when at least quorum nodes are critical;
//   - warning when at least quorum nodes are not passing (warning or critical);
//   - passing otherwise: fewer than quorum vantages failing is tolerated, which is what a
//     quorum is for (one vantage that cannot reach the target does not page anyone). The
//     failing vantages still show in the output and in their per-node results.
//
// With the default quorum of 1, any critical node makes the check critical and any other
// non-passing node makes it warning.
func combine(quorum, assigned int, reports []nodeResult) (checks.Status, bool, string) {
	q := max(1, min(quorum, assigned))
	known, crit, bad := 0, 0, 0
	flapping := false
	var failing []string
	for _, r := range reports {
		flapping = flapping || r.flapping
		if r.status == checks.Unknown {
			continue
		}
		known++
		if r.status != checks.Passing {
			bad++
			failing = append(failing, fmt.Sprintf("%s: %s %s", r.result.Node, r.status, r.result.Output))
		}
		if r.status == checks.Critical {
			crit++
		}
	}
	status := checks.Passing
	switch {
	case known == 0:
		status = checks.Unknown
	case crit >= q:
		status = checks.Critical
	case bad >= q:
		status = checks.Warning
	}
	switch {
	case assigned == 0:
		return status, flapping, "not running: no alive node to run it on"
	case len(reports) == 0:
		return status, flapping, "no result yet"
	case len(reports) == 1 && assigned == 1:
		return status, flapping, reports[0].result.Output
	}
	output := fmt.Sprintf("%d of %d nodes passing", known-bad, assigned)
	if len(failing) > 0 {
		output += "; " + strings.Join(failing, "; ")
	} else {
		output += ": " + reports[0].result.Output
	}
	return status, flapping, output
}

// clusterView is GET /v1/checks' view of every cluster check, as the aggregator has it.
func (a *Agent) clusterView() []api.Check {
	defs := a.parts.Raft.Checks()
	assigns, _ := a.parts.Raft.Assignments()
	now := time.Now()
	p := a.pl
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]api.Check, 0, len(defs))
	for _, name := range slices.Sorted(maps.Keys(defs)) {
		c, err := a.defs.decode(name, defs[name])
		if err != nil {
			out = append(out, api.Check{Name: name, Placement: config.PlacementCluster, Nodes: []string{},
				Status: checks.Unknown.String(), Output: "the stored definition cannot be read: " + err.Error(), Results: []api.Result{}})
			continue
		}
		nodes := assigns[name].Nodes
		if !p.leading {
			// Not placing (yet): the assignment without results.
			out = append(out, api.Check{Name: name, Type: c.Type, Placement: config.PlacementCluster, Nodes: nonNil(nodes),
				Status: checks.Unknown.String(), Results: []api.Result{}})
			continue
		}
		out = append(out, p.refreshLocked(c, nodes, now))
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Definitions: POST/DELETE /v1/checks and the config files' cluster checks.

// canonicalCheck is the JSON stored in Raft for c: every field, defaults included, so
// that two definitions are the same check exactly when their JSON is equal.
func canonicalCheck(c config.Check) (json.RawMessage, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode check %s: %w", c.Name, err)
	}
	return b, nil
}

// sameDefinition reports whether a stored definition and c are the same check.
func sameDefinition(stored json.RawMessage, c config.Check) bool {
	old, err := config.DecodeCheckJSON(stored)
	if err != nil {
		return false
	}
	canon, err := canonicalCheck(c)
	if err != nil {
		return false
	}
	// Compare both decoded from JSON, so nil and empty lists cannot differ.
	again, err := config.DecodeCheckJSON(canon)
	return err == nil && reflect.DeepEqual(old, again)
}

// putCheck stores a cluster check definition on the aggregator: created, unchanged, or
// (with replace) replaced; a different definition under the same name without replace
// fails with errCheckExists.
func (a *Agent) putCheck(ctx context.Context, c config.Check, replace bool) (string, error) {
	a.pl.writeMu.Lock()
	defer a.pl.writeMu.Unlock()
	raw, err := canonicalCheck(c)
	if err != nil {
		return "", err
	}
	stored, exists := a.parts.Raft.Checks()[c.Name]
	result := "created"
	if exists {
		if sameDefinition(stored, c) {
			return "unchanged", nil
		}
		if !replace {
			return "", codedError{errCheckExists, fmt.Sprintf(
				"check %q is already registered with a different definition; send it with ?replace=true to replace it, or DELETE /v1/checks/%s first", c.Name, c.Name)}
		}
		result = "replaced"
	}
	if _, err := a.parts.Raft.ApplyCommand(ctx, cluster.PutCheck{Name: c.Name, Definition: raw}); err != nil {
		return "", err
	}
	a.pl.log.Info("cluster check "+result, "check", c.Name, "type", c.Type, "vantage", c.Vantage.Nodes)
	a.pl.poke()
	return result, nil
}

// deleteCheck removes a cluster check definition. The warning names the agents whose
// config files define it: they add it again when they next send their checks.
func (a *Agent) deleteCheck(ctx context.Context, name string) (string, error) {
	a.pl.writeMu.Lock()
	defer a.pl.writeMu.Unlock()
	v, err := a.parts.Raft.ApplyCommand(ctx, cluster.DeleteCheck{Name: name})
	if err != nil {
		return "", err
	}
	if existed, _ := v.(bool); !existed {
		return "", codedError{errUnknownCheck, fmt.Sprintf("no cluster check named %q (GET /v1/checks lists them)", name)}
	}
	a.pl.log.Info("cluster check removed", "check", name)
	a.pl.poke()
	if nodes := a.pl.definedBy(name, ""); len(nodes) > 0 {
		return fmt.Sprintf("the config files of %s define %q: it comes back when they next send their checks; remove it from those files",
			strings.Join(nodes, ", "), name), nil
	}
	return "", nil
}

// definedBy lists the nodes other than except whose config files define the check.
func (p *placement) definedBy(check, except string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for node, cs := range p.sources {
		if _, ok := cs[check]; ok && node != except {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out
}

// syncConfigChecks takes the cluster checks of one agent's config file (the whole set)
// on the aggregator:
//
//   - a check not stored yet is stored;
//   - one stored with the same definition is left alone;
//   - one stored with a different definition is kept out: the stored one stays, and the
//     conflict is reported once per change as a drift event and a warning;
//   - a check the agent's previous set had and this one does not is removed, but only
//     when no other agent's config defines it and the stored definition is the one this
//     agent had (a check replaced through the API or defined by another config stays).
//
// The sets are kept in memory on the aggregator only: after a change of aggregator every
// agent sends its set again, and a removal made while no aggregator was known is missed
// (DELETE /v1/checks/{name} removes such a leftover).
func (a *Agent) syncConfigChecks(ctx context.Context, node string, defs []json.RawMessage) error {
	p := a.pl
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	stored := a.parts.Raft.Checks()
	set := map[string]config.Check{}
	for i, raw := range defs {
		c, err := config.DecodeCheckJSON(raw)
		switch {
		case err != nil:
			p.log.Warn("an agent sent a cluster check from its config that does not decode; skipping it", "node", node, "index", i, "err", err)
			continue
		case c.Type == config.TypeExec || c.Placement != config.PlacementCluster:
			p.log.Warn("an agent sent a check from its config that cannot be a cluster check; skipping it", "node", node, "check", c.Name, "type", c.Type, "placement", c.Placement)
			continue
		}
		set[c.Name] = c
	}
	for _, name := range slices.Sorted(maps.Keys(set)) {
		c := set[name]
		cur, exists := stored[name]
		switch {
		case !exists:
			raw, err := canonicalCheck(c)
			if err != nil {
				return err
			}
			if _, err := a.parts.Raft.ApplyCommand(ctx, cluster.PutCheck{Name: name, Definition: raw}); err != nil {
				return fmt.Errorf("store cluster check %s of %s's config: %w", name, node, err)
			}
			p.log.Info("cluster check added from an agent's config", "check", name, "node", node)
			p.poke()
			p.noDrift(node, name)
		case sameDefinition(cur, c):
			p.noDrift(node, name)
		default:
			a.reportDrift(node, c)
		}
	}
	p.mu.Lock()
	if !p.leading {
		p.mu.Unlock()
		return fmt.Errorf("%w: the placement loop is not running yet", cluster.ErrNotLeader)
	}
	prev := p.sources[node]
	p.sources[node] = set
	p.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(prev)) {
		if _, still := set[name]; still {
			continue
		}
		p.noDrift(node, name)
		cur, exists := stored[name]
		if !exists || !sameDefinition(cur, prev[name]) || len(p.definedBy(name, node)) > 0 {
			continue
		}
		if _, err := a.parts.Raft.ApplyCommand(ctx, cluster.DeleteCheck{Name: name}); err != nil {
			return fmt.Errorf("remove cluster check %s dropped from %s's config: %w", name, node, err)
		}
		p.log.Info("cluster check removed: no agent's config defines it any more", "check", name, "node", node)
		p.poke()
	}
	return nil
}

// reportDrift reports, once per change, that node's config defines check c differently
// from the stored definition.
func (a *Agent) reportDrift(node string, c config.Check) {
	raw, err := canonicalCheck(c)
	if err != nil {
		return
	}
	key := node + "\x00" + c.Name
	p := a.pl
	p.mu.Lock()
	if !p.leading || bytes.Equal(p.drift[key], raw) {
		p.mu.Unlock()
		return
	}
	p.drift[key] = raw
	p.mu.Unlock()
	detail := fmt.Sprintf("cluster check %s in %s's config differs from the registered one; the registered one is kept (make the config files agree, or POST /v1/checks?replace=true)", c.Name, node)
	e := Event{Type: "drift", Node: node, Check: c.Name, Detail: detail}
	a.events.add(e)
	a.shipEvent(e)
	p.log.Warn("cluster check definitions differ: the registered one is kept", "check", c.Name, "node", node,
		"fix", "make the config files agree, or POST /v1/checks?replace=true")
}

// noDrift forgets a reported drift, so that a later conflict is reported again.
func (p *placement) noDrift(node, check string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leading {
		delete(p.drift, node+"\x00"+check)
	}
}

// codedError is an error with a sentinel and its own message; over agent RPC its code
// travels with it (see checkErrorCode).
type codedError struct {
	sentinel error
	msg      string
}

func (e codedError) Error() string { return e.msg }
func (e codedError) Unwrap() error { return e.sentinel }

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
