package config

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted returns the effective configuration as YAML, every default filled in, with
// secrets (http.token, cluster.key, exporters.otlp.headers) printed as <secret>, and each
// $ that ${VAR} expansion would read doubled. Parsing it gives back the same
// configuration, secrets aside.
func (c *Config) Redacted() string {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return "# cannot print the configuration: " + err.Error() + "\n"
	}
	if err := enc.Close(); err != nil {
		return "# cannot print the configuration: " + err.Error() + "\n"
	}
	return escapeDollars(b.String())
}

// escapeDollars doubles each $ that ${VAR} expansion would otherwise read ($$ or ${), so
// that parsing the text gives back the values as they are.
func escapeDollars(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if s[i] == '$' && i+1 < len(s) && (s[i+1] == '$' || s[i+1] == '{') {
			b.WriteByte('$')
		}
	}
	return b.String()
}

// Hash returns a short hex digest (16 digits of SHA-256) of the settings every member of a
// cluster must share: cluster.name, cluster.raft, logs.retention and the cluster-placement
// checks (in name order). Members compare hashes to detect config drift.
func (c *Config) Hash() string {
	var checks []Check
	for _, ch := range c.Checks {
		if ch.Placement == PlacementCluster {
			checks = append(checks, ch)
		}
	}
	slices.SortStableFunc(checks, func(a, b Check) int { return strings.Compare(a.Name, b.Name) })
	shared := struct {
		Name      string    `json:"name"`
		Raft      Raft      `json:"raft"`
		Retention Retention `json:"retention"`
		Checks    []Check   `json:"checks"`
	}{c.Cluster.Name, c.Cluster.Raft, c.Logs.Retention, checks}
	data, err := json.Marshal(shared)
	if err != nil {
		// Every field marshals; this is unreachable unless the schema changes.
		return "unhashable"
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// RestartRequired returns the key paths whose change from old to new a running agent
// cannot apply, in schema order: node_name, data_dir, http.listen, http.tls.*, cluster.*
// except cluster.join, cluster.discovery and cluster.tags, exporters.* and logs.*. A
// SIGHUP reload refuses a new config when this is not empty. Everything else (log, the
// http token, collectors, checks, join seeds, discovery, tags) is reloadable.
func RestartRequired(old, new *Config) []string {
	var d differ
	d.diff("node_name", old.NodeName, new.NodeName)
	d.diff("data_dir", old.DataDir, new.DataDir)
	d.diff("http.listen", old.HTTP.Listen, new.HTTP.Listen)
	d.diff("http.tls", old.HTTP.TLS, new.HTTP.TLS)
	d.diff("cluster", old.Cluster, new.Cluster, "cluster.join", "cluster.discovery", "cluster.tags")
	d.diff("exporters", old.Exporters, new.Exporters)
	d.diff("logs", old.Logs, new.Logs)
	return d.paths
}

// differ lists the leaf key paths where two values differ.
type differ struct {
	paths []string
}

func (d *differ) diff(path string, a, b any, skip ...string) {
	d.walk(path, reflect.ValueOf(a), reflect.ValueOf(b), skip)
}

func (d *differ) walk(path string, a, b reflect.Value, skip []string) {
	if slices.Contains(skip, path) {
		return
	}
	isText := reflect.PointerTo(a.Type()).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
	if a.Kind() == reflect.Struct && !isText {
		t := a.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			d.walk(joinPath(path, name), a.Field(i), b.Field(i), skip)
		}
		return
	}
	if (a.Kind() == reflect.Slice || a.Kind() == reflect.Map) && a.Len() == 0 && b.Len() == 0 {
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		d.paths = append(d.paths, path)
	}
}
