package bench

import (
	"context"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
)

func TestRecordKey(t *testing.T) {
	str := func(s string) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
	}
	num := func(n int64) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: n}}
	}
	for _, tc := range []struct {
		name  string
		attrs []*commonpb.KeyValue
		want  string
	}{
		{"picket ids", []*commonpb.KeyValue{{Key: "picket.node", Value: str("n2")}, {Key: "x", Value: str("y")}, {Key: "picket.seq", Value: num(17)}}, "n2/17"},
		{"no seq", []*commonpb.KeyValue{{Key: "picket.node", Value: str("n2")}}, "body:b"},
		{"none", nil, "body:b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := recordKey(tc.attrs, "b"); got != tc.want {
				t.Errorf("recordKey = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestOTLPReceiverSDK sends records through the OTel SDK's real OTLP/gRPC exporter: a
// burst small enough for the default queue arrives complete, once each.
func TestOTLPReceiverSDK(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := otlpSDK(ctx, 500)
	if err != nil {
		t.Fatal(err)
	}
	if s.got.Distinct != 500 || s.got.Bodies != 500 || s.got.Duplicates != 0 {
		t.Errorf("received %+v, want 500 distinct records once each", s.got)
	}
	// A burst far over the queue (2048): what P11's baseline measures; never more than sent.
	s, err = otlpSDK(ctx, 20000)
	if err != nil {
		t.Fatal(err)
	}
	if s.got.Distinct > 20000 || s.got.Duplicates != 0 || s.got.Distinct == 0 {
		t.Errorf("received %+v of a 20000-record burst", s.got)
	}
	t.Logf("OTel SDK defaults kept %d of a 20000-record burst", s.got.Distinct)
}
