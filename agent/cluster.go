package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

// maxSmallBody bounds small JSON bodies (join, keyring).
const maxSmallBody = 64 << 10

// placementNodes converts members for the placement functions.
func placementNodes(ms []cluster.Member) []cluster.PlacementNode {
	out := make([]cluster.PlacementNode, 0, len(ms))
	for _, m := range ms {
		out = append(out, cluster.PlacementNode{
			Name: m.Name, Alive: m.Status == cluster.StatusAlive, Load: m.Meta.Load, Health: m.Meta.Health,
		})
	}
	return out
}

func memberView(m cluster.Member) api.Member {
	roles := m.Meta.Roles
	if roles == nil {
		roles = []string{}
	}
	tags := m.Meta.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return api.Member{
		Name: m.Name, Address: m.Address, Status: m.Status, Load: m.Meta.Load, Roles: roles,
		Version: m.Meta.Version, Tags: tags, RPCAddress: m.Meta.RPCAddr, HTTPAddress: m.Meta.HTTPAddr,
		Health: m.Meta.Health, ConfigHash: m.Meta.ConfigHash,
	}
}

func (a *Agent) handleMembers(w http.ResponseWriter, _ *http.Request) {
	ms := a.parts.Membership.Members()
	out := make([]api.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberView(m))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Agent) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if !decodeBody(w, r, maxSmallBody, &req) {
		return
	}
	if len(req.Addresses) == 0 {
		writeError(w, http.StatusBadRequest, errors.New(`give at least one gossip address: {"addresses": ["10.0.0.1:7946"]}`))
		return
	}
	n, err := a.parts.Membership.Join(req.Addresses)
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, api.JoinResponse{Joined: n})
}

// handleLeave leaves the cluster gracefully, answers, and then stops the agent: a left
// agent cannot rejoin without a restart.
func (a *Agent) handleLeave(w http.ResponseWriter, _ *http.Request) {
	if err := a.parts.Membership.Leave(0); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"left": true})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	a.stop(errors.New("left the cluster on request"))
}

func (a *Agent) handlePing(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if name == a.Config().NodeName {
		writeError(w, http.StatusBadRequest, errors.New("that is this agent; ping another member"))
		return
	}
	rtt, err := a.parts.Membership.Ping(ctx, name)
	switch {
	case errors.Is(err, cluster.ErrUnknownMember):
		writeError(w, http.StatusNotFound, err)
	case err != nil:
		writeError(w, http.StatusGatewayTimeout, err)
	default:
		writeJSON(w, http.StatusOK, api.Ping{Name: name, RTTSeconds: rtt.Seconds()})
	}
}

// aliveMembers returns the alive members, sorted by name.
func (a *Agent) aliveMembers() []cluster.Member {
	var out []cluster.Member
	for _, m := range a.parts.Membership.Members() {
		if m.Status == cluster.StatusAlive {
			out = append(out, m)
		}
	}
	return out
}

// findMember returns the alive member called name.
func (a *Agent) findMember(name string) (cluster.Member, error) {
	var known []string
	for _, m := range a.parts.Membership.Members() {
		if m.Name == name {
			if m.Status != cluster.StatusAlive {
				return cluster.Member{}, fmt.Errorf("node %q is %s", name, m.Status)
			}
			return m, nil
		}
		known = append(known, m.Name)
	}
	return cluster.Member{}, fmt.Errorf("unknown node %q (members: %s)", name, strings.Join(known, ", "))
}

// runRemote runs c on the named node, on every alive node, or on the least-loaded one.
func (a *Agent) runRemote(ctx context.Context, c config.Check, node string, all bool) ([]api.Result, int, error) {
	switch {
	case node != "" && all:
		return nil, http.StatusBadRequest, errors.New(`give "node" or "all", not both`)
	case node != "":
		m, err := a.findMember(node)
		if err != nil {
			return nil, http.StatusNotFound, err
		}
		return []api.Result{a.runOn(ctx, m, c)}, http.StatusOK, nil
	case all:
		ms := a.aliveMembers()
		out := make([]api.Result, len(ms))
		var wg sync.WaitGroup
		for i, m := range ms {
			wg.Go(func() { out[i] = a.runOn(ctx, m, c) })
		}
		wg.Wait()
		return out, http.StatusOK, nil
	default:
		ms := a.parts.Membership.Members()
		best := cluster.LeastLoaded(placementNodes(ms), 1, nil, cluster.DefaultPlacementPolicy())
		if len(best) == 0 {
			return nil, http.StatusServiceUnavailable, errors.New("no alive member to run the check on")
		}
		m, err := a.findMember(best[0])
		if err != nil {
			return nil, http.StatusServiceUnavailable, err
		}
		return []api.Result{a.runOn(ctx, m, c)}, http.StatusOK, nil
	}
}

// Keyring: the HTTP API changes every alive member's keyring through agent RPC.

type rpcKeyringRequest struct {
	Op  string `json:"op"` // list | install | use | remove
	Key string `json:"key,omitempty"`
}

type rpcKeyringResponse struct {
	Keys []string `json:"keys"` // primary first
}

func (a *Agent) rpcKeyring(w http.ResponseWriter, r *http.Request) {
	var req rpcKeyringRequest
	if !decodeBody(w, r, maxSmallBody, &req) {
		return
	}
	if err := a.keyringLocal(req); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, cluster.ErrNoKeyring) {
			status = http.StatusConflict
		}
		writeError(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, rpcKeyringResponse{Keys: a.parts.Membership.ListKeys()})
}

func (a *Agent) keyringLocal(req rpcKeyringRequest) error {
	m := a.parts.Membership
	switch req.Op {
	case "list":
		return nil
	case "install":
		return m.InstallKey(req.Key)
	case "use":
		return m.UseKey(req.Key)
	case "remove":
		return m.RemoveKey(req.Key)
	}
	return fmt.Errorf("unknown keyring op %q: want list, install, use or remove", req.Op)
}

// keyringAll applies req on every alive member and summarises.
func (a *Agent) keyringAll(ctx context.Context, req rpcKeyringRequest) api.Keyring {
	ms := a.aliveMembers()
	type answer struct {
		keys []string
		err  error
	}
	answers := make([]answer, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			if m.Name == a.Config().NodeName {
				err := a.keyringLocal(req)
				answers[i] = answer{a.parts.Membership.ListKeys(), err}
				return
			}
			var resp rpcKeyringResponse
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := a.rpcCall(ctx, m, "/rpc/keyring", req, &resp)
			answers[i] = answer{resp.Keys, err}
		})
	}
	wg.Wait()
	out := api.Keyring{Nodes: len(ms), Errors: map[string]string{}}
	counts := map[string]*api.KeyInfo{}
	for i, ans := range answers {
		if ans.err != nil {
			out.Errors[ms[i].Name] = ans.err.Error()
			continue
		}
		for j, k := range ans.keys {
			ki := counts[k]
			if ki == nil {
				ki = &api.KeyInfo{Key: k}
				counts[k] = ki
			}
			ki.Nodes++
			if j == 0 {
				ki.PrimaryOn++
			}
		}
	}
	for _, ki := range counts {
		out.Keys = append(out.Keys, *ki)
	}
	sort.Slice(out.Keys, func(i, j int) bool {
		if out.Keys[i].PrimaryOn != out.Keys[j].PrimaryOn {
			return out.Keys[i].PrimaryOn > out.Keys[j].PrimaryOn
		}
		return out.Keys[i].Key < out.Keys[j].Key
	})
	return out
}

func (a *Agent) handleKeyringList(w http.ResponseWriter, r *http.Request) {
	a.writeKeyring(w, a.keyringAll(r.Context(), rpcKeyringRequest{Op: "list"}))
}

func (a *Agent) handleKeyringChange(w http.ResponseWriter, r *http.Request) {
	var req api.KeyringRequest
	if !decodeBody(w, r, maxSmallBody, &req) {
		return
	}
	op := req.Op
	if r.Method == http.MethodDelete {
		op = "remove"
	}
	if op != "install" && op != "use" && op != "remove" {
		writeError(w, http.StatusBadRequest, fmt.Errorf(`"op" %q: want install or use (DELETE removes)`, req.Op))
		return
	}
	if _, err := cluster.ParseKey(req.Key); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	a.log.Info("changing the gossip keyring of every member", "op", op)
	a.writeKeyring(w, a.keyringAll(r.Context(), rpcKeyringRequest{Op: op, Key: req.Key}))
}

// writeKeyring answers 200 when every member answered, else 502 with the summary, whose
// errors name the members that failed.
func (a *Agent) writeKeyring(w http.ResponseWriter, k api.Keyring) {
	status := http.StatusOK
	if len(k.Errors) > 0 {
		status = http.StatusBadGateway
		names := make([]string, 0, len(k.Errors))
		for n, e := range k.Errors {
			names = append(names, n+": "+e)
		}
		sort.Strings(names)
		k.Error = "keyring change failed on " + strings.Join(names, "; ")
	}
	writeJSON(w, status, k)
}

// pulse is the agent's shared once-a-second beat. The loops that poll (metadata, result
// and config-check retries) wait on it rather than on tickers of their own, so they wake
// together and an idle agent pays for one wake-up a second instead of one per loop.
type pulse struct {
	mu sync.Mutex
	ch chan struct{}
}

func newPulse() *pulse { return &pulse{ch: make(chan struct{})} }

// next returns a channel closed at the next beat.
func (p *pulse) next() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ch
}

func (p *pulse) beat() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.ch)
	p.ch = make(chan struct{})
}

// refreshMeta gossips this node's load and health every second until ctx ends (the
// membership only broadcasts meaningful changes) and beats the agent's pulse.
func (a *Agent) refreshMeta(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var leader string
	for {
		a.pulse.beat()
		a.updateRoles()
		if a.parts.Raft == nil {
			// Agents outside Raft learn about a new aggregator by gossip.
			if info, ok := a.parts.Leader.Info(); ok && info.Name != leader {
				leader = info.Name
				a.leaderEvent(info, true)
				a.parts.Shipper.Kick()
			}
		}
		load := a.parts.Load.Load()
		hash := a.Config().Hash()
		if err := a.parts.Membership.UpdateMeta(func(m *cluster.Meta) {
			m.Load = load
			m.ConfigHash = hash
		}); err != nil {
			a.log.Warn("cannot update gossiped metadata", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// watchMembership turns membership events into /v1/events entries until ctx ends.
func (a *Agent) watchMembership(ctx context.Context) error {
	defer a.unsubscribeEvents()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-a.memberEvents:
			if !ok {
				return nil
			}
			e := Event{Time: ev.Time, Type: ev.Type, Node: ev.Node, Detail: ev.Detail}
			a.events.add(e)
			// The aggregator's view goes to the cluster log once, not once per observer.
			if ev.Type != cluster.EventUpdate && a.parts.Leader.local() {
				a.shipEvent(e)
			}
		}
	}
}
