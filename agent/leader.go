package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/logstore"
)

// Leader talks to the aggregator (the Raft leader): locally when this agent is it, over
// agent RPC otherwise. Agents that are not Raft voters find the leader by the "leader" role
// it gossips. Safe for concurrent use.
type Leader struct {
	ms     *cluster.Membership
	raft   *cluster.Raft // nil when this agent is not a server
	client *http.Client
}

// NewLeader builds the leader client. raft is nil on agents with cluster.server: false.
func NewLeader(ms *cluster.Membership, raft *cluster.Raft, mux *cluster.Mux) *Leader {
	return &Leader{ms: ms, raft: raft, client: mux.HTTPClient()}
}

// Info returns the aggregator as this agent knows it: from Raft on a member of the Raft
// group, else from the "leader" role the aggregator gossips.
func (l *Leader) Info() (cluster.LeaderInfo, bool) {
	if l.member() {
		return l.raft.Leader()
	}
	for _, m := range l.ms.Members() {
		if m.Status == cluster.StatusAlive && hasRole(m.Meta.Roles, roleLeader) {
			return cluster.LeaderInfo{Name: m.Name, Address: m.Meta.RPCAddr}, true
		}
	}
	return cluster.LeaderInfo{}, false
}

// local reports whether this agent is the aggregator.
func (l *Leader) local() bool { return l.raft != nil && l.raft.IsLeader() }

// member reports whether this agent is in the Raft group, and so has a copy of the cluster
// state. A server beyond raft.voters is not.
func (l *Leader) member() bool { return l.raft != nil && l.raft.InConfiguration() }

// Roles gossiped by agents.
const (
	roleServer = "server" // may be a Raft voter (cluster.server)
	roleVoter  = "voter"  // is a Raft voter now
	roleLeader = "leader" // is the aggregator
)

func hasRole(roles []string, r string) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

// rpcError is an error answer of agent RPC, keeping its code so that sentinel errors
// survive the network.
type rpcError struct {
	status int
	code   string
	msg    string
}

func (e *rpcError) Error() string { return e.msg }

// Codes of agent RPC errors and the sentinels they stand for.
var rpcCodes = map[string]error{
	"not_leader":   cluster.ErrNotLeader,
	"no_leader":    cluster.ErrNoLeader,
	"name_taken":   cluster.ErrNameTaken,
	"not_owner":    cluster.ErrNotOwner,
	"unknown":      cluster.ErrUnknownName,
	"invalid":      logstore.ErrInvalid,
	"stale_term":   cluster.ErrStaleTerm,
	"bad_check":    cluster.ErrInvalidCommand,
	"out_of_order": cluster.ErrOutOfOrder,
	"no_streams":   cluster.ErrStreamUnsupported,
}

func (e *rpcError) Unwrap() error { return rpcCodes[e.code] }

// errorCode returns the RPC code of err, if it wraps one of the sentinels.
func errorCode(err error) string {
	// ErrNoLeader first: a not-leader error may wrap it.
	for _, code := range []string{"no_leader", "not_leader", "name_taken", "not_owner", "unknown", "invalid", "stale_term", "bad_check", "out_of_order", "no_streams"} {
		if errors.Is(err, rpcCodes[code]) {
			return code
		}
	}
	return ""
}

// statusOf maps an aggregator error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader):
		return http.StatusServiceUnavailable
	case errors.Is(err, cluster.ErrNameTaken), errors.Is(err, cluster.ErrNotOwner), errors.Is(err, cluster.ErrOutOfOrder),
		errors.Is(err, cluster.ErrStreamUnsupported):
		return http.StatusConflict
	case errors.Is(err, cluster.ErrUnknownName):
		return http.StatusNotFound
	case errors.Is(err, logstore.ErrInvalid), errors.Is(err, cluster.ErrInvalidCommand):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// writeAggError answers an aggregator error with its status, its RPC code and, when the
// aggregator is unreachable, a Retry-After.
func writeAggError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, api.Error{Error: err.Error(), Code: errorCode(err)})
}

// call sends one agent RPC to the aggregator. It fails with an error wrapping ErrNoLeader
// when no aggregator is known.
func (l *Leader) call(ctx context.Context, path string, in, out any) error {
	info, ok := l.Info()
	if !ok || info.Address == "" {
		return fmt.Errorf("%w: no aggregator elected yet", cluster.ErrNoLeader)
	}
	return l.callAt(ctx, info, path, in, out)
}

func (l *Leader) callAt(ctx context.Context, info cluster.LeaderInfo, path string, in, out any) error {
	err := postRPC(ctx, l.client, l.ms, "aggregator "+info.Name, info.Address, path, in, out)
	var re *rpcError
	if err != nil && !errors.As(err, &re) && ctx.Err() == nil {
		// Unreachable: as far as this agent can tell there is no aggregator.
		return fmt.Errorf("%w: %v", cluster.ErrNoLeader, err)
	}
	return err
}

// decodeForAggregator decodes the body of an agent RPC that only the aggregator answers,
// and answers not_leader itself (so the sender looks for the aggregator again) when this
// agent is not it. It reports whether the handler should go on.
func (a *Agent) decodeForAggregator(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	if !decodeBody(w, r, limit, v) {
		return false
	}
	if !a.parts.Leader.local() {
		writeAggError(w, cluster.ErrNotLeader)
		return false
	}
	return true
}

// rpcLogsRequest carries log groups to the aggregator.
type rpcLogsRequest struct {
	Node   string             `json:"node"`
	Groups []cluster.LogGroup `json:"groups"`
}

type rpcLogsResponse struct {
	Accepted []int `json:"accepted"`
}

// AppendLogStream implements cluster.LogSink: the Shipper's way to the aggregator.
func (l *Leader) AppendLogStream(ctx context.Context, node string, pos cluster.StreamPos, groups []cluster.LogGroup) ([]int, error) {
	if l.local() {
		return l.raft.AppendLogStream(ctx, node, pos, groups)
	}
	info, ok := l.Info()
	if !ok || info.Address == "" {
		return nil, fmt.Errorf("%w: no aggregator elected yet", cluster.ErrNoLeader)
	}
	// A call to an aggregator whose host vanished gets no answer and no reset; give up on it
	// as soon as another aggregator is known (or none is), so the records go to the new one.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if cur, ok := l.Info(); !ok || cur.Name != info.Name {
					cancel(fmt.Errorf("%w: the aggregator changed from %s", cluster.ErrNotLeader, info.Name))
					return
				}
			}
		}
	}()
	var out rpcLogsResponse
	var err error
	if pos == (cluster.StreamPos{}) {
		// Unordered: the JSON call every picket answers (a Shipper falls back to it when
		// the aggregator does not take streams).
		err = l.callAt(ctx, info, "/rpc/logs", rpcLogsRequest{Node: node, Groups: groups}, &out)
	} else {
		err = l.callStream(ctx, info, node, pos, groups, &out)
	}
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, cluster.ErrNotLeader) {
			return nil, cause
		}
		return nil, err
	}
	return out.Accepted, nil
}

// callStream sends a call of an ordered log stream to the aggregator, binary encoded
// (cluster.EncodeLogCall). An aggregator without that RPC (an older picket answers 404)
// gives an error wrapping cluster.ErrStreamUnsupported.
func (l *Leader) callStream(ctx context.Context, info cluster.LeaderInfo, node string, pos cluster.StreamPos, groups []cluster.LogGroup, out *rpcLogsResponse) error {
	body, err := cluster.EncodeLogCall(nil, node, pos, groups)
	if err != nil {
		return err
	}
	err = postRPCBody(ctx, l.client, l.ms, "aggregator "+info.Name, info.Address, "/rpc/logs/stream", logCallContentType, body, out)
	var re *rpcError
	switch {
	case errors.As(err, &re) && re.status == http.StatusNotFound:
		return fmt.Errorf("%w: %s", cluster.ErrStreamUnsupported, re.msg)
	case err != nil && re == nil && ctx.Err() == nil:
		// Unreachable: as far as this agent can tell there is no aggregator.
		return fmt.Errorf("%w: %v", cluster.ErrNoLeader, err)
	}
	return err
}

// logCallContentType is the media type of cluster.EncodeLogCall bodies.
const logCallContentType = "application/vnd.picket.log-call"

func (a *Agent) rpcLogStream(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, maxRPCBody*4)
	if !ok {
		return
	}
	node, pos, groups, err := cluster.DecodeLogCall(body)
	if err != nil {
		writeAggError(w, err)
		return
	}
	if a.parts.Raft == nil {
		writeAggError(w, cluster.ErrNotLeader)
		return
	}
	acc, err := a.parts.Raft.AppendLogStream(r.Context(), node, pos, groups)
	if err != nil {
		writeAggError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rpcLogsResponse{Accepted: acc})
}

// waitLeader polls until an aggregator is known or ctx ends.
func (l *Leader) waitLeader(ctx context.Context) (cluster.LeaderInfo, error) {
	for {
		if info, ok := l.Info(); ok {
			return info, nil
		}
		select {
		case <-ctx.Done():
			return cluster.LeaderInfo{}, fmt.Errorf("%w: %v", cluster.ErrNoLeader, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
