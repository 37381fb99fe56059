package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		in   []float64
		want Stat
	}{
		{nil, Stat{}},
		{[]float64{3}, Stat{Median: 3, Min: 3, Max: 3, N: 1}},
		{[]float64{5, 1, 3}, Stat{Median: 3, Min: 1, Max: 5, N: 3}},
		{[]float64{4, 1, 3, 2}, Stat{Median: 2.5, Min: 1, Max: 4, N: 4}},
	}
	for _, tt := range tests {
		if got := Summarize(tt.in); got != tt.want {
			t.Errorf("Summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100..1, unsorted
	}
	tests := []struct {
		in   []float64
		p    float64
		want float64
	}{
		{nil, 99, 0},
		{[]float64{7}, 50, 7},
		{hundred, 99, 99},
		{hundred, 50, 50},
		{hundred, 100, 100},
		{[]float64{1, 2, 3}, 99, 3},
	}
	for _, tt := range tests {
		if got := Percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("Percentile(%d values, %v) = %v, want %v", len(tt.in), tt.p, got, tt.want)
		}
	}
	if got := Seconds([]time.Duration{1500 * time.Millisecond}); got[0] != 1.5 {
		t.Errorf("Seconds = %v", got)
	}
}

func TestNumAndFormat(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want string
	}{
		{656861.2, "656861"}, {24.76, "24.8"}, {3.527, "3.53"}, {0.1333, "0.133"}, {0.004, "0.004"}, {0, "0"}, {168, "168"},
	} {
		if got := Num(tt.v); got != tt.want {
			t.Errorf("Num(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
	if got := (Stat{Median: 12.34, Min: 11.9, Max: 12.8, N: 3}).Format("ms"); got != "12.3 ms (11.9–12.8)" {
		t.Errorf("Format = %q", got)
	}
	if got := (Stat{Median: 2, Min: 2, Max: 2, N: 1}).Format("s"); got != "2 s" {
		t.Errorf("Format of one = %q", got)
	}
	if got := (Stat{}).Format("s"); got != "—" {
		t.Errorf("Format of none = %q", got)
	}
}

func TestTables(t *testing.T) {
	rows := []Row{
		{ID: "P1", Metric: "cpu | per scrape", Unit: "ms", Picket: Summarize([]float64{3}), Baseline: Summarize([]float64{6}),
			Target: "≤ 0.6×", Verdict: OK, Note: "how"},
		{ID: "P7", Metric: "ingest", Unit: "rec/s", Baseline: Summarize([]float64{1000}), Target: "≥ 0.7×", Verdict: Pending},
		{Metric: "ref: x", Verdict: Info},
	}
	if r := rows[0].Ratio(); r != 0.5 {
		t.Errorf("Ratio = %v, want 0.5", r)
	}
	if r := rows[1].Ratio(); r != 0 {
		t.Errorf("Ratio without picket = %v, want 0", r)
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, rows); err != nil {
		t.Fatal(err)
	}
	want := "| metric | picket | baseline | ratio | target | verdict |\n" +
		"|---|---|---|---|---|---|\n" +
		"| P1 cpu \\| per scrape | 3 ms | 6 ms | 0.50× | ≤ 0.6× | ok |\n" +
		"| P7 ingest | pending | 1000 rec/s | — | ≥ 0.7× | pending |\n" +
		"| ref: x | — | — | — |  | info |\n" +
		"\n- P1: how\n"
	if md.String() != want {
		t.Errorf("WriteMarkdown:\n%s\nwant:\n%s", md.String(), want)
	}
	var txt bytes.Buffer
	if err := WriteText(&txt, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(txt.String(), "\n")
	if !strings.HasPrefix(lines[0], "metric ") || !strings.Contains(lines[1], "0.50×") || !strings.HasSuffix(strings.TrimSpace(lines[1]), "ok") {
		t.Errorf("WriteText:\n%s", txt.String())
	}
}

func TestComponentLines(t *testing.T) {
	top := `File: pkg.test
Duration: 2.33s, Total samples = 3.28s (140.64%)
Showing nodes accounting for 0.65s, 19.82% of 3.28s total
      flat  flat%   sum%        cum   cum%
         0     0%     0%      2.01s 61.28%  github.com/prometheus/client_golang/prometheus.(*Registry).Gather.func1
         0     0%  0.61%      0.81s 24.70%  github.com/picket-dev/picket/exporters.BenchmarkScrape
         0     0%  0.61%      0.81s 24.70%  net/http.HandlerFunc.ServeHTTP
     0.07s  2.13%  2.74%      0.61s 18.60%  runtime.mallocgc
         0     0% 18.90%      0.34s 10.37%  go.opentelemetry.io/otel/sdk/metric.(*ManualReader).Collect
`
	got := componentLines(top, "BenchmarkScrape", 2)
	want := "    Duration: 2.33s, Total samples = 3.28s (140.64%)\n" +
		"      flat  flat%   sum%        cum   cum%  (cumulative CPU of each component)\n" +
		"             0     0%     0%      2.01s 61.28%  github.com/prometheus/client_golang/prometheus.(*Registry).Gather.func1\n" +
		"         0.07s  2.13%  2.74%      0.61s 18.60%  runtime.mallocgc\n"
	if got != want {
		t.Errorf("componentLines:\n%s\nwant:\n%s", got, want)
	}
}
