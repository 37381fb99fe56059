package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// maintain is Run's periodic loop: bootstrap, the leadership poll, then on the leader
// autopilot, release of dead owners' names and the age tick; on every node the snapshot
// trigger. One ticker serves them all: an idle agent wakes as rarely as it can.
func (r *Raft) maintain(ctx context.Context) {
	t := time.NewTicker(r.timing.tick)
	defer t.Stop()
	wasLeader := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if !r.bootstrapDone {
			r.tryBootstrap(now)
		}
		r.checkLeader()
		leader := r.IsLeader()
		if leader != wasLeader {
			// A new leader starts its timers afresh: it has not watched anyone depart.
			clear(r.departed)
			clear(r.staged)
			clear(r.ownerGone)
			wasLeader = leader
		}
		if leader {
			r.autopilot(ctx, now)
			r.releaseOwners(ctx, now)
			r.ageTick(now)
		}
		r.maybeSnapshot()
	}
}

// members returns the membership view indexed by name (nil without membership).
func (r *Raft) members() map[string]Member {
	if r.o.Members == nil {
		return nil
	}
	ms := r.o.Members()
	out := make(map[string]Member, len(ms))
	for _, m := range ms {
		out[m.Name] = m
	}
	return out
}

func isServer(m Member) bool { return slices.Contains(m.Meta.Roles, RoleServer) }

func isUp(m Member, ok bool) bool {
	return ok && (m.Status == StatusAlive || m.Status == StatusSuspect)
}

// tryBootstrap bootstraps a new cluster when this server is in the deterministic
// initial set (see Run).
func (r *Raft) tryBootstrap(now time.Time) {
	switch {
	case r.hadState || !r.o.Config.Server:
		r.bootstrapDone = true
		return
	case r.raft.LastIndex() > 0:
		r.bootstrapDone = true // a leader reached us first
		return
	}
	expect := max(r.o.Config.BootstrapExpectOrDefault(), 1)
	voters := max(r.o.Config.Raft.Voters, 1)
	self := raft.Server{ID: raft.ServerID(r.o.NodeName), Address: r.trans.LocalAddr(), Suffrage: raft.Voter}
	cands := []raft.Server{self}
	for name, m := range r.members() {
		if name == r.o.NodeName {
			if m.Meta.RPCAddr != "" {
				cands[0].Address = raft.ServerAddress(m.Meta.RPCAddr)
			}
			continue
		}
		if m.Status == StatusAlive && isServer(m) && m.Meta.RPCAddr != "" {
			cands = append(cands, raft.Server{ID: raft.ServerID(name), Address: raft.ServerAddress(m.Meta.RPCAddr), Suffrage: raft.Voter})
		}
	}
	if len(cands) < expect {
		if now.Sub(r.bootWaitLog) > 30*time.Second {
			r.bootWaitLog = now
			r.log.Info("waiting for servers before bootstrapping Raft", "seen", len(cands), "bootstrap_expect", expect)
		}
		r.bootStable = 0
		return
	}
	slices.SortFunc(cands, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	chosen := cands[:min(voters, len(cands))]
	var key strings.Builder
	for _, s := range chosen {
		key.WriteString(string(s.ID) + "=" + string(s.Address) + ";")
	}
	if key.String() != r.bootSet {
		r.bootSet, r.bootStable = key.String(), 0
	}
	r.bootStable++
	if r.bootStable < r.timing.settleTicks && expect > 1 {
		return
	}
	r.bootstrapDone = true
	if !slices.ContainsFunc(chosen, func(s raft.Server) bool { return s.ID == self.ID }) {
		r.log.Info("not in the initial Raft voter set; waiting to be added by the leader", "initial_voters", serverIDs(chosen))
		return
	}
	err := r.raft.BootstrapCluster(raft.Configuration{Servers: chosen}).Error()
	switch {
	case err == nil:
		r.log.Info("bootstrapped the Raft cluster", "voters", serverIDs(chosen))
	case errors.Is(err, raft.ErrCantBootstrap):
		r.log.Debug("raft already has state; not bootstrapping")
	default:
		r.log.Error("raft bootstrap failed; will not retry until restart", "err", err)
	}
}

func serverIDs(servers []raft.Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = string(s.ID)
	}
	return out
}

// autopilot makes at most one configuration change per tick, in this order: remove a
// server gone for longer than removeAfter (a voter only while the other voters keep a
// quorum), update a server's changed RPC address, promote a non-voter that has been
// healthy for promoteAfter, add an alive server as a non-voter — the last two only while
// there are fewer voters than raft.voters.
func (r *Raft) autopilot(ctx context.Context, now time.Time) {
	members := r.members()
	if members == nil {
		return
	}
	cf := r.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	servers := cf.Configuration().Servers
	slices.SortFunc(servers, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	self := raft.ServerID(r.o.NodeName)
	up := func(id raft.ServerID) bool {
		m, ok := members[string(id)]
		return id == self || isUp(m, ok)
	}
	inConfig := map[raft.ServerID]bool{}
	voters, upVoters := 0, 0
	for _, s := range servers {
		inConfig[s.ID] = true
		if up(s.ID) {
			delete(r.departed, s.ID)
		} else if _, ok := r.departed[s.ID]; !ok {
			r.departed[s.ID] = now
		}
		if s.Suffrage == raft.Voter {
			voters++
			if up(s.ID) {
				upVoters++
			}
		} else if _, ok := r.staged[s.ID]; !ok {
			r.staged[s.ID] = now
		}
	}
	for id := range r.departed {
		if !inConfig[id] {
			delete(r.departed, id)
		}
	}
	for id := range r.staged {
		if !inConfig[id] {
			delete(r.staged, id)
		}
	}
	removeAfter := 3 * r.timing.detection
	timeout := 2 * r.timing.election

	for _, s := range servers {
		since, gone := r.departed[s.ID]
		if !gone || now.Sub(since) < removeAfter {
			continue
		}
		if s.Suffrage == raft.Voter && upVoters < (voters-1)/2+1 {
			if now.Sub(r.quorumLogged) > time.Minute {
				r.quorumLogged = now
				r.log.Warn("a Raft voter is gone but removing it would leave no quorum; restart it or add servers",
					"voter", s.ID, "gone_for", now.Sub(since).Round(time.Second), "voters", voters, "up", upVoters)
			}
			continue
		}
		r.configChange(ctx, "removed a Raft server gone for too long", s.ID, "", now.Sub(since),
			r.raft.RemoveServer(s.ID, 0, timeout))
		r.clearFailing(s.ID)
		return
	}
	for _, s := range servers {
		m, ok := members[string(s.ID)]
		if s.ID == self || !isUp(m, ok) || m.Meta.RPCAddr == "" || m.Meta.RPCAddr == string(s.Address) {
			continue
		}
		addr := raft.ServerAddress(m.Meta.RPCAddr)
		var f raft.Future
		if s.Suffrage == raft.Voter {
			f = r.raft.AddVoter(s.ID, addr, 0, timeout)
		} else {
			f = r.raft.AddNonvoter(s.ID, addr, 0, timeout)
		}
		r.configChange(ctx, "updated a Raft server's address", s.ID, addr, 0, f)
		return
	}
	desired := max(r.o.Config.Raft.Voters, 1)
	if voters >= desired {
		return
	}
	for _, s := range servers {
		m, ok := members[string(s.ID)]
		if s.Suffrage == raft.Voter || !isUp(m, ok) || !isServer(m) ||
			now.Sub(r.staged[s.ID]) < r.timing.promoteAfter || r.isFailing(s.ID) {
			continue
		}
		r.configChange(ctx, "promoted a server to Raft voter", s.ID, s.Address, 0,
			r.raft.AddVoter(s.ID, s.Address, 0, timeout))
		return
	}
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		m := members[name]
		if inConfig[raft.ServerID(name)] || m.Status != StatusAlive || !isServer(m) || m.Meta.RPCAddr == "" {
			continue
		}
		id := raft.ServerID(name)
		r.clearFailing(id)
		r.configChange(ctx, "added a server to Raft as a non-voter (promoted once it keeps up)", id,
			raft.ServerAddress(m.Meta.RPCAddr), 0, r.raft.AddNonvoter(id, raft.ServerAddress(m.Meta.RPCAddr), 0, timeout))
		r.staged[id] = now
		return
	}
}

// configChange waits for a configuration change and logs its outcome.
func (r *Raft) configChange(ctx context.Context, what string, id raft.ServerID, addr raft.ServerAddress, gone time.Duration, f raft.Future) {
	args := []any{"server", string(id)}
	if addr != "" {
		args = append(args, "address", string(addr))
	}
	if gone > 0 {
		args = append(args, "gone_for", gone.Round(time.Millisecond))
	}
	if err := r.await(ctx, f); err != nil {
		r.log.Warn("raft configuration change failed: "+what, append(args, "err", err)...)
		return
	}
	r.log.Info(what, args...)
}

// releaseOwners releases the names of owners that have not been alive (or suspect) for
// longer than the failure-detection time, as this leader has watched them.
func (r *Raft) releaseOwners(ctx context.Context, now time.Time) {
	members := r.members()
	if members == nil {
		return
	}
	owners := map[string]bool{}
	for _, reg := range r.fsm.names() {
		owners[reg.Owner] = true
	}
	for o := range r.ownerGone {
		if !owners[o] {
			delete(r.ownerGone, o)
		}
	}
	after := r.timing.detection
	for owner := range owners {
		m, ok := members[owner]
		if isUp(m, ok) {
			delete(r.ownerGone, owner)
			continue
		}
		since, seen := r.ownerGone[owner]
		if !seen {
			r.ownerGone[owner] = now
			continue
		}
		if now.Sub(since) <= after {
			continue
		}
		v, err := r.ApplyCommand(ctx, ReleaseOwner{Owner: owner})
		if err != nil {
			r.log.Warn("could not release the names of a dead owner; will retry", "owner", owner, "err", err)
			continue
		}
		delete(r.ownerGone, owner)
		status := "not a member"
		if ok {
			status = m.Status
		}
		r.log.Info("released the registry names of a departed owner", "owner", owner, "status", status, "names", v)
	}
}

// ageTick proposes an empty log batch when no batch was applied for a while, so that
// age retention runs in a quiet cluster (the store judges age by the leader's clock
// carried in batches).
func (r *Raft) ageTick(now time.Time) {
	if r.o.Retention.MaxAge <= 0 || now.UnixNano()-r.fsm.lastLogs.Load() < int64(ageTickInterval) {
		return
	}
	r.fsm.lastLogs.Store(now.UnixNano()) // do not propose again before this one applies
	select {
	case r.proposals <- &proposal{done: make(chan proposalResult, 1)}:
	default:
	}
}

// maybeSnapshot takes a snapshot when about one store's worth of commands was applied
// since the last one, so that the WAL stays bounded by bytes as well as entries.
func (r *Raft) maybeSnapshot() {
	if r.fsm.sinceSnapshot.Load() < r.o.snapshotBytes || !r.snapshotting.CompareAndSwap(false, true) {
		return
	}
	started := r.track(func() {
		defer r.snapshotting.Store(false)
		start := time.Now()
		err := r.raft.Snapshot().Error()
		switch {
		case err == nil:
			r.log.Debug("raft snapshot taken", "took", time.Since(start))
		case errors.Is(err, raft.ErrNothingNewToSnapshot), errors.Is(err, raft.ErrRaftShutdown):
		default:
			r.log.Warn("raft snapshot failed; the Raft log grows until one succeeds", "err", err)
		}
	})
	if !started {
		r.snapshotting.Store(false)
	}
}
