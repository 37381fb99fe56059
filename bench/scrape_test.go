package bench

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

const exposition = `# HELP picket_check_runs_total Check runs.
# TYPE picket_check_runs_total counter
picket_check_runs_total{check="a",node="n1",reason="",result="passing"} 10
picket_check_runs_total{check="b",node="n1",reason="timeout",result="critical"} 2
picket_check_runs_total{check="c, \"q\" }",node="n1",reason="",result="passing"} 5
go_goroutines 12
weird{broken 3
system_cpu_load_average_1m 0.5 1700000000000
`

func TestParseExposition(t *testing.T) {
	samples := ParseExposition(exposition)
	if len(samples) != 5 {
		t.Fatalf("parsed %d samples, want 5: %+v", len(samples), samples)
	}
	if got := samples[2].Labels["check"]; got != `c, "q" }` {
		t.Errorf("escaped label = %q", got)
	}
	for _, tt := range []struct {
		name  string
		match map[string]string
		want  float64
	}{
		{"picket_check_runs_total", nil, 17},
		{"picket_check_runs_total", map[string]string{"result": "passing"}, 15},
		{"picket_check_runs_total", map[string]string{"result": "passing", "check": "a"}, 10},
		{"go_goroutines", nil, 12},
		{"system_cpu_load_average_1m", nil, 0.5},
		{"absent", nil, 0},
	} {
		if got := Sum(samples, tt.name, tt.match); got != tt.want {
			t.Errorf("Sum(%s, %v) = %v, want %v", tt.name, tt.match, got, tt.want)
		}
	}
	if n := SeriesCount(exposition); n != 5 {
		t.Errorf("SeriesCount = %d, want 5", n)
	}
}

func TestScraper(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(exposition))
	}))
	defer srv.Close()
	s := NewScraper(srv.URL + "/metrics")
	defer s.Close()
	body, lat, err := s.Scrape(t.Context())
	if err != nil || body != exposition || lat <= 0 {
		t.Errorf("Scrape = %d bytes, %v, %v", len(body), lat, err)
	}
	bad := NewScraper(srv.URL + "/nope")
	defer bad.Close()
	if _, _, err := bad.Scrape(t.Context()); err == nil {
		t.Error("Scrape of a 404: no error")
	}
}
