package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// sseWriter streams Server-Sent Events. Each event is `id`, `event` and one `data` line of
// JSON; a comment line every keepalive keeps proxies from closing an idle stream.
type sseWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

const sseKeepalive = 15 * time.Second

// startSSE sends the SSE headers, or answers 500 when the connection cannot stream.
func startSSE(w http.ResponseWriter) (*sseWriter, bool) {
	f, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("streaming is not supported on this connection"))
		return nil, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	return &sseWriter{w: w, f: f}, true
}

func (s *sseWriter) send(id uint64, event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "id: %d\nevent: %s\ndata: %s\n\n", id, event, b); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

func (s *sseWriter) keepalive() error {
	if _, err := fmt.Fprint(s.w, ": keepalive\n\n"); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}
