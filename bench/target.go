package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// TargetAddrs are where a Target listens; the target program writes them as JSON to the
// file named by its -addrs flag once it is listening.
type TargetAddrs struct {
	HTTP string `json:"http"` // host:port
	TCP  string `json:"tcp"`  // host:port
}

// Target is the local service every check and probe of the bench goes to: an HTTP server
// and a TCP listener on loopback. It runs in a process of its own (bench/cmd/target) so
// that its CPU is counted for neither side.
//
// HTTP endpoints:
//
//	GET /ok             200 "ok"
//	GET /c/NAME         200 "ok", and records the arrival time under NAME
//	GET /slow/NAME?d=D  records the arrival, then answers after D (default 10s) or when the
//	                    client gives up
//	GET /arrivals       JSON {NAME: [unix nanoseconds, ...]} of every recorded arrival
//
// The TCP listener accepts each connection and closes it at once.
//
// Its methods are safe for concurrent use.
type Target struct {
	mu       sync.Mutex
	arrivals map[string][]int64
}

// NewTarget returns a Target with no arrivals recorded.
func NewTarget() *Target { return &Target{arrivals: map[string][]int64{}} }

// Handler serves the HTTP endpoints.
func (t *Target) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /c/{name}", func(w http.ResponseWriter, r *http.Request) {
		t.record(r.PathValue("name"))
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /slow/{name}", func(w http.ResponseWriter, r *http.Request) {
		t.record(r.PathValue("name"))
		d := 10 * time.Second
		if s := r.URL.Query().Get("d"); s != "" {
			v, err := time.ParseDuration(s)
			if err != nil {
				http.Error(w, "bad d: "+err.Error(), http.StatusBadRequest)
				return
			}
			d = v
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			_, _ = w.Write([]byte("late"))
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("GET /arrivals", func(w http.ResponseWriter, _ *http.Request) {
		t.mu.Lock()
		b, err := json.Marshal(t.arrivals)
		t.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	return mux
}

func (t *Target) record(name string) {
	now := time.Now().UnixNano()
	t.mu.Lock()
	t.arrivals[name] = append(t.arrivals[name], now)
	t.mu.Unlock()
}

// Serve serves HTTP on httpLn and the accept-and-close TCP service on tcpLn until ctx ends,
// then closes both and waits for its goroutines.
func (t *Target) Serve(ctx context.Context, httpLn, tcpLn net.Listener) error {
	srv := &http.Server{Handler: t.Handler(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		if err := srv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("target HTTP server: %w", err)
		}
	})
	wg.Go(func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					errs <- fmt.Errorf("target TCP accept: %w", err)
				}
				return
			}
			_ = c.Close()
		}
	})
	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	_ = srv.Close()
	_ = tcpLn.Close()
	wg.Wait()
	close(errs)
	return <-errs
}

// RunTarget listens on loopback (ports picked by the kernel), writes the addresses to
// addrsFile (atomically) and serves until ctx ends.
func RunTarget(ctx context.Context, addrsFile string) error {
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("target: listen for HTTP: %w", err)
	}
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("target: listen for TCP: %w", err)
	}
	b, _ := json.Marshal(TargetAddrs{HTTP: httpLn.Addr().String(), TCP: tcpLn.Addr().String()})
	tmp := addrsFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		err = os.Rename(tmp, addrsFile)
	}
	if err != nil {
		httpLn.Close()
		tcpLn.Close()
		return fmt.Errorf("target: write addresses to %s: %w", addrsFile, err)
	}
	return NewTarget().Serve(ctx, httpLn, tcpLn)
}

// StartTarget runs the target program (bench/cmd/target, built at bin) and waits until it
// serves.
func StartTarget(ctx context.Context, ps *Procs, bin string) (*Proc, TargetAddrs, error) {
	addrsFile := ps.Dir + "/target-addrs.json"
	_ = os.Remove(addrsFile)
	p, err := ps.Start("target", bin, "-addrs", addrsFile)
	if err != nil {
		return nil, TargetAddrs{}, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(addrsFile); err == nil {
			var a TargetAddrs
			if err := json.Unmarshal(b, &a); err != nil {
				return p, a, fmt.Errorf("target: read %s: %w", addrsFile, err)
			}
			return p, a, WaitHTTP(ctx, p, "http://"+a.HTTP+"/ok", 5*time.Second)
		}
		if p.Exited() || time.Now().After(deadline) {
			return p, TargetAddrs{}, fmt.Errorf("target did not start; its log (%s) ends:\n%s", p.LogPath, p.Tail(10))
		}
		select {
		case <-ctx.Done():
			return p, TargetAddrs{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Arrivals fetches the recorded arrival times from a target at addr (host:port).
func Arrivals(ctx context.Context, addr string) (map[string][]time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/arrivals", nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch arrivals from the target: %w", err)
	}
	defer resp.Body.Close()
	var raw map[string][]int64
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, fmt.Errorf("decode arrivals from the target: %w", err)
	}
	out := make(map[string][]time.Time, len(raw))
	for name, ns := range raw {
		ts := make([]time.Time, len(ns))
		for i, n := range ns {
			ts[i] = time.Unix(0, n)
		}
		out[name] = ts
	}
	return out, nil
}
