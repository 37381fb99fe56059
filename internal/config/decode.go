package config

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxErrors bounds the errors one decode reports; past it, decoding stops.
const maxErrors = 100

// maxNodes bounds the YAML nodes one decode visits, aliases counted each time they are
// followed, so that a small file of nested aliases cannot make decoding explode.
const maxNodes = 200_000

// defaulter is implemented by the schema types that have defaults (Check and the check
// sub-blocks). The decoder calls SetDefaults on every new value of such a type before
// decoding onto it.
type defaulter interface{ SetDefaults() }

// decoder walks a yaml.Node tree onto Go values by their yaml tags, strictly: it collects
// every unknown key, wrong kind and bad value with its key path and line.
type decoder struct {
	file   string
	lines  map[string]int  // key path → line of its key (or list item)
	given  map[string]bool // key paths written with a value other than null
	errs   Errors
	nodes  int
	active map[*yaml.Node]bool // alias targets being decoded, to refuse self-references
}

// stopped reports whether decoding gave up: too many errors or nodes.
func (d *decoder) stopped() bool { return len(d.errs) >= maxErrors || d.nodes > maxNodes }

func newDecoder(file string) *decoder {
	return &decoder{file: file, lines: map[string]int{}, given: map[string]bool{}, active: map[*yaml.Node]bool{}}
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if d.stopped() {
		return
	}
	if len(d.errs) == maxErrors-1 {
		// Last in file order: no line, no path.
		d.errs = append(d.errs, Error{File: d.file, Msg: fmt.Sprintf("more than %d errors; fix these and try again", maxErrors-1)})
		return
	}
	d.errs = append(d.errs, Error{File: d.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// parseYAML parses one YAML document. It returns a nil root for a file without content.
func parseYAML(file string, data []byte) (*yaml.Node, Errors) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, Errors{yamlSyntaxError(file, err)}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, Errors{yamlSyntaxError(file, err)}
	case len(extra.Content) > 0 && !isNull(extra.Content[0]):
		return nil, Errors{{File: file, Line: extra.Line, Msg: `a second YAML document starts here (after "---"); a picket config is one document`}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// yamlSyntaxError turns a yaml.v3 parse error ("yaml: line 3: did not find ...") into an
// Error with its line.
func yamlSyntaxError(file string, err error) Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		num, text, found := strings.Cut(rest, ": ")
		if line, convErr := strconv.Atoi(num); found && convErr == nil {
			return Error{File: file, Line: line, Msg: "invalid YAML: " + text}
		}
	}
	return Error{File: file, Msg: "invalid YAML: " + msg}
}

// isNull reports whether n is a YAML null: "~", "null" or nothing at all after "key:".
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName describes a node's kind for error messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "something else"
}

// decode decodes n onto v (settable), at key path path. A null node keeps the value
// v already holds, which is its default.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.stopped() {
		return
	}
	if d.nodes++; d.nodes > maxNodes {
		d.errs = append(d.errs, Error{File: d.file, Line: n.Line, Path: path,
			Msg: fmt.Sprintf("the document is too large (more than %d values, aliases counted each time they are used)", maxNodes)})
		return
	}
	if n.Kind == yaml.AliasNode {
		target := n.Alias
		if target == nil || d.active[target] {
			d.fail(n, path, "alias *%s refers to a value that contains it", n.Value)
			return
		}
		d.active[target] = true
		defer delete(d.active, target)
		n = target
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(newWithDefaults(v.Type().Elem()))
		}
		if isNull(n) {
			return
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if isNull(n) {
		return
	}
	if reflect.PointerTo(v.Type()).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "must be a single value, not %s", kindName(n))
			return
		}
		text, ok := d.scalarText(n, path)
		if !ok {
			return
		}
		tu, _ := v.Addr().Interface().(encoding.TextUnmarshaler)
		if err := tu.UnmarshalText([]byte(text)); err != nil {
			d.fail(n, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "must be a single value, not %s", kindName(n))
			return
		}
		if text, ok := d.scalarText(n, path); ok {
			v.SetString(text)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "must be true or false, not %s", kindName(n))
			return
		}
		switch strings.ToLower(n.Value) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.fail(n, path, "%q is not a boolean (use true or false)", n.Value)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "must be a whole number, not %s", kindName(n))
			return
		}
		i, err := parseInt(n.Value)
		switch {
		case errors.Is(err, strconv.ErrRange) || err == nil && v.OverflowInt(i):
			d.fail(n, path, "%q is out of range", n.Value)
			return
		case err != nil:
			d.fail(n, path, "%q is not a whole number", n.Value)
			return
		}
		v.SetInt(i)
	default:
		// The schema has no other kinds; reaching here is a bug in this package.
		d.fail(n, path, "cannot decode into %s (a bug in picket's config schema)", v.Type())
	}
}

// scalarText returns the text of a scalar, decoding it when tagged !!binary.
func (d *decoder) scalarText(n *yaml.Node, path string) (string, bool) {
	if n.ShortTag() != "!!binary" {
		return n.Value, true
	}
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(n.Value), ""))
	if err != nil {
		d.fail(n, path, "is tagged !!binary but is not base64")
		return "", false
	}
	return string(b), true
}

// parseInt parses a YAML integer: decimal, or 0x/0o/0b-prefixed, with optional sign and _.
func parseInt(s string) (int64, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "+"), "-")
	if len(t) > 2 && t[0] == '0' && strings.ContainsRune("xXoObB", rune(t[1])) {
		return strconv.ParseInt(s, 0, 64)
	}
	return strconv.ParseInt(s, 10, 64)
}

// newWithDefaults returns a pointer to a new value of type t, with its defaults set when
// t has any.
func newWithDefaults(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if dft, ok := p.Interface().(defaulter); ok {
		dft.SetDefaults()
	}
	return p
}

// yamlFields maps the yaml key names of struct type t to field indexes, and lists the
// names in declaration order.
func yamlFields(t reflect.Type) (map[string]int, []string) {
	byName := make(map[string]int, t.NumField())
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		byName[name] = i
		names = append(names, name)
	}
	return byName, names
}

// isMergeKey reports whether k is the YAML merge key "<<".
func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a map of keys, not %s", kindName(n))
		return
	}
	fields, names := yamlFields(v.Type())
	// Merged maps (<<: *anchor) first, so that the keys written here win over them.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if isMergeKey(n.Content[i]) {
			d.merge(n.Content[i+1], v, path)
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "a key must be a plain word, not %s", kindName(k))
			continue
		}
		kp := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(k, kp, "set twice (first on line %d); keep one", first)
			continue
		}
		seen[k.Value] = k.Line
		if path == "" && strings.HasPrefix(k.Value, "x-") {
			continue // top-level x- keys hold YAML anchors to share; they are not settings
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(k, kp, "%s", unknownKeyMsg(k.Value, names))
			continue
		}
		d.lines[kp] = k.Line
		if !isNull(val) {
			d.given[kp] = true
		}
		d.decode(val, v.Field(idx), kp)
	}
}

// merge decodes the value of a "<<" key, a map or a list of maps, onto struct v. Of
// several maps, the first listed wins, as YAML specifies.
func (d *decoder) merge(n *yaml.Node, v reflect.Value, path string) {
	target := n
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || d.active[n.Alias] {
			d.fail(n, path, "alias *%s refers to a value that contains it", n.Value)
			return
		}
		d.active[n.Alias] = true
		defer delete(d.active, n.Alias)
		target = n.Alias
	}
	switch target.Kind {
	case yaml.MappingNode:
		d.decode(target, v, path)
	case yaml.SequenceNode:
		for i := len(target.Content) - 1; i >= 0; i-- {
			d.decode(target.Content[i], v, path)
		}
	default:
		d.fail(n, path, "<< must merge a map or a list of maps, not %s", kindName(target))
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "must be a list, not %s", kindName(n))
		return
	}
	if len(n.Content) == 0 {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := indexPath(path, i)
		d.lines[ip] = item.Line
		elem := s.Index(i)
		if dft, ok := elem.Addr().Interface().(defaulter); ok {
			dft.SetDefaults()
		}
		d.decode(item, elem, ip)
	}
	v.Set(s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a map of keys, not %s", kindName(n))
		return
	}
	if len(n.Content) == 0 {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isMergeKey(k) {
			d.fail(k, path, "a key must be a plain word, not %s", kindName(k))
			continue
		}
		kp := mapKeyPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(k, kp, "set twice (first on line %d); keep one", first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[kp] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, kp)
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}
