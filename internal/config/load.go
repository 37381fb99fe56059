package config

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// defaultYAML is the configuration `picket agent` runs without -c.
//
//go:embed default.yaml
var defaultYAML string

// embeddedName names the embedded default in error messages.
const embeddedName = "embedded default.yaml"

// Load reads the config file at path and parses it with Parse, expanding ${VAR} from the
// process environment. An unreadable file gives a wrapped *fs.PathError, anything else
// Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse builds a Config from the YAML text of file: it expands ${VAR} and ${VAR:-default}
// with lookupEnv (nil: every variable unset), starts from Default(), decodes the text onto
// it strictly, fills in node_name and data_dir when left empty, resolves relative file
// paths against file's folder, and validates the whole tree. A key written with no value
// (or an unset ${VAR}) keeps its default. Top-level keys starting with "x-" are ignored,
// so that they can hold YAML anchors; "<<" merge keys work as in YAML 1.1.
//
// The error, when not nil, is Errors listing every problem found, each with file, line
// and key path; the config is then nil.
func Parse(file string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	dir := ""
	if file != "" {
		dir = filepath.Dir(file)
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
	}
	return parse(file, dir, data, lookupEnv)
}

// Embedded returns the embedded default configuration, the one `picket agent` runs
// without -c: a node named after the host, collectors on, a local http check "self" of
// its own /healthz, the API on 127.0.0.1:7948, gossip on 127.0.0.1:7946 without a key,
// and a one-voter Raft. PICKET_NODE_NAME, PICKET_DATA_DIR, PICKET_LOG_LEVEL and
// PICKET_LOG_FORMAT, looked up with lookupEnv, override their keys.
func Embedded(lookupEnv func(string) (string, bool)) (*Config, error) {
	return parse(embeddedName, "", []byte(defaultYAML), lookupEnv)
}

// parse is Parse with the folder for relative paths given ("" resolves nothing).
func parse(file, dir string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	c, lines, errs := decodeConfig(file, data, lookupEnv)
	if c == nil {
		return nil, errs
	}
	if len(errs) >= maxErrors {
		errs.sortByLine()
		return nil, errs
	}
	c.complete(dir)
	decodeErrs := errs
	for _, ve := range c.validate(file, lines) {
		if !underAny(ve.Path, decodeErrs) {
			errs = append(errs, ve)
		}
	}
	if len(errs) > 0 {
		errs.sortByLine()
		return nil, errs
	}
	return c, nil
}

// underAny reports whether path is at or below the path of one of errs: a value that
// failed to decode is not validated again.
func underAny(path string, errs Errors) bool {
	for _, e := range errs {
		if under(path, e.Path) {
			return true
		}
	}
	return false
}

// decodeConfig expands the environment, parses the YAML and decodes it onto the defaults.
// It returns the config (nil when the text could not be parsed at all), the line of each
// key path, and the decoding errors.
func decodeConfig(file string, data []byte, lookupEnv func(string) (string, bool)) (*Config, map[string]int, Errors) {
	text, errs := expandEnv(file, data, lookupEnv)
	if len(errs) > 0 {
		return nil, nil, errs
	}
	root, errs := parseYAML(file, text)
	if len(errs) > 0 {
		return nil, nil, errs
	}
	c := Default()
	d := newDecoder(file)
	if root != nil && !isNull(root) {
		if root.Kind != yaml.MappingNode {
			return nil, nil, Errors{{File: file, Line: root.Line, Msg: fmt.Sprintf(
				"a picket config is a map of keys (node_name:, cluster:, checks:, ...), not %s", kindName(root))}}
		}
		d.decode(root, reflect.ValueOf(c).Elem(), "")
	}
	for i := range c.Checks {
		c.Checks[i].defaultTimeout(d.given[indexPath("checks", i)+".timeout"])
	}
	return c, d.lines, d.errs
}

// complete fills in the values whose default depends on the machine when left empty
// (node_name, data_dir) and makes relative file paths absolute against dir.
func (c *Config) complete(dir string) {
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if dir == "" {
		return
	}
	for _, p := range c.relativePaths() {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// relativePaths lists the file and folder settings that resolve against the config
// file's folder.
func (c *Config) relativePaths() []*string {
	ps := []*string{
		&c.DataDir,
		&c.HTTP.TLS.CAFile, &c.HTTP.TLS.CertFile, &c.HTTP.TLS.KeyFile,
		&c.Cluster.TLS.CAFile, &c.Cluster.TLS.CertFile, &c.Cluster.TLS.KeyFile,
		&c.Exporters.OTLP.TLS.CAFile, &c.Exporters.OTLP.TLS.CertFile, &c.Exporters.OTLP.TLS.KeyFile,
	}
	for i := range c.Checks {
		ch := &c.Checks[i]
		if ch.HTTP != nil {
			ps = append(ps, &ch.HTTP.TLS.CAFile)
		}
		if ch.TLS != nil {
			ps = append(ps, &ch.TLS.CAFile)
		}
		if ch.GRPC != nil {
			ps = append(ps, &ch.GRPC.CAFile)
		}
		if ch.Exec != nil {
			ps = append(ps, &ch.Exec.Dir)
		}
	}
	return ps
}
