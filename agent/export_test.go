package agent

import (
	"context"
	"sync"
	"testing"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/picket-dev/picket/internal/api"
)

// memExporter keeps what it is given; the real OTLP path is covered in e2e against a
// collector.
type memExporter struct {
	mu   sync.Mutex
	recs []sdklog.Record
}

func (m *memExporter) Export(_ context.Context, rs []sdklog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range rs {
		m.recs = append(m.recs, r.Clone())
	}
	return nil
}
func (m *memExporter) Shutdown(context.Context) error   { return nil }
func (m *memExporter) ForceFlush(context.Context) error { return nil }

func (m *memExporter) bodies() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.recs {
		out = append(out, r.Body().AsString())
	}
	return out
}

func TestExportLogsOnce(t *testing.T) {
	cfg := testConfig(t)
	a, base := startAgent(t, cfg)
	waitFor(t, 10*time.Second, func() string {
		if !a.parts.Raft.IsLeader() {
			return "not leader yet"
		}
		return ""
	})
	if code, body := postLogs(t, base, "", []api.LogRecord{{Level: "error", Message: "export me"}}); code != 200 {
		t.Fatalf("post: %d %s", code, body)
	}
	exp := &memExporter{}
	a.parts.LogExport = &LogExport{Exporter: exp, Resource: resource.Empty()}
	col := &collector{}
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(resource.Empty()), sdklog.WithProcessor(col))
	defer provider.Shutdown(context.Background())
	n, err := a.exportOnce(context.Background(), provider.Logger("t"), col)
	if err != nil || n == 0 {
		t.Fatalf("exportOnce: %d %v", n, err)
	}
	found := false
	for _, b := range exp.bodies() {
		found = found || b == "export me"
	}
	if !found {
		t.Fatalf("exported %v, want the posted record", exp.bodies())
	}
	if c := a.parts.Raft.ExportCursor(); c == 0 {
		t.Fatalf("export cursor not advanced")
	}
	// Nothing new: nothing exported again.
	if n, err := a.exportOnce(context.Background(), provider.Logger("t"), col); n != 0 || err != nil {
		t.Fatalf("second exportOnce: %d %v", n, err)
	}
}
