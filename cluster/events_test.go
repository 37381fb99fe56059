package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// promTable is a table wired to a Prometheus registry through the OTel exporter, so the
// tests see the metric names operators see.
func promTable(t *testing.T) (*table, *hub, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	logs := &syncBuffer{}
	h, err := newHub(testLogger(logs), mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(testLogger(logs), h, time.Minute)
	if err := tb.registerGauge(mp.Meter("test")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.close()
		tb.unregister()
	})
	return tb, h, reg, logs
}

func node(t *testing.T, name string, meta Meta, leaving bool) *memberlist.Node {
	t.Helper()
	b, err := encodeMeta(meta, leaving)
	if err != nil {
		t.Fatal(err)
	}
	return &memberlist.Node{Name: name, Addr: net.IPv4(127, 0, 0, 1), Port: 7946, Meta: b}
}

func TestEventsAndMetrics(t *testing.T) {
	tb, h, reg, logs := promTable(t)
	fast, unsubFast := h.subscribe(16)
	defer unsubFast()
	slow, unsubSlow := h.subscribe(1) // never read: drops after the first event
	defer unsubSlow()

	tb.NotifyJoin(node(t, "a", Meta{}, false))
	tb.NotifyJoin(node(t, "b", Meta{}, false))
	tb.NotifyJoin(node(t, "c", Meta{}, false))
	tb.NotifyUpdate(node(t, "b", Meta{Load: 0.5}, false))
	tb.NotifyUpdate(node(t, "c", Meta{}, true)) // only the leave intent: no update event
	tb.NotifyLeave(node(t, "c", Meta{}, true))
	tb.NotifyLeave(node(t, "b", Meta{}, false))

	var got []string
	for range 6 {
		ev := <-fast
		got = append(got, ev.Type+":"+ev.Node)
	}
	want := "join:a join:b join:c update:b leave:c fail:b"
	if strings.Join(got, " ") != want {
		t.Errorf("events = %v, want %s", got, want)
	}
	if len(slow) != 1 {
		t.Errorf("slow subscriber holds %d events, want 1", len(slow))
	}

	want = `picket_cluster_events_dropped_total 5
picket_cluster_events_total{type="fail"} 1
picket_cluster_events_total{type="join"} 3
picket_cluster_events_total{type="leave"} 1
picket_cluster_events_total{type="update"} 1
picket_cluster_members{state="alive"} 1
picket_cluster_members{state="dead"} 1
picket_cluster_members{state="left"} 1
picket_cluster_members{state="suspect"} 0`
	if got := gather(t, reg, "picket_cluster_"); got != want {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
	if n := logs.count("subscriber is too slow"); n != 1 {
		t.Errorf("the slow subscriber was logged %d times, want once per streak", n)
	}
	<-slow
	tb.NotifyJoin(node(t, "d", Meta{}, false))
	if n := logs.count("subscriber caught up"); n != 1 {
		t.Errorf("catching up was logged %d times, want 1", n)
	}
}

func TestDeadMembersAreForgottenAfterRetention(t *testing.T) {
	tb, _, _, _ := promTable(t)
	now := time.Now()
	tb.now = func() time.Time { return now }
	tb.NotifyJoin(node(t, "a", Meta{}, false))
	tb.NotifyJoin(node(t, "b", Meta{}, false))
	tb.NotifyLeave(node(t, "b", Meta{}, false))
	if m, ok := tb.member("b"); !ok || m.Status != StatusDead {
		t.Fatalf("b = %+v, %v; want listed as dead", m, ok)
	}
	now = now.Add(tb.retention + time.Second)
	if _, ok := tb.member("b"); ok {
		t.Error("b is still listed after the retention")
	}
	if got := len(tb.members()); got != 1 {
		t.Errorf("%d members listed, want 1", got)
	}
	tb.NotifyJoin(node(t, "b", Meta{}, false)) // it comes back
	if m, ok := tb.member("b"); !ok || m.Status != StatusAlive {
		t.Errorf("b after rejoining = %+v, %v; want alive", m, ok)
	}
}

func TestDrift(t *testing.T) {
	tb, h, _, _ := promTable(t)
	ch, unsub := h.subscribe(64)
	defer unsub()
	drifts := func() []Event {
		var out []Event
		for {
			select {
			case ev := <-ch:
				if ev.Type == EventDrift {
					out = append(out, ev)
				}
			default:
				return out
			}
		}
	}
	tb.NotifyJoin(node(t, "a", Meta{ConfigHash: "h1"}, false))
	tb.NotifyJoin(node(t, "b", Meta{}, false)) // no hash: never drifts
	if d := drifts(); len(d) != 0 {
		t.Fatalf("drift with one hash: %v", d)
	}
	tb.NotifyJoin(node(t, "c", Meta{ConfigHash: "h2"}, false))
	tb.NotifyJoin(node(t, "d", Meta{ConfigHash: "h2"}, false)) // same pair: no new event
	d := drifts()
	if len(d) != 1 || d[0].Node != "c" || d[0].Detail != "configuration differs: h1 on a; h2 on c" {
		t.Fatalf("drift events = %+v, want one about h1 on a and h2 on c", d)
	}
	tb.NotifyLeave(node(t, "a", Meta{ConfigHash: "h1"}, false)) // only h2 left alive: resolved
	tb.NotifyJoin(node(t, "a", Meta{ConfigHash: "h1"}, false))  // back: drift again
	if d := drifts(); len(d) != 1 {
		t.Errorf("drift events after it recurred = %+v, want 1", d)
	}
}

func TestSubscribeAfterClose(t *testing.T) {
	_, h, _, _ := promTable(t)
	ch, unsub := h.subscribe(1)
	h.close()
	if _, ok := <-ch; ok {
		t.Error("channel open after close")
	}
	unsub() // after close: no double close
	ch2, unsub2 := h.subscribe(1)
	if _, ok := <-ch2; ok {
		t.Error("subscribing to a closed hub gave an open channel")
	}
	unsub2()
	h.publish(Event{Type: EventJoin}) // must not panic
}

// gather renders the counters and gauges whose names start with prefix as sorted
// `name{label="value"} number` lines.
func gather(t *testing.T, reg *prometheus.Registry, prefix string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			lines = append(lines, fmt.Sprintf("%s %g", name, v))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
