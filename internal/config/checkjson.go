package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// checkPath is the key path of the check in API error messages.
const checkPath = "check"

// DecodeCheckJSON decodes one check definition from a JSON object (the YAML schema, with
// the same keys), as the HTTP API receives it: check defaults first (and the defaults of
// the type's sub-block), then strict decoding (unknown keys and wrong types are errors),
// then Validate. The error, when not nil, is Errors naming JSON key paths like
// "check.http.url". It does not refuse exec checks; the API does that.
func DecodeCheckJSON(data []byte) (Check, error) {
	var raw any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return Check{}, Errors{{Path: checkPath, Msg: jsonSyntaxMsg(err)}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Check{}, Errors{{Path: checkPath, Msg: "unexpected data after the check object; send one JSON object"}}
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return Check{}, Errors{{Path: checkPath, Msg: "must be a JSON object, not " + jsonKindName(raw)}}
	}
	w := jsonWalker{}
	w.walk(obj, reflect.TypeFor[Check](), checkPath)
	if len(w.errs) > 0 {
		return Check{}, w.errs
	}

	c := Check{}
	c.SetDefaults()
	// Allocate the sub-blocks present with their defaults, so that decoding fills them in
	// rather than starting from zero values.
	t := reflect.TypeFor[Check]()
	cv := reflect.ValueOf(&c).Elem()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() != reflect.Pointer {
			continue
		}
		if val, present := obj[jsonName(f)]; present && val != nil {
			cv.Field(i).Set(newWithDefaults(f.Type.Elem()))
		}
	}
	strict := json.NewDecoder(bytes.NewReader(data))
	strict.DisallowUnknownFields()
	if err := strict.Decode(&c); err != nil {
		// The walk above accepts only what decodes; reaching here is a bug in it.
		return Check{}, Errors{{Path: checkPath, Msg: err.Error()}}
	}
	timeout, given := obj["timeout"]
	c.defaultTimeout(given && timeout != nil)
	if err := c.Validate(); err != nil {
		return Check{}, err
	}
	return c, nil
}

// jsonSyntaxMsg explains a JSON syntax error with its byte offset.
func jsonSyntaxMsg(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "invalid JSON: the body ends before the check object does"
	}
	return "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

// jsonName is the JSON key of a struct field.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// jsonKindName describes a decoded JSON value's kind for error messages.
func jsonKindName(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("the string %q", x)
	case json.Number:
		return "the number " + x.String()
	case bool:
		return "the boolean " + strconv.FormatBool(x)
	}
	return fmt.Sprintf("%T", v)
}

// jsonWalker checks a decoded JSON value (UseNumber) against a Go type by its json tags,
// collecting every unknown key, wrong type and bad value with its key path. A value it
// accepts decodes without error with encoding/json and DisallowUnknownFields. null is
// accepted everywhere and keeps the default, as in YAML.
type jsonWalker struct {
	errs Errors
}

func (w *jsonWalker) fail(path, format string, args ...any) {
	w.errs = append(w.errs, Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (w *jsonWalker) walk(v any, t reflect.Type, path string) {
	if v == nil {
		return
	}
	if t.Kind() == reflect.Pointer {
		w.walk(v, t.Elem(), path)
		return
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		w.text(v, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			w.fail(path, "must be an object, not %s", jsonKindName(v))
			return
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			if name := jsonName(f); name != "" && name != "-" && f.IsExported() {
				fields[name] = f
				names = append(names, name)
			}
		}
		for _, k := range sortedKeys(obj) {
			f, ok := fields[k]
			if !ok {
				w.fail(joinPath(path, k), "%s", unknownKeyMsg(k, names))
				continue
			}
			w.walk(obj[k], f.Type, joinPath(path, k))
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			w.fail(path, "must be an object, not %s", jsonKindName(v))
			return
		}
		for _, k := range sortedKeys(obj) {
			w.walk(obj[k], t.Elem(), mapKeyPath(path, k))
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			w.fail(path, "must be a list, not %s", jsonKindName(v))
			return
		}
		for i, item := range list {
			w.walk(item, t.Elem(), indexPath(path, i))
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			w.fail(path, "must be a string, not %s", jsonKindName(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			w.fail(path, "must be true or false, not %s", jsonKindName(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			w.fail(path, "must be a whole number, not %s", jsonKindName(v))
			return
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		switch {
		case errors.Is(err, strconv.ErrRange) || err == nil && reflect.New(t).Elem().OverflowInt(i):
			w.fail(path, "%s is out of range", n)
		case err != nil:
			w.fail(path, "%s is not a whole number", n)
		}
	default:
		w.fail(path, "cannot decode into %s (a bug in picket's config schema)", t)
	}
}

// text checks a value for a type decoded from text (Duration, Size, Secret); a Size may
// also be a number of bytes.
func (w *jsonWalker) text(v any, t reflect.Type, path string) {
	switch x := v.(type) {
	case string:
		tu, _ := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := tu.UnmarshalText([]byte(x)); err != nil {
			w.fail(path, "%s", err.Error())
		}
	case json.Number:
		if t == reflect.TypeFor[Size]() {
			if n, err := strconv.ParseInt(x.String(), 10, 64); err != nil || n < 0 {
				w.fail(path, "%s is not a number of bytes (or use a string like \"64MiB\")", x)
			}
			return
		}
		if t == reflect.TypeFor[Duration]() {
			w.fail(path, "%s is not a duration; use a string with a unit, like \"10s\", \"5m\" or \"168h\"", x)
			return
		}
		w.fail(path, "must be a string, not %s", jsonKindName(v))
	default:
		w.fail(path, "must be a string, not %s", jsonKindName(v))
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
