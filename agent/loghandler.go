package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/logstore"
)

// ShipHandler is a slog.Handler that passes every record to next and, once a Shipper is
// attached, also queues the records at or above min in the cluster log, so that an
// agent's warnings and errors reach the aggregator (and survive partitions in the spool).
// Records of the shipper and spool themselves stay local, so a failing delivery cannot
// feed itself.
type ShipHandler struct {
	next   slog.Handler
	min    slog.Level
	node   string
	attrs  []slog.Attr
	group  string
	target *atomic.Pointer[cluster.Shipper]
}

// NewShipHandler wraps next; records at min and above are shipped once Attach is called.
func NewShipHandler(next slog.Handler, min slog.Level, node string) *ShipHandler {
	return &ShipHandler{next: next, min: min, node: node, target: new(atomic.Pointer[cluster.Shipper])}
}

// Attach starts shipping records to s.
func (h *ShipHandler) Attach(s *cluster.Shipper) { h.target.Store(s) }

// Enabled reports whether next wants the level (shipping follows the logger's level).
func (h *ShipHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle passes r on and ships it when it qualifies.
func (h *ShipHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.next.Handle(ctx, r)
	s := h.target.Load()
	if s == nil || r.Level < h.min {
		return err
	}
	attrs := map[string]string{}
	add := func(a slog.Attr) bool {
		if len(attrs) < maxAttrs {
			key := a.Key
			if h.group != "" {
				key = h.group + "." + key
			}
			attrs[key] = truncate(a.Value.Resolve().String(), maxAttrValueBytes)
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	switch attrs["component"] {
	case "shipper", "spool":
		return err
	}
	s.Log(logstore.Record{
		Time: r.Time, Level: levelName(r.Level), Message: truncate(r.Message, maxMessageBytes),
		Node: h.node, Attrs: attrs,
	})
	return err
}

// WithAttrs returns a handler that adds attrs.
func (h *ShipHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

// WithGroup returns a handler that nests later attrs in group.
func (h *ShipHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}

func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// shipEvent queues an event in the cluster log as an info record of this node.
func (a *Agent) shipEvent(e Event) {
	attrs := map[string]string{"event": e.Type}
	for k, v := range map[string]string{"node": e.Node, "check": e.Check, "from": e.From, "to": e.To} {
		if v != "" {
			attrs[k] = v
		}
	}
	msg := fmt.Sprintf("%s %s", e.Type, e.Node)
	switch e.Type {
	case "check":
		msg = fmt.Sprintf("check %s: %s → %s", e.Check, e.From, e.To)
	case "fail", "leave", "join":
		msg = fmt.Sprintf("member %s: %s", e.Node, e.Type)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	level := "info"
	if e.Type == "fail" || (e.Type == "check" && e.To == "critical") {
		level = "warn"
	}
	a.parts.Shipper.Log(logstore.Record{Time: e.Time, Level: level, Message: truncate(msg, maxMessageBytes), Node: a.Config().NodeName, Attrs: attrs})
}
