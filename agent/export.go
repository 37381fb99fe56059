package agent

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/picket-dev/picket/internal/logstore"
)

// Exporting the cluster log over OTLP: only the aggregator exports, in store order, and
// after each batch the exporter commits the last exported index through Raft (the export
// cursor), so a new aggregator resumes where the old one stopped. A batch exported just
// before a leader change may be sent again by the next aggregator (at least once across a
// failover, exactly once otherwise); every record carries picket.node and picket.seq so a
// pipeline can drop the repeat.

const (
	exportBatch   = 512
	exportBackoff = time.Second
)

// LogExport is what the aggregator exports the cluster log with.
type LogExport struct {
	Exporter sdklog.Exporter
	Resource *resource.Resource
}

// collector is an sdklog.Processor that keeps the records emitted through its provider,
// so that the caller exports them as one batch and knows whether the batch went out.
type collector struct {
	mu   sync.Mutex
	recs []sdklog.Record
}

func (c *collector) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.mu.Lock()
	c.recs = append(c.recs, r.Clone())
	c.mu.Unlock()
	return nil
}

func (c *collector) take() []sdklog.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.recs
	c.recs = nil
	return out
}

func (c *collector) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (c *collector) Shutdown(context.Context) error                         { return nil }
func (c *collector) ForceFlush(context.Context) error                       { return nil }

var severities = map[string]otellog.Severity{
	"debug": otellog.SeverityDebug, "info": otellog.SeverityInfo,
	"warn": otellog.SeverityWarn, "error": otellog.SeverityError,
}

// exportLogs runs on voters: while this agent is the aggregator it exports committed
// records past the export cursor. It returns when ctx ends.
func (a *Agent) exportLogs(ctx context.Context) error {
	ex := a.parts.LogExport
	col := &collector{}
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(ex.Resource), sdklog.WithProcessor(col))
	defer provider.Shutdown(context.Background())
	logger := provider.Logger("picket/cluster-log")
	rn := a.parts.Raft
	store := rn.Store()
	a.log.Info("the aggregator will export the cluster log over OTLP", "from_index", rn.ExportCursor())
	for {
		changed := store.Changed()
		if rn.IsLeader() {
			n, err := a.exportOnce(ctx, logger, col)
			if err != nil {
				a.log.Warn("cluster log export failed; retrying", "err", err)
				if !sleepCtx(ctx, exportBackoff) {
					return nil
				}
				continue
			}
			if n == exportBatch {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-time.After(time.Second): // leadership changes are not store changes
		}
	}
}

// exportOnce exports up to exportBatch records past the cursor and advances it.
func (a *Agent) exportOnce(ctx context.Context, logger otellog.Logger, col *collector) (int, error) {
	rn := a.parts.Raft
	cursor := rn.ExportCursor()
	recs, err := rn.Store().Since(cursor, exportBatch)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	for _, r := range recs {
		logger.Emit(ctx, toOTel(r))
	}
	batch := col.take()
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.parts.LogExport.Exporter.Export(ectx, batch); err != nil {
		return 0, err
	}
	next, err := rn.AdvanceExportCursor(ectx, recs[len(recs)-1].Index)
	if err != nil {
		return 0, err
	}
	a.log.Debug("exported cluster log records", "records", len(recs), "cursor", next)
	return len(recs), nil
}

func toOTel(r logstore.Record) otellog.Record {
	var o otellog.Record
	o.SetTimestamp(r.Time)
	o.SetObservedTimestamp(r.Time)
	o.SetSeverity(severities[r.Level])
	o.SetSeverityText(r.Level)
	o.SetBody(attribute.StringValue(r.Message))
	attrs := make([]attribute.KeyValue, 0, len(r.Attrs)+2)
	attrs = append(attrs, attribute.String("picket.node", r.Node), attribute.Int64("picket.seq", int64(r.Seq)))
	for k, v := range r.Attrs {
		attrs = append(attrs, attribute.String(k, v))
	}
	o.AddAttributes(attrs...)
	return o
}
