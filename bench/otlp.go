package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"

	"github.com/picket-dev/picket/cluster"
)

// OTLPReceiver is a minimal OTLP/gRPC server on 127.0.0.1: it accepts metrics (and
// ignores them) and logs, counting the log records whose body starts with its prefix:
// how many arrived, how many distinct ones, how many again. A record is identified by its
// picket.node and picket.seq attributes when it has them (what picket promises to be
// unique), else by its body. Safe for concurrent use; Close is idempotent.
type OTLPReceiver struct {
	collogspb.UnimplementedLogsServiceServer
	prefix string
	srv    *grpc.Server
	ln     net.Listener
	wg     sync.WaitGroup

	mu       sync.Mutex
	seen     map[string]int
	bodies   map[string]struct{}
	received int64
	last     time.Time

	metricExports atomic.Int64
	closeOnce     sync.Once
}

// otlpMetrics accepts metric exports.
type otlpMetrics struct {
	colmetricspb.UnimplementedMetricsServiceServer
	r *OTLPReceiver
}

// Export implements the OTLP metrics service.
func (m otlpMetrics) Export(context.Context, *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	m.r.metricExports.Add(1)
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

// StartOTLPReceiver listens on a free loopback port and serves until Close.
func StartOTLPReceiver(prefix string) (*OTLPReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("OTLP receiver: listen: %w", err)
	}
	r := &OTLPReceiver{prefix: prefix, ln: ln, srv: grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20)),
		seen: map[string]int{}, bodies: map[string]struct{}{}}
	collogspb.RegisterLogsServiceServer(r.srv, r)
	colmetricspb.RegisterMetricsServiceServer(r.srv, otlpMetrics{r: r})
	r.wg.Go(func() { _ = r.srv.Serve(ln) })
	return r, nil
}

// Addr is the host:port to export to.
func (r *OTLPReceiver) Addr() string { return r.ln.Addr().String() }

// Export implements the OTLP logs service.
func (r *OTLPReceiver) Export(_ context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				body := lr.GetBody().GetStringValue()
				if !strings.HasPrefix(body, r.prefix) {
					continue
				}
				key := recordKey(lr.GetAttributes(), body)
				r.seen[key]++
				r.bodies[body] = struct{}{}
				r.received++
				r.last = now
			}
		}
	}
	return &collogspb.ExportLogsServiceResponse{}, nil
}

// recordKey is picket.node/picket.seq when both are there, else the body.
func recordKey(attrs []*commonpb.KeyValue, body string) string {
	var node, seq string
	for _, kv := range attrs {
		switch kv.GetKey() {
		case "picket.node":
			node = kv.GetValue().GetStringValue()
		case "picket.seq":
			seq = strconv.FormatInt(kv.GetValue().GetIntValue(), 10)
		}
	}
	if node == "" || seq == "" {
		return "body:" + body
	}
	return node + "/" + seq
}

// ReceiverCounts are what an OTLPReceiver has seen of its prefix.
type ReceiverCounts struct {
	Received   int64     // records, repeats included
	Distinct   int       // distinct keys
	Bodies     int       // distinct bodies
	Duplicates int64     // records received more than once (Received - Distinct)
	Last       time.Time // when the last one arrived
}

// Counts returns the counts so far.
func (r *OTLPReceiver) Counts() ReceiverCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ReceiverCounts{Received: r.received, Distinct: len(r.seen), Bodies: len(r.bodies),
		Duplicates: r.received - int64(len(r.seen)), Last: r.last}
}

// Close stops the server.
func (r *OTLPReceiver) Close() {
	r.closeOnce.Do(func() {
		r.srv.Stop()
		r.wg.Wait()
	})
}

// waitReceived waits until r has want distinct records, or until nothing new arrived for
// quiet (and at most limit): the exporter has stopped sending.
func waitReceived(ctx context.Context, r *OTLPReceiver, want int, quiet, limit time.Duration) ReceiverCounts {
	start := time.Now()
	progress, last := start, -1
	for {
		c := r.Counts()
		if c.Distinct != last {
			progress, last = time.Now(), c.Distinct
		}
		if c.Distinct >= want || time.Since(progress) > quiet || time.Since(start) > limit {
			return c
		}
		if sleepCtx(ctx, 20*time.Millisecond) != nil {
			return c
		}
	}
}

// P11 burst shape: posts of otlpPost records, otlpPosters at a time.
const (
	otlpPost    = 1000
	otlpPosters = 8
)

// otlpSide is one side of P11.
type otlpSide struct {
	sent     int
	got      ReceiverCounts
	emitTook time.Duration // until the last record was accepted (posted and acknowledged, or emitted)
	drainEnd time.Duration // from the start until the last record reached the receiver
	counted  float64       // drops the side counted itself (picket: picket_logs_dropped_total)
	failures float64       // failed export attempts it counted (retried)
}

// otlpPicket starts a 3-agent cluster exporting to a receiver, posts n records in a burst
// (every agent in turn, with Idempotency-Keys) and waits for them at the receiver.
func (e *Env) otlpPicket(ctx context.Context, n int) (otlpSide, error) {
	side := otlpSide{sent: n}
	rcv, err := StartOTLPReceiver("p11-burst ")
	if err != nil {
		return side, err
	}
	defer rcv.Close()
	dir, err := e.runDir("picket-otlp")
	if err != nil {
		return side, err
	}
	extra := fmt.Sprintf("exporters:\n  prometheus: {enabled: true}\n  otlp: {endpoint: %q, protocol: grpc, insecure: true, interval: 1s, timeout: 5s, logs: true}\n",
		rcv.Addr())
	c, err := startPicketCluster(ctx, e.Procs, e.Picket, dir, clusterSetup{Profile: cluster.ProfileFast, Extra: extra + logsRetention})
	if err != nil {
		return side, err
	}
	defer c.Close()

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	posts := (n + otlpPost - 1) / otlpPost
	for w := range otlpPosters {
		wg.Go(func() {
			for {
				p := int(next.Add(1)) - 1
				if p >= posts {
					return
				}
				recs := make([]logRecord, 0, otlpPost)
				for i := p * otlpPost; i < min((p+1)*otlpPost, n); i++ {
					recs = append(recs, logRecord{Level: "info", Message: fmt.Sprintf("p11-burst %d", i)})
				}
				body, _ := json.Marshal(recs)
				h := http.Header{"Idempotency-Key": {fmt.Sprintf("p11-%d", p)}}
				node := c.Nodes[(p+w)%len(c.Nodes)]
				err := pollUntil(ctx, 30*time.Second, func() bool { // a 503 is retried with the same key
					status, _, err := c.post(ctx, node, "/v1/logs", h, body)
					return err == nil && status == http.StatusOK
				})
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("post %d to %s: %w", p, node.Name, err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	side.emitTook = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return side, err
	}
	side.got = waitReceived(ctx, rcv, n, 15*time.Second, 90*time.Second)
	if !side.got.Last.IsZero() {
		side.drainEnd = side.got.Last.Sub(start)
	}
	for _, node := range c.Nodes {
		ms, err := c.Metrics(ctx, node)
		if err != nil {
			return side, err
		}
		side.counted += Sum(ms, "picket_logs_dropped_total", nil)
		side.failures += Sum(ms, "picket_exporter_export_failures_total", nil)
	}
	return side, nil
}

// otlpSDK emits n records in a burst through an OTel SDK LoggerProvider with a default
// BatchProcessor and the OTLP/gRPC exporter, shuts it down (flushing what it kept) and
// counts what reached the receiver.
func otlpSDK(ctx context.Context, n int) (otlpSide, error) {
	side := otlpSide{sent: n}
	rcv, err := StartOTLPReceiver("p11-sdk ")
	if err != nil {
		return side, err
	}
	defer rcv.Close()
	exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(rcv.Addr()), otlploggrpc.WithInsecure())
	if err != nil {
		return side, fmt.Errorf("OTLP log exporter: %w", err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	logger := lp.Logger("picket-bench")
	start := time.Now()
	for i := range n {
		var r otellog.Record
		r.SetTimestamp(time.Now())
		r.SetSeverity(otellog.SeverityInfo)
		r.SetBody(attribute.StringValue(fmt.Sprintf("p11-sdk %d", i)))
		logger.Emit(ctx, r)
	}
	side.emitTook = time.Since(start)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := lp.Shutdown(sctx); err != nil {
		return side, fmt.Errorf("OTel SDK logger provider shutdown: %w", err)
	}
	side.got = waitReceived(ctx, rcv, n, 2*time.Second, 30*time.Second)
	if !side.got.Last.IsZero() {
		side.drainEnd = side.got.Last.Sub(start)
	}
	return side, nil
}

// OTLP runs P11: a burst of e.Plan.OTLPBurst log records through picket's cluster log to
// an OTLP receiver, against the same burst through the OTel SDK's default log pipeline.
func (e *Env) OTLP(ctx context.Context) ([]Row, error) {
	n := e.Plan.OTLPBurst
	e.logf("P11: OTel SDK defaults, burst of %d log records to an OTLP/gRPC receiver", n)
	sdk, err := otlpSDK(ctx, n)
	if err != nil {
		return nil, err
	}
	e.logf("P11: picket, burst of %d records posted to 3 agents, exported by the aggregator", n)
	pk, err := e.otlpPicket(ctx, n)
	if err != nil {
		return nil, err
	}
	drops := func(s otlpSide) float64 { return float64(s.sent - s.got.Distinct) }
	row := Row{ID: "P11", Metric: "OTLP export of a log burst: records dropped (vs OTel SDK defaults)", Unit: "records",
		Picket: Summarize([]float64{drops(pk)}), Baseline: Summarize([]float64{drops(sdk)}), Target: "0 drops, every drop counted"}
	row.Verdict = judge(drops(pk) == 0 && pk.got.Bodies == n && pk.counted == 0)
	row.Note = fmt.Sprintf("%d records; picket: %d POST /v1/logs of %d records (%d at a time, agents in turn, Idempotency-Key) to 3 agents "+
		"(profile fast) exporting with exporters.otlp {protocol: grpc, logs: true}, acknowledged after %s; "+
		"baseline: the same count emitted in a loop through an OTel SDK LoggerProvider with a default BatchProcessor (queue 2048, batch 512, 1 s) "+
		"and otlploggrpc, emitted in %s, then Shutdown; both to a minimal OTLP/gRPC receiver in the bench process counting distinct "+
		"records (picket.node+picket.seq, else body); picket received %d distinct of %d (%d distinct bodies), %d again (at least once "+
		"across a failover, exactly once otherwise), the last %s after the first post; picket_logs_dropped_total %s, "+
		"picket_exporter_export_failures_total %s (retried); the SDK counts its drops in no metric (a global-logger warning at verbosity 1 only)",
		n, (n+otlpPost-1)/otlpPost, otlpPost, otlpPosters, pk.emitTook.Round(time.Millisecond), sdk.emitTook.Round(time.Millisecond),
		pk.got.Distinct, n, pk.got.Bodies, pk.got.Duplicates, pk.drainEnd.Round(time.Millisecond), Num(pk.counted), Num(pk.failures))
	dup := Row{ID: "P11", Metric: "OTLP export of a log burst: records received twice", Unit: "records",
		Picket: Summarize([]float64{float64(pk.got.Duplicates)}), Baseline: Summarize([]float64{float64(sdk.got.Duplicates)}),
		Target: "0 (exactly once without failover)"}
	dup.Verdict = judge(pk.got.Duplicates == 0)
	rate := Row{Metric: "ref: picket OTLP export rate of the burst (first post to last record received)", Unit: "rec/s", Verdict: Info}
	if pk.drainEnd > 0 {
		rate.Picket = Summarize([]float64{float64(pk.got.Distinct) / pk.drainEnd.Seconds()})
	}
	return []Row{row, dup, rate}, nil
}
