package bench

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// picketBin returns $PICKET_BIN, or skips: these tests run real agents.
func picketBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("PICKET_BIN")
	if bin == "" {
		t.Skip("PICKET_BIN not set: build picket (CGO_ENABLED=0 go build -o /tmp/picket .) and set it to run real agents")
	}
	return bin
}

func TestPicketLogIngestAndFailover(t *testing.T) {
	bin := picketBin(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	procs := &Procs{Dir: t.TempDir()}
	defer procs.StopAll()
	lt, err := NewPicketLogFactory(bin, procs, PicketLogOptions{})(ctx, t.TempDir(), RaftProfileFast)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := lt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := lt.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}()
	res, err := MeasureIngest(ctx, lt, 16, 64, 256, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ingest: %d records in %s (%.0f/s), %d errors, p99 %s", res.Records, res.Elapsed, res.RecordsPerSecond(), res.Errors,
		time.Duration(Percentile(Seconds(res.Latencies), 99)*float64(time.Second)))
	if res.Records == 0 || res.Records != 64*res.Entries || len(res.Latencies) != int(res.Entries) {
		t.Errorf("ingest: %d records, %d entries, %d latencies", res.Records, res.Entries, len(res.Latencies))
	}
	if res.Lost != 0 || res.Errors != 0 {
		t.Errorf("ingest lost %d records, %d errors", res.Lost, res.Errors)
	}
	n, err := lt.Committed(ctx)
	if err != nil || n < res.Records {
		t.Errorf("Committed = %d, %v; want at least %d", n, err, res.Records)
	}
	d, err := MeasureFailover(ctx, lt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover (fast): %s", d)
	if d <= 0 || d > 20*time.Second {
		t.Errorf("failover took %s", d)
	}
	after, err := lt.Committed(ctx)
	if err != nil || after < n {
		t.Errorf("Committed after failover = %d, %v; want at least %d", after, err, n)
	}
}

func TestPicketRehome(t *testing.T) {
	bin := picketBin(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	procs := &Procs{Dir: t.TempDir()}
	defer procs.StopAll()
	tgt := NewTarget()
	srv := httptest.NewServer(tgt.Handler())
	defer srv.Close()
	c, err := startPicketCluster(ctx, procs, bin, t.TempDir(), clusterSetup{Profile: RaftProfileFast})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := MeasureRehome(ctx, c, strings.TrimPrefix(srv.URL, "http://"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if !res.WasLeader || res.Moved == 0 || res.Detect <= 0 || res.Rehome <= 0 {
		t.Errorf("MeasureRehome = %+v", res)
	}
}
