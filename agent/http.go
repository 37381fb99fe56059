package agent

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/picket-dev/picket/agent/ui"
)

// Body limits of the API. Larger bodies get 413.
const (
	maxRunBody = 64 << 10
)

// Handler returns the agent's HTTP handler: /healthz, /readyz and /metrics are open; every
// /v1 route needs the bearer token when http.token is set.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", a.handleReady)
	mux.Handle("GET /ui/", ui.Handler())
	mux.Handle("GET /{$}", http.RedirectHandler(ui.Prefix, http.StatusFound))
	if h := a.parts.MetricsHandler; h != nil {
		mux.Handle("GET /metrics", h)
	}

	v1 := http.NewServeMux()
	v1.HandleFunc("GET /v1/agent", a.handleAgent)
	v1.HandleFunc("GET /v1/checks", a.handleChecks)
	v1.HandleFunc("POST /v1/checks", a.handlePostCheck)
	v1.HandleFunc("DELETE /v1/checks/{name}", a.handleDeleteCheck)
	v1.HandleFunc("POST /v1/run", a.handleRun)
	v1.HandleFunc("POST /v1/sweep", a.handleSweep)
	v1.HandleFunc("GET /v1/leader", a.handleLeader)
	v1.HandleFunc("POST /v1/logs", a.handlePostLogs)
	v1.HandleFunc("GET /v1/logs", a.handleGetLogs)
	v1.HandleFunc("GET /v1/registry", a.handleRegistryList)
	v1.HandleFunc("PUT /v1/registry/{name}", a.handleRegister)
	v1.HandleFunc("GET /v1/registry/{name}", a.handleWhereis)
	v1.HandleFunc("DELETE /v1/registry/{name}", a.handleUnregister)
	v1.HandleFunc("GET /v1/members", a.handleMembers)
	v1.HandleFunc("POST /v1/members/join", a.handleJoin)
	v1.HandleFunc("POST /v1/members/leave", a.handleLeave)
	v1.HandleFunc("GET /v1/members/{name}/ping", a.handlePing)
	v1.HandleFunc("GET /v1/events", a.handleEvents)
	v1.HandleFunc("GET /v1/keyring", a.handleKeyringList)
	v1.HandleFunc("POST /v1/keyring", a.handleKeyringChange)
	v1.HandleFunc("DELETE /v1/keyring", a.handleKeyringChange)
	v1.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	mux.Handle("/v1/", a.authorize(v1))
	return mux
}

// authorize requires "Authorization: Bearer TOKEN" when http.token is set. The token is read
// on every request so that a reload could change it (today it needs a restart).
func (a *Agent) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := a.Config().HTTP.Token.Value()
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="picket"`)
				writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token: send Authorization: Bearer $PICKET_TOKEN"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// readBody reads a request body of at most limit bytes. It writes the error answer (413,
// or 400 when the body cannot be read) itself and reports whether body is good.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	size := int64(512)
	if n := r.ContentLength; n >= 0 && n < limit {
		size = n + 1 // room to see the end without growing
	}
	body := make([]byte, 0, size)
	rd := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := rd.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			return body, true
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body is larger than %d bytes", limit))
			} else {
				writeError(w, http.StatusBadRequest, fmt.Errorf("read request body: %w", err))
			}
			return nil, false
		}
	}
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// errTrailingData is the error for a body with more after its JSON value.
var errTrailingData = errors.New("unexpected data after the JSON value")

// decodeBody decodes a JSON body of at most limit bytes into v, rejecting unknown fields and
// trailing data. It writes the error answer (400 or 413) itself and reports whether v is good.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errTrailingData
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body is larger than %d bytes", limit))
		return false
	}
	writeError(w, http.StatusBadRequest, fmt.Errorf("malformed JSON body: %w", err))
	return false
}
