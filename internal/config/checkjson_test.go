package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeCheckJSON(t *testing.T) {
	httpCheck := func(f func(c *Check)) Check {
		c := NewCheck("api", TypeHTTP)
		c.HTTP.URL = "http://127.0.0.1:8080/health"
		f(&c)
		return c
	}
	tests := []struct {
		name string
		in   string
		want Check  // when err is empty
		err  string // the full error message
	}{
		{
			name: "defaults",
			in:   `{"name": "api", "type": "http", "http": {"url": "http://127.0.0.1:8080/health"}}`,
			want: httpCheck(func(*Check) {}),
		},
		{
			name: "every common key",
			in: `{"name": "api", "type": "http", "placement": "cluster", "vantage": {"nodes": 3, "quorum": 2},
				"interval": "20s", "timeout": "3s", "thresholds": {"failures_before_critical": 5},
				"flap": {"window": "1m"},
				"http": {"url": "http://127.0.0.1:8080/health", "method": "HEAD", "expect_status": ["204"],
				         "headers": {"X-A": "b"}, "follow_redirects": false, "tls": {"warning_days": 30}}}`,
			want: httpCheck(func(c *Check) {
				c.Placement = PlacementCluster
				c.Vantage = Vantage{Nodes: 3, Quorum: 2}
				c.Interval, c.Timeout = Duration(20*time.Second), Duration(3*time.Second)
				c.Thresholds.FailuresBeforeCritical = 5
				c.Flap.Window = Duration(time.Minute)
				c.HTTP.Method, c.HTTP.ExpectStatus, c.HTTP.FollowRedirects = "HEAD", []string{"204"}, false
				c.HTTP.Headers = map[string]string{"X-A": "b"}
				c.HTTP.TLS.WarningDays = 30
			}),
		},
		{
			name: "short interval sets the timeout",
			in:   `{"name": "api", "type": "http", "interval": "2s", "timeout": null, "http": {"url": "http://127.0.0.1:8080/health"}}`,
			want: httpCheck(func(c *Check) { c.Interval, c.Timeout = Duration(2*time.Second), Duration(2*time.Second) }),
		},
		{
			name: "dns defaults",
			in:   `{"name": "r", "type": "dns", "dns": {"name": "localhost", "server": "127.0.0.1:53"}}`,
			want: func() Check {
				c := NewCheck("r", TypeDNS)
				c.DNS.Name, c.DNS.Server = "localhost", "127.0.0.1:53"
				return c
			}(),
		},
		{
			name: "validation",
			in:   `{"name": "api", "type": "http", "http": {"url": "ftp://127.0.0.1/"}, "tcp": {"address": "127.0.0.1:1"}}`,
			err: `check.tcp: does not fit type "http"; remove it (a check has only the block named by its type)` + "\n" +
				`check.http.url: "ftp://127.0.0.1/" is not an http:// or https:// URL`,
		},
		{
			name: "unknown keys, any case",
			in:   `{"Name": "api", "type": "tcp", "intervl": "5s", "tcp": {"adress": "127.0.0.1:1"}}`,
			err: `check.Name: unknown key; did you mean "name"?` + "\n" +
				`check.intervl: unknown key; did you mean "interval"?` + "\n" +
				`check.tcp.adress: unknown key; did you mean "address"?`,
		},
		{
			name: "wrong types",
			in:   `{"name": 5, "type": "http", "interval": 10, "timeout": "soon", "vantage": {"nodes": "3", "quorum": 1.5}, "http": [], "placement": true}`,
			err: `check.http: must be an object, not a list` + "\n" +
				`check.interval: 10 is not a duration; use a string with a unit, like "10s", "5m" or "168h"` + "\n" +
				`check.name: must be a string, not the number 5` + "\n" +
				`check.placement: must be a string, not the boolean true` + "\n" +
				`check.timeout: "soon" is not a duration (use a number with a unit, like 10s, 5m or 168h)` + "\n" +
				`check.vantage.nodes: must be a whole number, not the string "3"` + "\n" +
				`check.vantage.quorum: 1.5 is not a whole number`,
		},
		{
			name: "null block is no block",
			in:   `{"name": "api", "type": "http", "http": null}`,
			err:  `check: type "http" needs a "http:" block with its settings, like http: {url: http://127.0.0.1:8080/health}`,
		},
		{name: "not an object", in: `["api"]`, err: `check: must be a JSON object, not a list`},
		{name: "null", in: `null`, err: `check: must be a JSON object, not null`},
		{name: "truncated", in: `{"name": "api"`, err: `check: invalid JSON: the body ends before the check object does`},
		{name: "syntax", in: `{"name": 'api'}`, err: `check: invalid JSON at byte 10: invalid character '\'' looking for beginning of value`},
		{name: "trailing data", in: `{"name": "api"} {}`, err: `check: unexpected data after the check object; send one JSON object`},
		{name: "empty", in: ``, err: `check: invalid JSON: the body ends before the check object does`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeCheckJSON([]byte(tt.in))
			if tt.err != "" {
				if err == nil {
					t.Fatalf("decoded %+v, want error:\n%s", got, tt.err)
				}
				var errs Errors
				if !errors.As(err, &errs) {
					t.Errorf("error is %T, want Errors", err)
				}
				if err.Error() != tt.err {
					t.Errorf("error:\n%s\nwant:\n%s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCheckValidate(t *testing.T) {
	valid := []Check{
		func() Check { c := NewCheck("t", TypeTCP); c.TCP.Address = "127.0.0.1:1"; return c }(),
		func() Check { c := NewCheck("g", TypeGRPC); c.GRPC.Address = "[::1]:50051"; return c }(),
		func() Check { c := NewCheck("s", TypeTLS); c.TLS.Address = "localhost:443"; return c }(),
		func() Check { c := NewCheck("e", TypeExec); c.Exec.Command = []string{"/bin/true"}; return c }(),
	}
	for _, c := range valid {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	c := NewCheck("x", TypeTCP)
	c.TCP.Address = "127.0.0.1:1"
	c.Interval, c.Timeout = Duration(time.Second), 0
	c.Thresholds.FailuresBeforeWarning = 0
	err := c.Validate()
	want := "check.timeout: must be more than 0\ncheck.thresholds.failures_before_warning: 0 is less than 1"
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	if err := (&Check{}).Validate(); err == nil || !strings.Contains(err.Error(), "check.name: is required") {
		t.Errorf("zero check: %v", err)
	}
}

// The checks in YAML and in JSON decode to the same Check.
func TestCheckJSONMatchesYAML(t *testing.T) {
	c, err := Parse("testdata/valid-full.yaml", readFile(t, "testdata/valid-full.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range c.Checks {
		data, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCheckJSON(data)
		if err != nil {
			t.Errorf("%s: %v", want.Name, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: JSON round trip gives\n%+v\nwant\n%+v", want.Name, got, want)
		}
	}
}

func TestWithTarget(t *testing.T) {
	for _, typ := range []string{TypeHTTP, TypeTCP, TypeDNS, TypeTLS, TypeGRPC} {
		c := NewCheck("c", typ)
		got, err := c.WithTarget("x.example:1")
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		var orig, set string
		switch typ {
		case TypeHTTP:
			orig, set = c.HTTP.URL, got.HTTP.URL
		case TypeTCP:
			orig, set = c.TCP.Address, got.TCP.Address
		case TypeDNS:
			orig, set = c.DNS.Name, got.DNS.Name
		case TypeTLS:
			orig, set = c.TLS.Address, got.TLS.Address
		case TypeGRPC:
			orig, set = c.GRPC.Address, got.GRPC.Address
		}
		if set != "x.example:1" || orig == "x.example:1" {
			t.Errorf("%s: target %q, original now %q; want the copy aimed and the original untouched", typ, set, orig)
		}
		if TargetField(typ) == "" {
			t.Errorf("%s has no target field", typ)
		}
	}
	if _, err := NewCheck("e", TypeExec).WithTarget("x"); err == nil || TargetField(TypeExec) != "" {
		t.Errorf("exec has no target: WithTarget must fail (%v)", err)
	}
}
