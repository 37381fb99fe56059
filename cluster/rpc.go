package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Protocol bytes: the first byte a client writes on the RPC port (after the TLS handshake
// when cluster.tls is set) names the protocol that follows, as in Consul.
const (
	protoRaft  byte = 'R'
	protoAgent byte = 'A'
)

// ErrMuxClosed is returned by the mux's listeners once it is closed.
var ErrMuxClosed = errors.New("rpc listener closed")

// Mux owns the RPC port: it accepts connections, completes TLS when configured, reads the
// protocol byte and hands the connection to Raft or to the agent RPC server. Its listeners
// are safe for concurrent use; Close stops everything and is idempotent.
type Mux struct {
	ln        net.Listener
	serverTLS *tls.Config // nil: plaintext
	clientTLS *tls.Config
	log       *slog.Logger

	raft  *muxListener
	agent *muxListener

	closeOnce sync.Once
	wg        sync.WaitGroup
}

// ListenRPC listens on addr ("host:port"; port 0 picks one). serverTLS and clientTLS are
// both nil (plaintext) or both set (mutual TLS, see MutualTLS).
func ListenRPC(addr string, serverTLS, clientTLS *tls.Config, logger *slog.Logger) (*Mux, error) {
	if (serverTLS == nil) != (clientTLS == nil) {
		return nil, errors.New("rpc: server and client TLS must be set together")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster.rpc %s: %w (is the port free? set cluster.rpc to a free address)", addr, err)
	}
	m := &Mux{ln: ln, serverTLS: serverTLS, clientTLS: clientTLS, log: logger.With("component", "rpc")}
	m.raft = newMuxListener(ln.Addr())
	m.agent = newMuxListener(ln.Addr())
	m.wg.Add(1)
	go m.accept()
	return m, nil
}

// Addr is the address the mux listens on.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// AgentListener yields connections that chose the agent RPC protocol.
func (m *Mux) AgentListener() net.Listener { return m.agent }

// RaftLayer is the raft.StreamLayer over the mux: Accept yields Raft connections, Dial opens
// Raft connections to other agents' RPC ports.
func (m *Mux) RaftLayer() raft.StreamLayer { return &raftLayer{muxListener: m.raft, mux: m} }

// Close stops accepting and closes both listeners. Connections already handed out are the
// receivers' to close.
func (m *Mux) Close() error {
	m.closeOnce.Do(func() {
		m.ln.Close()
		m.raft.close()
		m.agent.close()
	})
	m.wg.Wait()
	return nil
}

func (m *Mux) accept() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				m.log.Error("rpc accept failed; no more RPC connections are accepted", "err", err)
			}
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(conn)
		}()
	}
}

// route finishes TLS, reads the protocol byte within a deadline and hands conn over.
func (m *Mux) route(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if m.serverTLS != nil {
		tc := tls.Server(conn, m.serverTLS)
		if err := tc.Handshake(); err != nil {
			m.log.Warn("rpc connection refused: TLS handshake failed (is the peer using the cluster's CA and a client certificate?)",
				"remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = tc
	}
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	var to *muxListener
	switch b[0] {
	case protoRaft:
		to = m.raft
	case protoAgent:
		to = m.agent
	default:
		m.log.Warn("rpc connection refused: unknown protocol byte (is it a picket agent?)",
			"remote", conn.RemoteAddr().String(), "byte", b[0])
		conn.Close()
		return
	}
	if !to.deliver(conn) {
		conn.Close()
	}
}

// Dial opens a connection to another agent's RPC port speaking proto.
func (m *Mux) dial(ctx context.Context, addr string, proto byte) (net.Conn, error) {
	return DialRPC(ctx, addr, proto, m.clientTLS)
}

// DialAgent opens an agent RPC connection to addr, with the mux's TLS settings.
func (m *Mux) DialAgent(ctx context.Context, addr string) (net.Conn, error) {
	return m.dial(ctx, addr, protoAgent)
}

// DialRPC opens a connection to an RPC port and writes the protocol byte. clientTLS may be nil
// for plaintext.
func DialRPC(ctx context.Context, addr string, proto byte, clientTLS *tls.Config) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if clientTLS != nil {
		tc := tls.Client(conn, clientTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// muxListener is a net.Listener fed by the mux.
type muxListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closer sync.Once
}

func newMuxListener(addr net.Addr) *muxListener {
	return &muxListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *muxListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, ErrMuxClosed
	}
}

// Close stops this listener only; the mux keeps serving the other protocol.
func (l *muxListener) Close() error { l.close(); return nil }

func (l *muxListener) close() { l.closer.Do(func() { close(l.done) }) }

func (l *muxListener) Addr() net.Addr { return l.addr }

type raftLayer struct {
	*muxListener
	mux *Mux
}

func (r *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.mux.dial(ctx, string(address), protoRaft)
}

// HTTPClient returns a client whose requests travel over agent RPC connections: the URL's
// host is the target agent's RPC address ("http://10.0.0.2:7947/rpc/run"). Each request
// has the context's deadline; connections are pooled per address.
func (m *Mux) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.DialAgent(ctx, addr)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
	}}
}
