package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Event types.
const (
	EventJoin   = "join"   // a node became alive (joined, or came back)
	EventLeave  = "leave"  // a node left gracefully
	EventFail   = "fail"   // a node was declared dead by failure detection
	EventUpdate = "update" // a node's metadata changed
	EventDrift  = "drift"  // alive members run with different configuration hashes
)

// Member statuses.
const (
	StatusAlive   = "alive"
	StatusSuspect = "suspect"
	StatusDead    = "dead"
	StatusLeft    = "left"
)

// Event is a membership change, as seen by this agent.
type Event struct {
	Type   string    `json:"type"` // join | leave | fail | update | drift
	Node   string    `json:"node"`
	Time   time.Time `json:"time"`
	Detail string    `json:"detail,omitempty"`
}

// Member is a node of the cluster as this agent sees it.
type Member struct {
	Name    string
	Address string // gossip host:port
	Status  string // alive | suspect | dead | left
	Meta    Meta
}

// subscriber is one Subscribe call. dropped counts events lost since the last one delivered.
type subscriber struct {
	ch      chan Event
	dropped int
}

// hub fans events out to subscribers without blocking: a subscriber whose buffer is full
// loses the event, which is counted and logged. Safe for concurrent use.
type hub struct {
	log    *slog.Logger
	events metric.Int64Counter
	drops  metric.Int64Counter
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

func newHub(log *slog.Logger, meter metric.Meter) (*hub, error) {
	events, err := meter.Int64Counter("picket.cluster.events",
		metric.WithDescription("Membership events seen by this agent, by type (join, leave, fail, update, drift)."))
	if err != nil {
		return nil, fmt.Errorf("create picket.cluster.events counter: %w", err)
	}
	drops, err := meter.Int64Counter("picket.cluster.events.dropped",
		metric.WithDescription("Membership events not delivered to a subscriber that fell behind."))
	if err != nil {
		return nil, fmt.Errorf("create picket.cluster.events.dropped counter: %w", err)
	}
	return &hub{log: log, events: events, drops: drops, subs: map[*subscriber]struct{}{}}, nil
}

// subscribe registers a subscriber with a buffer of buf events (at least 1). The returned
// function unsubscribes and closes the channel; it is safe to call more than once. Close
// of the hub closes every channel.
func (h *hub) subscribe(buf int) (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, max(buf, 1))}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(s.ch)
		return s.ch, func() {}
	}
	h.subs[s] = struct{}{}
	return s.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[s]; ok {
			delete(h.subs, s)
			close(s.ch)
		}
	}
}

// publish counts ev and offers it to every subscriber without blocking.
func (h *hub) publish(ev Event) {
	h.events.Add(context.Background(), 1, metric.WithAttributes(attribute.String("type", ev.Type)))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for s := range h.subs {
		select {
		case s.ch <- ev:
			if s.dropped > 0 {
				h.log.Info("membership event subscriber caught up", "dropped", s.dropped)
				s.dropped = 0
			}
		default:
			h.drops.Add(context.Background(), 1)
			if s.dropped == 0 {
				h.log.Warn("membership event subscriber is too slow; dropping its events until it catches up (counted in picket_cluster_events_dropped_total)",
					"buffer", cap(s.ch), "event", ev.Type, "node", ev.Node)
			}
			s.dropped++
		}
	}
}

// close closes every subscriber channel; later publishes are ignored.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		close(s.ch)
	}
	clear(h.subs)
}

// entry is the table's record of one node.
type entry struct {
	member   Member
	leaving  bool      // the node announced a graceful leave in its metadata
	departed time.Time // when it became dead or left
}

// table is this agent's view of the members, fed by memberlist's EventDelegate callbacks.
// Memberlist calls those one at a time (never concurrently) with its node lock held, so
// they must not call back into memberlist and must not block; table methods are otherwise
// safe for concurrent use.
//
// Dead and left nodes stay listed for `retention` (the profile's GossipToTheDeadTime, as
// long as memberlist keeps gossiping about them), then Members stops listing them.
type table struct {
	log       *slog.Logger
	hub       *hub
	retention time.Duration
	now       func() time.Time

	mu        sync.Mutex
	nodes     map[string]*entry
	badMeta   map[string]string // node → last metadata decode error logged
	driftKey  string            // sorted distinct config hashes last reported as drift
	unregMems func() error
}

func newTable(log *slog.Logger, h *hub, retention time.Duration) *table {
	return &table{
		log: log, hub: h, retention: retention, now: time.Now,
		nodes: map[string]*entry{}, badMeta: map[string]string{},
	}
}

// registerGauge registers the picket.cluster.members observable gauge.
func (t *table) registerGauge(meter metric.Meter) error {
	g, err := meter.Int64ObservableGauge("picket.cluster.members",
		metric.WithDescription("Members known to this agent, by state (alive, suspect, dead, left)."))
	if err != nil {
		return fmt.Errorf("create picket.cluster.members gauge: %w", err)
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		counts := t.counts()
		for _, s := range []string{StatusAlive, StatusSuspect, StatusDead, StatusLeft} {
			o.ObserveInt64(g, int64(counts[s]), metric.WithAttributes(attribute.String("state", s)))
		}
		return nil
	}, g)
	if err != nil {
		return fmt.Errorf("register picket.cluster.members callback: %w", err)
	}
	t.unregMems = reg.Unregister
	return nil
}

func (t *table) unregister() {
	if t.unregMems != nil {
		if err := t.unregMems(); err != nil {
			t.log.Debug("unregister members gauge", "err", err)
		}
	}
}

func (t *table) counts() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked()
	c := map[string]int{}
	for _, e := range t.nodes {
		c[e.member.Status]++
	}
	return c
}

// members returns every listed member, sorted by name.
func (t *table) members() []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked()
	out := make([]Member, 0, len(t.nodes))
	for _, e := range t.nodes {
		m := e.member
		m.Meta = m.Meta.clone()
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// member returns one listed member.
func (t *table) member(name string) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked()
	e, ok := t.nodes[name]
	if !ok {
		return Member{}, false
	}
	m := e.member
	m.Meta = m.Meta.clone()
	return m, true
}

func (t *table) pruneLocked() {
	now := t.now()
	for name, e := range t.nodes {
		if !e.departed.IsZero() && now.Sub(e.departed) > t.retention {
			delete(t.nodes, name)
			delete(t.badMeta, name)
		}
	}
}

// decodeLocked decodes a node's metadata, logging a decode error once per node and error.
func (t *table) decodeLocked(n *memberlist.Node) (Meta, bool) {
	meta, leaving, err := decodeMeta(n.Meta)
	if err != nil {
		if t.badMeta[n.Name] != err.Error() {
			t.badMeta[n.Name] = err.Error()
			t.log.Warn("cannot read a member's metadata; listing it without", "node", n.Name, "err", err)
		}
		return Meta{}, false
	}
	delete(t.badMeta, n.Name)
	return meta, leaving
}

// NotifyJoin implements memberlist.EventDelegate.
func (t *table) NotifyJoin(n *memberlist.Node) {
	var evs []Event
	t.mu.Lock()
	meta, leaving := t.decodeLocked(n)
	t.nodes[n.Name] = &entry{
		member:  Member{Name: n.Name, Address: n.Address(), Status: StatusAlive, Meta: meta},
		leaving: leaving,
	}
	evs = append(evs, Event{Type: EventJoin, Node: n.Name, Time: t.now(), Detail: n.Address()})
	evs = append(evs, t.driftLocked(n.Name)...)
	t.mu.Unlock()
	t.emit(evs)
}

// NotifyUpdate implements memberlist.EventDelegate.
func (t *table) NotifyUpdate(n *memberlist.Node) {
	var evs []Event
	t.mu.Lock()
	meta, leaving := t.decodeLocked(n)
	e, ok := t.nodes[n.Name]
	if !ok {
		e = &entry{member: Member{Name: n.Name, Status: StatusAlive}}
		t.nodes[n.Name] = e
	}
	old := e.member.Meta
	e.member.Address = n.Address()
	e.member.Meta = meta
	e.leaving = leaving
	if diff := metaDiff(old, meta); len(diff) > 0 {
		evs = append(evs, Event{Type: EventUpdate, Node: n.Name, Time: t.now(), Detail: strings.Join(diff, ",")})
	}
	evs = append(evs, t.driftLocked(n.Name)...)
	t.mu.Unlock()
	t.emit(evs)
}

// NotifyLeave implements memberlist.EventDelegate. A node that announced its leave in its
// metadata (or that memberlist reports as StateLeft, should a future memberlist fill in
// Node.State here) left gracefully; any other node failed.
func (t *table) NotifyLeave(n *memberlist.Node) {
	var evs []Event
	t.mu.Lock()
	e, ok := t.nodes[n.Name]
	if !ok {
		meta, leaving := t.decodeLocked(n)
		e = &entry{member: Member{Name: n.Name, Address: n.Address(), Meta: meta}, leaving: leaving}
		t.nodes[n.Name] = e
	}
	ev := Event{Type: EventFail, Node: n.Name, Time: t.now(), Detail: n.Address()}
	e.member.Status = StatusDead
	if e.leaving || n.State == memberlist.StateLeft {
		ev.Type = EventLeave
		e.member.Status = StatusLeft
	}
	e.departed = ev.Time
	evs = append(evs, ev)
	evs = append(evs, t.driftLocked(n.Name)...)
	t.mu.Unlock()
	t.emit(evs)
}

// driftLocked returns a drift event when alive members now run with more than one distinct
// non-empty ConfigHash and that set of hashes was not reported yet.
func (t *table) driftLocked(node string) []Event {
	byHash := map[string][]string{}
	for name, e := range t.nodes {
		if e.member.Status == StatusAlive && e.member.Meta.ConfigHash != "" {
			byHash[e.member.Meta.ConfigHash] = append(byHash[e.member.Meta.ConfigHash], name)
		}
	}
	if len(byHash) < 2 {
		t.driftKey = ""
		return nil
	}
	hashes := slices.Sorted(maps.Keys(byHash))
	key := strings.Join(hashes, ",")
	if key == t.driftKey {
		return nil
	}
	t.driftKey = key
	parts := make([]string, 0, len(hashes))
	for _, h := range hashes {
		slices.Sort(byHash[h])
		parts = append(parts, fmt.Sprintf("%s on %s", h, strings.Join(byHash[h], ",")))
	}
	return []Event{{Type: EventDrift, Node: node, Time: t.now(), Detail: "configuration differs: " + strings.Join(parts, "; ")}}
}

// emit logs and publishes events, outside the table lock.
func (t *table) emit(evs []Event) {
	for _, ev := range evs {
		switch ev.Type {
		case EventJoin:
			t.log.Info("member joined", "node", ev.Node, "address", ev.Detail)
		case EventLeave:
			t.log.Info("member left", "node", ev.Node, "address", ev.Detail)
		case EventFail:
			t.log.Warn("member failed: it stopped answering and was declared dead", "node", ev.Node, "address", ev.Detail)
		case EventUpdate:
			t.log.Debug("member updated", "node", ev.Node, "changed", ev.Detail)
		case EventDrift:
			t.log.Warn("configuration drift: alive members run with different configurations", "node", ev.Node, "detail", ev.Detail)
		}
		t.hub.publish(ev)
	}
}
