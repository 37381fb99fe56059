package agent

import (
	"sync"
	"time"
)

// Event is one entry of /v1/events: a membership change, an aggregator change or a check
// state change, as this agent saw it.
type Event struct {
	ID     uint64    `json:"id"`
	Time   time.Time `json:"time"`
	Type   string    `json:"type"` // join, leave, fail, update, drift, leader, check
	Node   string    `json:"node,omitempty"`
	Check  string    `json:"check,omitempty"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// eventLog keeps the most recent events in a ring and wakes followers. Safe for concurrent
// use; add never blocks.
type eventLog struct {
	mu     sync.Mutex
	ring   []Event
	next   uint64 // ID of the next event
	notify chan struct{}
}

const eventRing = 1000

func newEventLog() *eventLog {
	return &eventLog{ring: make([]Event, 0, eventRing), next: 1, notify: make(chan struct{})}
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	e.ID = l.next
	l.next++
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	if len(l.ring) == eventRing {
		copy(l.ring, l.ring[1:])
		l.ring = l.ring[:eventRing-1]
	}
	l.ring = append(l.ring, e)
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
}

// since returns the events with ID > after, oldest first, and a channel closed at the next
// add.
func (l *eventLog) since(after uint64) ([]Event, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.ring {
		if e.ID > after {
			out = append(out, e)
		}
	}
	return out, l.notify
}
