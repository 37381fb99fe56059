package cluster

import (
	"testing"
	"time"
)

func TestProfiles(t *testing.T) {
	tests := []struct {
		profile   string
		probe     time.Duration
		detection time.Duration
	}{
		{"", time.Second, 7600 * time.Millisecond},
		{ProfileLAN, time.Second, 7600 * time.Millisecond},
		{ProfileWAN, 5 * time.Second, 46500 * time.Millisecond},
		{ProfileFast, 200 * time.Millisecond, 1150 * time.Millisecond},
	}
	for _, tt := range tests {
		c, err := profileConfig(tt.profile)
		if err != nil {
			t.Fatalf("profileConfig(%q): %v", tt.profile, err)
		}
		if c.ProbeInterval != tt.probe {
			t.Errorf("%q: ProbeInterval = %s, want %s", tt.profile, c.ProbeInterval, tt.probe)
		}
		if got := DetectionTime(tt.profile); got != tt.detection {
			t.Errorf("DetectionTime(%q) = %s, want %s", tt.profile, got, tt.detection)
		}
	}
	if DetectionTime(ProfileFast) >= DetectionTime(ProfileLAN) || DetectionTime(ProfileLAN) >= DetectionTime(ProfileWAN) {
		t.Error("want fast < lan < wan detection times")
	}
	if DetectionTime("turbo") != DetectionTime(ProfileLAN) {
		t.Error("an unknown profile should get lan's detection time")
	}
	if _, err := profileConfig("turbo"); err == nil {
		t.Error("profileConfig(turbo) succeeded, want an error")
	}
}
