package bench

import (
	"context"
	"testing"
	"time"
)

func TestMeasureMembership(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	res, err := MeasureMembership(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if res.Converge <= 0 || res.Converge > 20*time.Second {
		t.Errorf("convergence of 5 agents took %s", res.Converge)
	}
	if res.Detect <= 0 || res.Detect > 20*time.Second {
		t.Errorf("detection took %s", res.Detect)
	}
	if _, err := MeasureMembership(ctx, 1); err == nil {
		t.Error("MeasureMembership(1): no error")
	}
}
