package agent

// Cluster checks on every agent: learning the assignment (voters from their copy of the
// Raft state, other agents by long-polling the aggregator), running the checks assigned
// here next to the local ones, reporting their results to the aggregator over agent RPC
// (never through Raft), sending the config file's cluster checks to the aggregator, and
// the /v1/checks API.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/picket-dev/picket/checks"
	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

const (
	// assignmentsLongPoll bounds how long the aggregator holds a poll for assignments
	// that did not change.
	assignmentsLongPoll = 10 * time.Second
	// resultsBatch is how long the reporter waits for more results before sending.
	resultsBatch = 100 * time.Millisecond
	// resultsMaxBatch bounds the reports of one RPC.
	resultsMaxBatch = 500
	// configChecksResend is how often the config file's cluster checks are sent again even
	// when nothing changed, so an aggregator that lost them (restarted, re-elected) learns
	// them without waiting for a reload.
	configChecksResend = 30 * time.Second
	// resultsResend is how often every latest result is sent again, for the same reason.
	resultsResend = 30 * time.Second

	// partialHeader marks a GET /v1/checks answer made without the aggregator.
	partialHeader = "X-Picket-Partial"
)

// runner is this agent's share of the cluster checks. Safe for concurrent use.
type runner struct {
	applyMu sync.Mutex // serialises applyChecks

	mu      sync.Mutex
	mine    map[string]assignedCheck // the checks assigned to this node
	clashes map[string]bool          // names clashing with a local check, logged

	syncKick chan struct{} // capacity 1: send the config's cluster checks now
	quit     chan struct{} // closed when the agent stops: ends held long-polls
	quitOnce sync.Once
}

// assignedCheck is one cluster check this node runs.
type assignedCheck struct {
	def   config.Check
	raw   string
	term  uint64   // term of the leader that assigned it
	nodes []string // every node that runs it
}

func newRunner() *runner {
	return &runner{syncKick: make(chan struct{}, 1), quit: make(chan struct{}), clashes: map[string]bool{}}
}

func (r *runner) stop() { r.quitOnce.Do(func() { close(r.quit) }) }

// defCache decodes stored check definitions once per change. Safe for concurrent use.
type defCache struct {
	log func(msg string, args ...any)
	mu  sync.Mutex
	m   map[string]decodedDef
}

type decodedDef struct {
	raw string
	c   config.Check
	err error
}

func newDefCache(warn func(msg string, args ...any)) *defCache {
	return &defCache{log: warn, m: map[string]decodedDef{}}
}

// decode returns the check stored as raw under name; a definition that does not decode
// is logged once.
func (d *defCache) decode(name string, raw json.RawMessage) (config.Check, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.m[name]; ok && e.raw == string(raw) {
		return e.c, e.err
	}
	c, err := config.DecodeCheckJSON(raw)
	if err == nil && c.Name != name {
		err = fmt.Errorf("the definition is named %q", c.Name)
	}
	if err != nil {
		err = fmt.Errorf("cluster check %s: %w", name, err)
		d.log("a stored cluster check definition cannot be used; it is not run (replace it with POST /v1/checks?replace=true)", "check", name, "err", err)
	}
	if len(d.m) > 4096 {
		clear(d.m)
	}
	d.m[name] = decodedDef{raw: string(raw), c: c, err: err}
	return c, err
}

// cached returns the check last decoded under name, if it decoded.
func (d *defCache) cached(name string) (config.Check, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[name]
	return e.c, ok && e.err == nil
}

// applyChecks gives the scheduler the config file's local checks and the cluster checks
// assigned here, in one Set. Cluster checks new to the scheduler run at once: a check
// that was just re-homed must not wait for a start jitter.
func (a *Agent) applyChecks() {
	r := a.runner
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	cfg := a.Config()
	var defs []config.Check
	local := map[string]bool{}
	for _, c := range cfg.Checks {
		if c.Placement != config.PlacementCluster {
			defs = append(defs, c)
			local[c.Name] = true
		}
	}
	startNow := map[string]bool{}
	r.mu.Lock()
	for _, name := range slices.Sorted(maps.Keys(r.mine)) {
		if local[name] {
			if !r.clashes[name] {
				r.clashes[name] = true
				a.log.Warn("a cluster check assigned to this node has the name of a local check; the local check runs, the cluster check does not (rename one of them)", "check", name)
			}
			continue
		}
		delete(r.clashes, name)
		defs = append(defs, r.mine[name].def)
		startNow[name] = true
	}
	r.mu.Unlock()
	a.parts.Scheduler.SetWith(defs, checks.SetOptions{StartNow: startNow})
}

// setAssignments takes a view of the assignments (at least those of this node) and the
// definitions of the checks assigned here, and applies it when this node's share changed.
func (a *Agent) setAssignments(all map[string]cluster.CheckAssignment, defs map[string]json.RawMessage) {
	node := a.Config().NodeName
	mine := map[string]assignedCheck{}
	for name, as := range all {
		if !slices.Contains(as.Nodes, node) {
			continue
		}
		raw, ok := defs[name]
		if !ok {
			continue
		}
		c, err := a.defs.decode(name, raw)
		if err != nil || c.Type == config.TypeExec {
			continue
		}
		c.Placement = config.PlacementCluster
		mine[name] = assignedCheck{def: c, raw: string(raw), term: as.Term, nodes: as.Nodes}
	}
	r := a.runner
	r.mu.Lock()
	old := r.mine
	changed := len(old) != len(mine)
	for name, m := range mine {
		o, ok := old[name]
		changed = changed || !ok || o.raw != m.raw || o.term != m.term || !slices.Equal(o.nodes, m.nodes)
	}
	r.mine = mine
	r.mu.Unlock()
	if !changed {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(mine)) {
		if o, ok := old[name]; !ok {
			a.log.Info("cluster check assigned to this node", "check", name, "term", mine[name].term)
		} else if o.raw != mine[name].raw {
			a.log.Info("cluster check definition changed", "check", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(old)) {
		if _, ok := mine[name]; !ok {
			a.log.Info("cluster check no longer assigned to this node", "check", name)
		}
	}
	a.applyChecks()
}

// assigned returns a copy of the checks assigned here.
func (r *runner) assigned() map[string]assignedCheck {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.mine)
}

// followAssignments keeps this agent's share of the cluster checks current until ctx
// ends: a voter reads its own copy of the Raft state at every change; an agent outside
// Raft long-polls the aggregator. When neither is reachable the last assignment keeps
// running.
func (a *Agent) followAssignments(ctx context.Context) error {
	defer a.runner.stop()
	if rn := a.parts.Raft; rn != nil {
		for {
			changed := rn.StateChanged()
			all, _ := rn.Assignments()
			a.setAssignments(all, rn.Checks())
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
		}
	}
	node := a.Config().NodeName
	version := ""
	var lastErr string
	for {
		var resp rpcAssignmentsResponse
		cctx, cancel := context.WithTimeout(ctx, assignmentsLongPoll+5*time.Second)
		err := a.parts.Leader.call(cctx, "/rpc/checks/assignments", rpcAssignmentsRequest{Node: node, Version: version}, &resp)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if err.Error() != lastErr {
				lastErr = err.Error()
				logTransient(a.log, err, "cannot learn the cluster check assignments from the aggregator; the last ones keep running")
			}
			version = ""
			if !sleepCtx(ctx, time.Second) {
				return nil
			}
			continue
		}
		if lastErr != "" {
			a.log.Info("cluster check assignments reachable again")
			lastErr = ""
		}
		version = resp.Version
		a.setAssignments(resp.Assignments, resp.Checks)
	}
}

// rpcAssignmentsRequest asks the aggregator for the assignments, waiting up to
// assignmentsLongPoll while they are still those of Version.
type rpcAssignmentsRequest struct {
	Node    string `json:"node"`
	Version string `json:"version"`
}

// rpcAssignmentsResponse carries the assignments of the checks assigned to the asking
// node, and their definitions.
type rpcAssignmentsResponse struct {
	Version     string                             `json:"version"`
	Assignments map[string]cluster.CheckAssignment `json:"assignments"`
	Checks      map[string]json.RawMessage         `json:"checks"`
}

func (a *Agent) assignmentsFor(node string) rpcAssignmentsResponse {
	all, _ := a.parts.Raft.Assignments()
	defs := a.parts.Raft.Checks()
	out := rpcAssignmentsResponse{Assignments: map[string]cluster.CheckAssignment{}, Checks: map[string]json.RawMessage{}}
	for name, as := range all {
		if raw, ok := defs[name]; ok && slices.Contains(as.Nodes, node) {
			out.Assignments[name] = as
			out.Checks[name] = raw
		}
	}
	h := fnv.New64a()
	enc := json.NewEncoder(h) // map keys are sorted: equal views hash equally
	enc.Encode(out.Assignments)
	enc.Encode(out.Checks)
	out.Version = fmt.Sprintf("%016x", h.Sum64())
	return out
}

func (a *Agent) rpcAssignments(w http.ResponseWriter, r *http.Request) {
	var req rpcAssignmentsRequest
	if !a.decodeForAggregator(w, r, maxSmallBody, &req) {
		return
	}
	wait := time.NewTimer(assignmentsLongPoll)
	defer wait.Stop()
	for {
		changed := a.parts.Raft.StateChanged()
		resp := a.assignmentsFor(req.Node)
		if resp.Version != req.Version {
			writeJSON(w, http.StatusOK, resp)
			return
		}
		select {
		case <-changed:
		case <-wait.C:
			writeJSON(w, http.StatusOK, resp)
			return
		case <-a.runner.quit:
			writeJSON(w, http.StatusOK, resp)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// Results: runner → aggregator.

// resultReport is one cluster check result a runner sends to the aggregator, tagged with
// the term of the assignment it ran under.
type resultReport struct {
	Check    string        `json:"check"`
	Term     uint64        `json:"term"`
	Status   checks.Status `json:"status"` // the node's state, thresholds applied
	Flapping bool          `json:"flapping"`
	Since    time.Time     `json:"since"`
	Result   api.Result    `json:"result"`
}

type rpcResultsRequest struct {
	Node    string         `json:"node"`
	Results []resultReport `json:"results"`
}

type rpcResultsResponse struct {
	Accepted int `json:"accepted"`
}

func (a *Agent) rpcResults(w http.ResponseWriter, r *http.Request) {
	var req rpcResultsRequest
	if !decodeBody(w, r, maxRPCBody, &req) {
		return
	}
	n, err := a.acceptResults(req.Node, req.Results)
	if err != nil {
		writeAggError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rpcResultsResponse{Accepted: n})
}

// reportResults sends the results of the cluster checks run here to the aggregator until
// ctx ends: after each new result (batched for resultsBatch), again to a new aggregator,
// and all of them every resultsResend. A failed send is retried at the agent's pulse (every second) with the
// latest result of each check; older ones are superseded, not lost.
func (a *Agent) reportResults(ctx context.Context) error {
	sent := map[string]time.Time{} // check → time of the result last delivered
	to := ""                       // the aggregator (name and term) sent is about
	var lastErr string
	resend := time.NewTicker(resultsResend)
	defer resend.Stop()
	batch := time.NewTimer(time.Hour)
	defer batch.Stop()
	for {
		changed := a.parts.Scheduler.Changed()
		if err := a.flushResults(ctx, sent, &to); err != nil {
			if err.Error() != lastErr && ctx.Err() == nil {
				lastErr = err.Error()
				logTransient(a.log, err, "cannot report cluster check results to the aggregator; retrying with the latest ones")
			}
		} else if lastErr != "" {
			a.log.Info("cluster check results reach the aggregator again")
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			batch.Reset(resultsBatch)
			select {
			case <-ctx.Done():
				return nil
			case <-batch.C:
			}
		case <-a.pulse.next(): // retry, or notice a new aggregator
		case <-resend.C:
			clear(sent)
		}
	}
}

// flushResults sends the results not yet delivered to the current aggregator.
func (a *Agent) flushResults(ctx context.Context, sent map[string]time.Time, to *string) error {
	info, ok := a.parts.Leader.Info()
	if !ok {
		return nil // nothing to send to; the latest results go when one is elected
	}
	if key := fmt.Sprintf("%s/%d", info.Name, info.Term); key != *to {
		clear(sent)
		*to = key
	}
	mine := a.runner.assigned()
	if len(mine) == 0 {
		return nil
	}
	node := a.Config().NodeName
	var reps []resultReport
	for _, s := range a.parts.Scheduler.Snapshot() {
		as, ok := mine[s.Check.Name]
		if !ok || s.Check.Placement != config.PlacementCluster || s.Last.Time.IsZero() || sent[s.Check.Name].Equal(s.Last.Time) {
			continue
		}
		res := api.NewResult(node, s.Last)
		res.Phases = nil // not part of the cluster view; their JSON does not decode back
		reps = append(reps, resultReport{
			Check: s.Check.Name, Term: as.term, Status: s.Status, Flapping: s.Flapping, Since: s.Since.UTC(), Result: res,
		})
	}
	for len(reps) > 0 {
		n := min(len(reps), resultsMaxBatch)
		chunk := reps[:n]
		reps = reps[n:]
		if a.parts.Leader.local() {
			if _, err := a.acceptResults(node, chunk); err != nil {
				return err
			}
		} else {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var out rpcResultsResponse
			err := a.parts.Leader.call(cctx, "/rpc/checks/results", rpcResultsRequest{Node: node, Results: chunk}, &out)
			cancel()
			if err != nil {
				return err
			}
		}
		for _, rep := range chunk {
			sent[rep.Check] = rep.Result.Time
		}
	}
	return nil
}

// Config file's cluster checks: agent → aggregator.

type rpcSyncRequest struct {
	Node   string            `json:"node"`
	Checks []json.RawMessage `json:"checks"`
}

func (a *Agent) rpcSync(w http.ResponseWriter, r *http.Request) {
	var req rpcSyncRequest
	if !a.decodeForAggregator(w, r, maxRPCBody, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.syncConfigChecks(ctx, req.Node, req.Checks); err != nil {
		writeAggError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// kickConfigChecks asks sendConfigChecks to send the config's cluster checks now.
func (a *Agent) kickConfigChecks() {
	select {
	case a.runner.syncKick <- struct{}{}:
	default:
	}
}

// sendConfigChecks sends the config file's cluster checks to the aggregator until ctx
// ends: at start, after each reload, whenever the aggregator changes, and every
// configChecksResend; a failed send is retried every second.
func (a *Agent) sendConfigChecks(ctx context.Context) error {
	var sentKey string
	var sentAt time.Time
	var lastErr string
	gen := 0
	for {
		if info, ok := a.parts.Leader.Info(); ok {
			key := fmt.Sprintf("%s/%d/%d", info.Name, info.Term, gen)
			if key != sentKey || time.Since(sentAt) >= configChecksResend {
				if err := a.sendConfigChecksOnce(ctx); err != nil {
					if err.Error() != lastErr && ctx.Err() == nil {
						lastErr = err.Error()
						logTransient(a.log, err, "cannot send this config's cluster checks to the aggregator; retrying")
					}
				} else {
					sentKey, sentAt, lastErr = key, time.Now(), ""
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.pulse.next():
		case <-a.runner.syncKick:
			gen++
		}
	}
}

func (a *Agent) sendConfigChecksOnce(ctx context.Context) error {
	cfg := a.Config()
	defs := []json.RawMessage{}
	for _, c := range cfg.Checks {
		if c.Placement != config.PlacementCluster {
			continue
		}
		raw, err := canonicalCheck(c)
		if err != nil {
			return err
		}
		defs = append(defs, raw)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if a.parts.Leader.local() {
		return a.syncConfigChecks(ctx, cfg.NodeName, defs)
	}
	return a.parts.Leader.call(ctx, "/rpc/checks/sync", rpcSyncRequest{Node: cfg.NodeName, Checks: defs}, nil)
}

// Definitions and the cluster view: API → aggregator.

// rpcCheckRequest is one operation on the cluster checks, run by the aggregator.
type rpcCheckRequest struct {
	Op         string          `json:"op"` // put | delete | view
	Name       string          `json:"name,omitempty"`
	Definition json.RawMessage `json:"definition,omitempty"`
	Replace    bool            `json:"replace,omitempty"`
}

type rpcCheckResponse struct {
	Result  string      `json:"result,omitempty"`
	Warning string      `json:"warning,omitempty"`
	Checks  []api.Check `json:"checks,omitempty"`
}

// checkChange answers POST and DELETE /v1/checks.
type checkChange struct {
	Name    string `json:"name"`
	Result  string `json:"result"` // created | replaced | unchanged | deleted
	Warning string `json:"warning,omitempty"`
}

// checkOp runs op on the aggregator, locally or over agent RPC.
func (a *Agent) checkOp(ctx context.Context, req rpcCheckRequest) (rpcCheckResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if a.parts.Leader.local() {
		return a.localCheckOp(ctx, req)
	}
	var out rpcCheckResponse
	err := a.parts.Leader.call(ctx, "/rpc/checks", req, &out)
	var re *rpcError
	if errors.As(err, &re) {
		switch re.code {
		case codeCheckExists:
			err = codedError{errCheckExists, re.msg}
		case codeUnknownCheck:
			err = codedError{errUnknownCheck, re.msg}
		case codeExecRefused:
			err = codedError{errExecOverAPI, re.msg}
		}
	}
	return out, err
}

func (a *Agent) localCheckOp(ctx context.Context, req rpcCheckRequest) (rpcCheckResponse, error) {
	switch req.Op {
	case "put":
		c, err := decodeClusterCheck(req.Definition)
		if err != nil {
			return rpcCheckResponse{}, err
		}
		res, err := a.putCheck(ctx, c, req.Replace)
		return rpcCheckResponse{Result: res}, err
	case "delete":
		warn, err := a.deleteCheck(ctx, req.Name)
		return rpcCheckResponse{Result: "deleted", Warning: warn}, err
	case "view":
		return rpcCheckResponse{Checks: a.clusterView()}, nil
	}
	return rpcCheckResponse{}, fmt.Errorf("%w: unknown check op %q", cluster.ErrInvalidCommand, req.Op)
}

func (a *Agent) rpcChecks(w http.ResponseWriter, r *http.Request) {
	var req rpcCheckRequest
	if !a.decodeForAggregator(w, r, maxRPCBody, &req) {
		return
	}
	out, err := a.localCheckOp(r.Context(), req)
	if err != nil {
		writeCheckError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// writeCheckError answers an error of a cluster check operation.
func writeCheckError(w http.ResponseWriter, err error) {
	for _, e := range []struct {
		sentinel error
		status   int
		code     string
	}{
		{errCheckExists, http.StatusConflict, codeCheckExists},
		{errUnknownCheck, http.StatusNotFound, codeUnknownCheck},
		{errExecOverAPI, http.StatusForbidden, codeExecRefused},
	} {
		if errors.Is(err, e.sentinel) {
			writeJSON(w, e.status, api.Error{Error: err.Error(), Code: e.code})
			return
		}
	}
	var ce config.Errors
	if errors.As(err, &ce) {
		writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error(), Code: "invalid"})
		return
	}
	writeAggError(w, err)
}

// decodeClusterCheck decodes the body of POST /v1/checks: the YAML schema as JSON, with
// placement cluster (given or left out). exec checks are refused.
func decodeClusterCheck(body []byte) (config.Check, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		_, err := config.DecodeCheckJSON(body) // explains what is wrong with the JSON
		if err == nil {
			err = errors.New("check: must be a JSON object")
		}
		return config.Check{}, err
	}
	var typ string
	if json.Unmarshal(fields["type"], &typ) == nil && typ == config.TypeExec {
		return config.Check{}, errExecOverAPI
	}
	if raw, ok := fields["placement"]; ok && string(raw) != "null" {
		var p string
		if json.Unmarshal(raw, &p) == nil && p != config.PlacementCluster {
			return config.Check{}, config.Errors{{Path: "check.placement", Msg: fmt.Sprintf(
				"%q: POST /v1/checks registers cluster checks; leave placement out or set it to %q (local checks belong in an agent's config file)", p, config.PlacementCluster)}}
		}
	}
	fields["placement"] = json.RawMessage(`"cluster"`)
	body, err := json.Marshal(fields)
	if err != nil {
		return config.Check{}, err
	}
	c, err := config.DecodeCheckJSON(body)
	if err != nil {
		return config.Check{}, err
	}
	if c.Name == "" || strings.ContainsFunc(c.Name, func(r rune) bool { return r == '/' || r <= ' ' }) {
		return config.Check{}, config.Errors{{Path: "check.name", Msg: fmt.Sprintf("%q: a cluster check needs a name without '/' or white space", c.Name)}}
	}
	return c, nil
}

func (a *Agent) handlePostCheck(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, cluster.MaxCheckJSONBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body is larger than %d bytes", int64(cluster.MaxCheckJSONBytes)))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Errorf("read body: %w", err))
		return
	}
	c, err := decodeClusterCheck(body)
	if err != nil {
		writeCheckError(w, err)
		return
	}
	raw, err := canonicalCheck(c)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	q := r.URL.Query().Get("replace")
	out, err := a.checkOp(r.Context(), rpcCheckRequest{Op: "put", Definition: raw, Replace: q == "true" || q == "1"})
	if err != nil {
		writeCheckError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, checkChange{Name: c.Name, Result: out.Result, Warning: out.Warning})
}

func (a *Agent) handleDeleteCheck(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	out, err := a.checkOp(r.Context(), rpcCheckRequest{Op: "delete", Name: name})
	if err != nil {
		writeCheckError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, checkChange{Name: name, Result: out.Result, Warning: out.Warning})
}

// handleChecks answers GET /v1/checks: this agent's local checks, and every cluster check
// as the aggregator sees it. Without a reachable aggregator, it shows the cluster checks
// this agent runs, with its own results only, and says so in the X-Picket-Partial header.
func (a *Agent) handleChecks(w http.ResponseWriter, r *http.Request) {
	out := a.localChecks()
	var cl []api.Check
	var err error
	if a.parts.Leader.local() {
		cl = a.clusterView()
	} else {
		var resp rpcCheckResponse
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		err = a.parts.Leader.call(ctx, "/rpc/checks", rpcCheckRequest{Op: "view"}, &resp)
		cancel()
		cl = resp.Checks
	}
	if err != nil {
		w.Header().Set(partialHeader, "no aggregator reachable ("+oneLineErr(err)+"): cluster checks show only what this agent runs")
		cl = a.runningClusterChecks()
	}
	out = append(out, cl...)
	slices.SortStableFunc(out, func(x, y api.Check) int { return strings.Compare(x.Name, y.Name) })
	writeJSON(w, http.StatusOK, out)
}

// localChecks is the view of this agent's local checks.
func (a *Agent) localChecks() []api.Check {
	node := a.Config().NodeName
	out := []api.Check{}
	for _, s := range a.parts.Scheduler.Snapshot() {
		if s.Check.Placement == config.PlacementCluster {
			continue
		}
		out = append(out, a.checkView(s, []string{node}))
	}
	return out
}

// runningClusterChecks is the view of the cluster checks this agent runs, with its own
// results only.
func (a *Agent) runningClusterChecks() []api.Check {
	mine := a.runner.assigned()
	out := []api.Check{}
	for _, s := range a.parts.Scheduler.Snapshot() {
		as, ok := mine[s.Check.Name]
		if !ok || s.Check.Placement != config.PlacementCluster {
			continue
		}
		out = append(out, a.checkView(s, slices.Clone(as.nodes)))
	}
	return out
}

func (a *Agent) checkView(s checks.CheckStatus, nodes []string) api.Check {
	res := api.NewResult(a.Config().NodeName, s.Last)
	if s.Last.Time.IsZero() {
		res.Status = checks.Unknown.String() // no run yet
	}
	return api.Check{
		Name: s.Check.Name, Type: s.Check.Type, Placement: s.Check.Placement, Nodes: nodes,
		Status: s.Status.String(), Flapping: s.Flapping, Since: s.Since.UTC(), Output: s.Last.Output, Results: []api.Result{res},
	}
}

// logTransient logs err at debug level when it only says that no aggregator is reachable
// right now (elections and lost quorums are logged where they are seen), else as a warning.
func logTransient(log *slog.Logger, err error, msg string) {
	if errors.Is(err, cluster.ErrNoLeader) || errors.Is(err, cluster.ErrNotLeader) {
		log.Debug(msg, "err", err)
		return
	}
	log.Warn(msg, "err", err)
}

func oneLineErr(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
