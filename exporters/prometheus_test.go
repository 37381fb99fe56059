package exporters

import (
	"compress/gzip"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/picket-dev/picket/internal/config"
)

// prometheusAccept is what Prometheus 2.x sends (without native histograms).
const prometheusAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

func get(t testing.TB, h http.Handler, url string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, rec.Code, rec.Body)
	}
	return rec
}

// TestScrapeDirectMatchesPromhttp checks that the direct text path serves what promhttp
// serves for the same families (the fallback), apart from values that move between two
// scrapes (Go runtime, process, promhttp's own counters).
func TestScrapeDirectMatchesPromhttp(t *testing.T) {
	tel, _ := fullSetup(t)
	mh := tel.metrics
	direct := get(t, tel.Handler(), "/metrics", map[string]string{"Accept": prometheusAccept})
	rec := httptest.NewRecorder()
	mh.fallback.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if got, want := direct.Header().Get("Content-Type"), rec.Header().Get("Content-Type"); got != want {
		t.Errorf("Content-Type %q, promhttp %q", got, want)
	}
	if got, want := direct.Header().Values("Vary"), rec.Header().Values("Vary"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Vary %q, promhttp %q", got, want)
	}
	stable := func(body string) string {
		var keep []string
		for line := range strings.SplitSeq(body, "\n") {
			name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
			if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") ||
				strings.HasPrefix(name, "picket_collector_duration_seconds") {
				if strings.HasPrefix(line, "#") {
					keep = append(keep, line) // HELP and TYPE are stable
				}
				continue
			}
			keep = append(keep, line)
		}
		return strings.Join(keep, "\n")
	}
	if got, want := stable(direct.Body.String()), stable(rec.Body.String()); got != want {
		t.Errorf("direct path and promhttp differ\n--- direct:\n%s\n--- promhttp:\n%s", got, want)
	}
}

func TestScrapeGzip(t *testing.T) {
	tel := newTelemetry(t, prometheusOn(), nil)
	rec := get(t, tel.Handler(), "/metrics", map[string]string{"Accept": prometheusAccept, "Accept-Encoding": "gzip"})
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding = %q, want gzip", rec.Header().Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := parse(t, string(body))["picket_build_info"]; !ok {
		t.Errorf("gzipped exposition lacks picket_build_info:\n%s", body)
	}
	plain := get(t, tel.Handler(), "/metrics", nil)
	if plain.Header().Get("Content-Encoding") != "" || plain.Header().Get("Content-Length") != strconv.Itoa(plain.Body.Len()) {
		t.Errorf("uncompressed response: Content-Encoding %q, Content-Length %q for %d bytes",
			plain.Header().Get("Content-Encoding"), plain.Header().Get("Content-Length"), plain.Body.Len())
	}
}

func prometheusOn() config.Exporters {
	return config.Exporters{Prometheus: config.Prometheus{Enabled: true}}
}

func TestNegotiateEncoding(t *testing.T) {
	cases := []struct {
		header []string
		want   string
		ok     bool
	}{
		{nil, "identity", true},
		{[]string{"gzip"}, "gzip", true},
		{[]string{"gzip, deflate, br"}, "gzip", true},
		{[]string{"GZIP"}, "gzip", true},
		{[]string{"gzip;q=0"}, "identity", true},
		{[]string{"*"}, "identity", true}, // promhttp prefers identity on a tie
		{[]string{"identity;q=0.5, gzip"}, "gzip", true},
		{[]string{"identity;q=0.5", "gzip;q=0.8"}, "gzip", true},
		{[]string{"br"}, "identity", true},
		{[]string{"gzip;q=x"}, "", false},
		{[]string{"gzip;level=1"}, "", false},
	}
	for _, c := range cases {
		got, ok := negotiateEncoding(c.header)
		if got != c.want || ok != c.ok {
			t.Errorf("negotiateEncoding(%q) = %q, %v; want %q, %v", c.header, got, ok, c.want, c.ok)
		}
	}
}

// TestScrapeProtobufAndFilter checks the requests the direct path leaves to promhttp.
func TestScrapeProtobufAndFilter(t *testing.T) {
	tel := newTelemetry(t, prometheusOn(), nil)
	rec := get(t, tel.Handler(), "/metrics", map[string]string{
		"Accept": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3",
	})
	format := expfmt.ResponseFormat(rec.Header())
	if format.FormatType() != expfmt.TypeProtoDelim {
		t.Fatalf("Content-Type %q, want delimited protobuf", rec.Header().Get("Content-Type"))
	}
	dec := expfmt.NewDecoder(rec.Body, format)
	names := map[string]dto.MetricType{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		names[mf.GetName()] = mf.GetType()
	}
	for _, n := range []string{"picket_build_info", "target_info", "process_cpu_seconds_total", "go_goroutines"} {
		if _, ok := names[n]; !ok {
			t.Errorf("protobuf exposition lacks %s", n)
		}
	}

	body := get(t, tel.Handler(), "/metrics?name[]=picket_build_info&name[]=process_open_fds", nil).Body.String()
	fams := parse(t, body)
	if len(fams) != 2 || fams["picket_build_info"] == nil || fams["process_open_fds"] == nil {
		t.Errorf("name[] filter served %d families:\n%s", len(fams), body)
	}
}

// TestConcurrentScrapes runs scrapes in parallel (with -race, this checks the renderer's
// and the process collector's locking).
func TestConcurrentScrapes(t *testing.T) {
	tel, _ := fullSetup(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			hdr := map[string]string{}
			if i%2 == 0 {
				hdr["Accept-Encoding"] = "gzip"
			}
			for range 10 {
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				rec := httptest.NewRecorder()
				tel.Handler().ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					errs <- errors.New(rec.Body.String())
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	fams := parse(t, scrape(t, tel.Handler()))
	if v := fams["promhttp_metric_handler_requests_total"]; v == nil {
		t.Error("no promhttp_metric_handler_requests_total")
	} else if total := counterSum(v); total < 80 {
		t.Errorf("promhttp_metric_handler_requests_total = %v, want ≥ 80", total)
	}
}

func counterSum(f *dto.MetricFamily) float64 {
	var s float64
	for _, m := range f.GetMetric() {
		s += m.GetCounter().GetValue()
	}
	return s
}

// TestProcessCollectorMatchesClientGolang compares picket's process collector with
// client_golang's, which reads the same figures from /proc the slow way.
func TestProcessCollectorMatchesClientGolang(t *testing.T) {
	gather := func(c prometheus.Collector) map[string]float64 {
		t.Helper()
		reg := prometheus.NewPedanticRegistry()
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			out[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return out
	}
	ours := gather(newProcessCollector())
	theirs := gather(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for name, want := range theirs {
		got, ok := ours[name]
		if strings.HasPrefix(name, "process_network_") {
			if ok {
				t.Errorf("%s is exported; it was left out on purpose (namespace-wide, costly)", name)
			}
			continue
		}
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		tol := 0.0
		switch name {
		case "process_cpu_seconds_total":
			tol = 0.05 // ticks of 10 ms against microseconds, and time passing
		case "process_resident_memory_bytes", "process_virtual_memory_bytes":
			tol = 0.1 * want // the runtime maps memory between the two reads
		case "process_open_fds":
			tol = 2
		}
		if math.Abs(got-want) > tol {
			t.Errorf("%s = %v, client_golang %v", name, got, want)
		}
	}
	if len(ours) != 7 {
		t.Errorf("%d process metrics, want 7: %v", len(ours), ours)
	}
	if st := ours["process_start_time_seconds"]; st < float64(time.Now().Add(-time.Hour).Unix()) || st > float64(time.Now().Unix()+1) {
		t.Errorf("process_start_time_seconds = %v, not within the last hour", st)
	}
}
