package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/picket-dev/picket/internal/api"
)

// defaultHTTPAddr is where client commands find the local agent.
const defaultHTTPAddr = "127.0.0.1:7948"

// clientFlags are the flags every client command shares.
type clientFlags struct {
	addr    string
	output  string
	timeout time.Duration
}

func addClientFlags(e *env, fs *flag.FlagSet) *clientFlags {
	f := &clientFlags{}
	addr := e.getenv("PICKET_HTTP_ADDR")
	if addr == "" {
		addr = defaultHTTPAddr
	}
	fs.StringVar(&f.addr, "http-addr", addr, "agent HTTP address, host:port or a URL (env PICKET_HTTP_ADDR)")
	fs.StringVar(&f.output, "o", "table", "output format: table or json")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for the agent")
	return f
}

func (f *clientFlags) check() error {
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("-o %q: want table or json", f.output)
	}
	return nil
}

// client calls a picket agent's HTTP API.
type client struct {
	base  string
	token string
	http  *http.Client
}

func newClient(e *env, f *clientFlags) *client {
	base := f.addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &client{
		base:  strings.TrimRight(base, "/"),
		token: e.getenv("PICKET_TOKEN"),
		http:  &http.Client{Timeout: f.timeout},
	}
}

// events sends a request (with an optional JSON body) for a Server-Sent Events stream and
// calls on with each event's name and data until on reports done or fails. A stream that
// ends first returns io.EOF; a non-200 answer an error carrying the API's message. Lines
// may be up to maxLine bytes.
func (c *client) events(ctx context.Context, method, path string, body any, maxLine int, on func(event string, data []byte) (done bool, err error)) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s (HTTP %d)", method, path, e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if done, err := on(event, []byte(strings.TrimPrefix(line, "data: "))); done || err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s %s: reading the stream: %w", method, path, err)
	}
	return io.EOF
}

// do sends a request with an optional JSON body and decodes a JSON answer into out. A non-2xx
// answer becomes an error carrying the API's message.
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w (is `picket agent` running? set --http-addr or PICKET_HTTP_ADDR)", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s (HTTP %d)", method, path, e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, oneLine(string(data), 200))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: malformed answer: %w", method, path, err)
	}
	return nil
}

// printJSON writes v indented, for -o json.
func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
