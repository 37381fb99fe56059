package config

import (
	"bytes"
	"fmt"
	"strings"
)

// expandEnv replaces ${VAR} and ${VAR:-default} in the raw text of a config file, before
// it is parsed as YAML:
//
//   - ${VAR} is the value of VAR, or "" when VAR is unset;
//   - ${VAR:-default} is the value of VAR, or default when VAR is unset or empty;
//   - $$ is a literal $ (so $${VAR} is the literal text ${VAR});
//   - any other $ is kept as it is.
//
// Values and defaults may not contain line breaks, so line numbers stay those of the file.
// A ${ that is not a well-formed reference is an error naming its line; every such error
// is returned. A nil lookup treats every variable as unset.
func expandEnv(file string, data []byte, lookup func(string) (string, bool)) ([]byte, Errors) {
	if bytes.IndexByte(data, '$') < 0 {
		return data, nil
	}
	var (
		out  bytes.Buffer
		errs Errors
		line = 1
	)
	out.Grow(len(data))
	for i := 0; i < len(data); {
		ch := data[i]
		if ch == '\n' {
			line++
		}
		if ch != '$' || i+1 >= len(data) || (data[i+1] != '$' && data[i+1] != '{') {
			out.WriteByte(ch)
			i++
			continue
		}
		if data[i+1] == '$' {
			out.WriteByte('$')
			i += 2
			continue
		}
		ref, n, msg := parseRef(data[i:])
		if msg != "" {
			errs = append(errs, Error{File: file, Line: line, Msg: msg})
			out.WriteString("${")
			i += 2
			continue
		}
		val, ok := "", false
		if lookup != nil {
			val, ok = lookup(ref.name)
		}
		if ref.hasDefault && val == "" {
			val, ok = ref.def, true
		}
		if ok && strings.ContainsAny(val, "\r\n") {
			errs = append(errs, Error{File: file, Line: line, Msg: fmt.Sprintf(
				"environment variable %s holds a line break; ${%s} can only be replaced by a one-line value",
				ref.name, ref.name)})
			val = ""
		}
		out.WriteString(val)
		i += n
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out.Bytes(), nil
}

// envRef is one parsed ${NAME} or ${NAME:-default}.
type envRef struct {
	name       string
	def        string
	hasDefault bool
}

// parseRef parses the reference at the start of b, which begins with "${". It returns the
// reference and its length in bytes, or a message saying why it is malformed.
func parseRef(b []byte) (envRef, int, string) {
	const how = `write ${NAME} or ${NAME:-default}, or $${ for a literal "${"`
	i := 2
	for i < len(b) && isNameByte(b[i], i == 2) {
		i++
	}
	name := string(b[2:i])
	if name == "" {
		return envRef{}, 0, `"${" is not followed by a variable name (letters, digits and _, not starting with a digit); ` + how
	}
	if i >= len(b) || b[i] == '\n' {
		return envRef{}, 0, fmt.Sprintf("${%s has no closing }; %s", name, how)
	}
	switch {
	case b[i] == '}':
		return envRef{name: name}, i + 1, ""
	case b[i] == ':' && i+1 < len(b) && b[i+1] == '-':
		start := i + 2
		end := bytes.IndexAny(b[start:], "}\n")
		if end < 0 || b[start+end] != '}' {
			return envRef{}, 0, fmt.Sprintf("${%s:- has no closing } on its line; %s", name, how)
		}
		return envRef{name: name, def: string(b[start : start+end]), hasDefault: true}, start + end + 1, ""
	default:
		return envRef{}, 0, fmt.Sprintf("${%s is followed by %q; %s", name, b[i], how)
	}
}

// isNameByte reports whether c may appear in an environment variable name at that place.
func isNameByte(c byte, first bool) bool {
	switch {
	case c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		return true
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}
