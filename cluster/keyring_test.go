package cluster

import (
	"errors"
	"testing"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		in      string
		wantLen int
	}{
		{"cGlja2V0LXRlc3Qta2V5IQ==", 16},
		{" cGlja2V0LXRlc3Qta2V5IQ==\n", 16},
		{"c2Vjb25kLWtleS1mb3Itcm90YXRpb24tMzJieXRlcyE=", 32},
		{"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3", 24},
		{"bm90IGEga2V5", 0}, // 9 bytes
		{"not base64!!", 0}, // not base64
		{"", 0},             // empty
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if tt.wantLen == 0 {
			if !errors.Is(err, ErrBadKey) {
				t.Errorf("ParseKey(%q) = %v, want ErrBadKey", tt.in, err)
			}
			continue
		}
		if err != nil || len(k) != tt.wantLen {
			t.Errorf("ParseKey(%q) = %d bytes, %v; want %d bytes", tt.in, len(k), err, tt.wantLen)
		}
	}
}
