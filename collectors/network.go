package collectors

import (
	"context"
	"fmt"
	"sync"

	"github.com/shirou/gopsutil/v4/net"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/systemconv"
)

// netSeries holds the cached attributes of one interface. Its options never change once
// built, so the callback reads them without the collector's lock.
//
// Semantic conventions v1.43 name the interface network.interface.name on system.network.io,
// .errors and .packet.dropped, but system.device on system.network.packet.count; both are
// followed as written.
type netSeries struct {
	rx, tx             []metric.ObserveOption // network.interface.name, network.io.direction
	packetRx, packetTx []metric.ObserveOption // system.device, network.io.direction
	gen                uint64                 // owned by collect
}

type netValues struct {
	rxBytes, txBytes     int64
	rxPackets, txPackets int64
	rxErrors, txErrors   int64
	rxDropped, txDropped int64
}

type netPoint struct {
	s *netSeries
	v netValues
}

// networkCollector reports system.network.io, .packet.count, .errors and .packet.dropped
// per interface from /proc/net/dev. Like node_exporter it keeps loopback and virtual
// interfaces. Sockets are never listed (no net.Connections).
type networkCollector struct {
	io, packets, errs, dropped metric.Int64ObservableCounter

	devFile string // the host's /proc/1/net/dev with a host root, else /proc/net/dev

	series map[string]*netSeries // owned by collect
	gen    uint64
	spare  []netPoint

	mu  sync.Mutex
	cur []netPoint
}

func newNetwork(m metric.Meter, h *host) (collector, metric.Registration, error) {
	c := &networkCollector{series: make(map[string]*netSeries), devFile: h.proc("net/dev")}
	if h.root != "/" {
		// /proc/net is a link to the reader's own network namespace; process 1 of the host's
		// proc tree is in the host's.
		c.devFile = h.proc("1/net/dev")
	}
	var err error
	if c.io, err = m.Int64ObservableCounter(systemconv.NetworkIO{}.Name(),
		metric.WithDescription(systemconv.NetworkIO{}.Description()),
		metric.WithUnit(systemconv.NetworkIO{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.packets, err = m.Int64ObservableCounter(systemconv.NetworkPacketCountObservable{}.Name(),
		metric.WithDescription(systemconv.NetworkPacketCountObservable{}.Description()),
		metric.WithUnit(systemconv.NetworkPacketCountObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.errs, err = m.Int64ObservableCounter(systemconv.NetworkErrorsObservable{}.Name(),
		metric.WithDescription(systemconv.NetworkErrorsObservable{}.Description()),
		metric.WithUnit(systemconv.NetworkErrorsObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	if c.dropped, err = m.Int64ObservableCounter(systemconv.NetworkPacketDroppedObservable{}.Name(),
		metric.WithDescription(systemconv.NetworkPacketDroppedObservable{}.Description()),
		metric.WithUnit(systemconv.NetworkPacketDroppedObservable{}.Unit())); err != nil {
		return nil, nil, err
	}
	reg, err := m.RegisterCallback(c.observe, c.io, c.packets, c.errs, c.dropped)
	if err != nil {
		return nil, nil, err
	}
	return c, reg, nil
}

func (c *networkCollector) collect(r *round) error {
	stats, err := net.IOCountersByFileWithContext(r.ctx, true, c.devFile)
	if err != nil {
		return fmt.Errorf("read %s: %w", c.devFile, err)
	}
	c.gen++
	next := c.spare[:0]
	for i := range stats {
		st := &stats[i]
		s := c.series[st.Name]
		if s == nil {
			s = newNetSeries(st.Name)
			c.series[st.Name] = s
		}
		s.gen = c.gen
		next = append(next, netPoint{s: s, v: netValues{
			rxBytes: clampInt(st.BytesRecv), txBytes: clampInt(st.BytesSent),
			rxPackets: clampInt(st.PacketsRecv), txPackets: clampInt(st.PacketsSent),
			rxErrors: clampInt(st.Errin), txErrors: clampInt(st.Errout),
			rxDropped: clampInt(st.Dropin), txDropped: clampInt(st.Dropout),
		}})
	}
	for name, s := range c.series {
		if s.gen != c.gen {
			delete(c.series, name)
		}
	}
	c.mu.Lock()
	c.spare, c.cur = c.cur, next
	c.mu.Unlock()
	clear(c.spare)
	return nil
}

func newNetSeries(name string) *netSeries {
	n := systemconv.NetworkIO{}
	p := systemconv.NetworkPacketCountObservable{}
	iface := n.AttrNetworkInterfaceName(name)
	return &netSeries{
		rx:       attrOpts(iface, n.AttrNetworkIODirection(systemconv.NetworkIODirectionReceive)),
		tx:       attrOpts(iface, n.AttrNetworkIODirection(systemconv.NetworkIODirectionTransmit)),
		packetRx: attrOpts(p.AttrDevice(name), p.AttrNetworkIODirection(systemconv.NetworkIODirectionReceive)),
		packetTx: attrOpts(p.AttrDevice(name), p.AttrNetworkIODirection(systemconv.NetworkIODirectionTransmit)),
	}
}

func (c *networkCollector) observe(_ context.Context, o metric.Observer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.cur {
		s, v := c.cur[i].s, &c.cur[i].v
		o.ObserveInt64(c.io, v.rxBytes, s.rx...)
		o.ObserveInt64(c.io, v.txBytes, s.tx...)
		o.ObserveInt64(c.packets, v.rxPackets, s.packetRx...)
		o.ObserveInt64(c.packets, v.txPackets, s.packetTx...)
		o.ObserveInt64(c.errs, v.rxErrors, s.rx...)
		o.ObserveInt64(c.errs, v.txErrors, s.tx...)
		o.ObserveInt64(c.dropped, v.rxDropped, s.rx...)
		o.ObserveInt64(c.dropped, v.txDropped, s.tx...)
	}
	return nil
}
