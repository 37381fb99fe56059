package config

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error it returns is a non-empty
// Errors naming the file, and that whatever it accepts validates and survives a round
// trip through Redacted.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("../../configs/*.yaml")
	for _, p := range append(files, more...) {
		f.Add(readFile(f, p))
	}
	f.Add([]byte(defaultYAML))
	f.Add([]byte("cluster: {bind: 127.0.0.1:7946}\nchecks: [{name: a, type: tcp, tcp: {address: \"${A:-127.0.0.1}:1\"}}]\n"))
	f.Add([]byte("x-a: &a {interval: 1s}\ncluster: {bind: 127.0.0.1:7946, tags: {$$k: '${A}'}}\nchecks: [{<<: *a, name: a, type: tcp, tcp: {address: \"h:1\"}}]\n"))
	lookup := env(map[string]string{"A": "127.0.0.1", "B": "x y"})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, lookup)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
			}
			for _, e := range errs {
				if e.File != "fuzz.yaml" || e.Msg == "" {
					t.Fatalf("error %q lacks its file or message", e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate refuses: %v", err)
		}
		roundTrip(t, c)
	})
}

// FuzzDecodeCheckJSON checks that DecodeCheckJSON never panics, names the check in every
// error, and that a check it accepts validates and survives a JSON round trip.
func FuzzDecodeCheckJSON(f *testing.F) {
	seeds := []string{
		`{"name": "api", "type": "http", "http": {"url": "http://127.0.0.1:8080/health"}}`,
		`{"name": "a", "type": "tcp", "placement": "cluster", "vantage": {"nodes": 2, "quorum": 1}, "interval": "5s", "tcp": {"address": "127.0.0.1:1"}}`,
		`{"name": "r", "type": "dns", "dns": {"name": "localhost", "type": "AAAA", "expect_answers": ["::1"]}}`,
		`{"name": "t", "type": "tls", "tls": {"address": "localhost:443", "warning_days": 20}}`,
		`{"name": "g", "type": "grpc", "timeout": null, "grpc": {"address": "[::1]:1", "tls": true}}`,
		`{"name": "e", "type": "exec", "exec": {"command": ["/bin/true"], "env": {"A": "b"}}}`,
		`{"name": 1, "http": [], "x": {}}`,
		`[]`, `null`, `{`, `{"a":1}{}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCheckJSON(data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
			}
			for _, e := range errs {
				if !strings.HasPrefix(e.Path, checkPath) || e.Msg == "" {
					t.Fatalf("error %q does not name the check", e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("DecodeCheckJSON accepted a check that Validate refuses: %v", err)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeCheckJSON(out)
		if err != nil {
			t.Fatalf("marshalled check %s does not decode: %v", out, err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("JSON round trip changed the check:\n%+v\n%+v", c, back)
		}
	})
}
