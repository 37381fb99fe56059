package agent

import (
	"context"
	"fmt"
	"slices"

	"github.com/picket-dev/picket/cluster"
)

// watchLeadership follows this voter's view of the aggregator: it records changes as
// events, gossips the leader role at once, and wakes the log shipper so that records
// flow to a new aggregator without waiting for a retry.
func (a *Agent) watchLeadership(ctx context.Context) error {
	ch, cancel := a.parts.Raft.Observe(16)
	defer cancel()
	var last cluster.LeaderChange
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-ch:
			if !ok {
				return nil
			}
			if c.Known != last.Known || c.Leader.Name != last.Leader.Name || c.Leader.Term != last.Leader.Term {
				a.leaderEvent(c.Leader, c.Known)
			}
			last = c
			a.updateRoles()
			a.parts.Shipper.Kick()
		}
	}
}

func (a *Agent) leaderEvent(l cluster.LeaderInfo, known bool) {
	if !known {
		a.events.add(Event{Type: "leader", Detail: "no aggregator: election in progress or no quorum"})
		a.log.Warn("no aggregator: election in progress or no quorum of voters reachable")
		return
	}
	a.events.add(Event{Type: "leader", Node: l.Name, Detail: fmt.Sprintf("aggregator %s, term %d", l.Name, l.Term)})
	a.log.Info("aggregator elected", "leader", l.Name, "term", l.Term)
}

// roles returns what this agent gossips about its part in Raft.
func (a *Agent) roles() []string {
	var roles []string
	if !a.Config().Cluster.Server {
		return []string{}
	}
	roles = append(roles, roleServer)
	if rn := a.parts.Raft; rn != nil {
		if rn.IsVoter() {
			roles = append(roles, roleVoter)
		}
		if rn.IsLeader() {
			roles = append(roles, roleLeader)
		}
	}
	return roles
}

// updateRoles gossips the current roles when they changed.
func (a *Agent) updateRoles() {
	roles := a.roles()
	if slices.Equal(roles, a.parts.Membership.LocalNode().Meta.Roles) {
		return
	}
	if err := a.parts.Membership.UpdateMeta(func(m *cluster.Meta) { m.Roles = roles }); err != nil {
		a.log.Warn("cannot gossip roles", "err", err)
	}
}
