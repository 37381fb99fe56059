package agent

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/picket-dev/picket/internal/api"
)

// The body of POST /v1/logs is the ingest hot path: encoding/json spent about half of the
// aggregator's CPU on it (a reflection-driven first pass that validates, a second that
// decodes, a string allocation per field). decodeLogRecords decodes the usual shape of
// that body in one pass, and hands anything else to encoding/json, so that its result
// and its errors stay exactly encoding/json's.

// decodeLogRecords decodes body, a JSON array of api.LogRecord, as decodeStrict would
// (encoding/json, unknown fields rejected, nothing but white space after the value).
func decodeLogRecords(body []byte) ([]api.LogRecord, error) {
	if recs, ok := fastLogRecords(body); ok {
		return recs, nil
	}
	var recs []api.LogRecord
	err := decodeStrict(body, &recs)
	return recs, err
}

// fastLogRecords decodes body when it has the usual shape: an array of objects whose
// keys are exactly "time", "level", "message" and "attrs" (each at most once), with
// string values or null ("attrs" an object of strings), strings of valid UTF-8 whose escapes are
// the simple ones or \u outside the surrogates, and nothing but white space around the
// array. Anything else (null records, numbers, other spellings of the keys, which encoding/json
// matches without regard to case, a syntax error, ...) returns false, and encoding/json
// decides. When it returns true, encoding/json would return the same records and no
// error (FuzzDecodeLogRecords checks that).
//
// The decoded strings share one copy of body.
func fastLogRecords(body []byte) ([]api.LogRecord, bool) {
	d := logDecoder{b: body, s: string(body)}
	d.space()
	if !d.consume('[') {
		return nil, false
	}
	recs := make([]api.LogRecord, 0, d.countHint())
	d.space()
	if !d.consume(']') {
		for {
			var r api.LogRecord
			if !d.record(&r) {
				return nil, false
			}
			recs = append(recs, r)
			d.space()
			if d.consume(']') {
				break
			}
			if !d.consume(',') {
				return nil, false
			}
		}
	}
	d.space()
	return recs, d.i == len(d.b)
}

// logDecoder reads JSON from b at i; s is b as a string, from which strings without
// escapes are cut without copying.
type logDecoder struct {
	b []byte
	s string
	i int
}

// space skips JSON white space.
func (d *logDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *logDecoder) consume(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// countHint guesses the number of records from the number of "message" keys, to size
// the slice once.
func (d *logDecoder) countHint() int {
	return min(bytes.Count(d.b[d.i:], []byte(`"message"`)), maxLogsPerPost+1)
}

// logRecordKeys are the keys of an api.LogRecord, in the order of record's seen.
var logRecordKeys = [...]string{"time", "level", "message", "attrs"}

// null consumes a null literal.
func (d *logDecoder) null() bool {
	if bytes.HasPrefix(d.b[d.i:], []byte("null")) {
		d.i += 4
		return true
	}
	return false
}

// record decodes one object into r.
func (d *logDecoder) record(r *api.LogRecord) bool {
	d.space()
	if !d.consume('{') {
		return false
	}
	d.space()
	if d.consume('}') {
		return true
	}
	var seen [len(logRecordKeys)]bool
	for {
		d.space()
		key, ok := d.str()
		if !ok {
			return false
		}
		d.space()
		if !d.consume(':') {
			return false
		}
		d.space()
		field := -1
		null := d.null() // encoding/json leaves the field as it is: zero, as it appears once
		switch {
		case null:
			field = slices.Index(logRecordKeys[:], key)
		case key == "time":
			field = 0
			start := d.i
			if _, ok := d.str(); !ok {
				return false
			}
			// time.Time.UnmarshalJSON is what encoding/json calls with the same bytes.
			if r.Time.UnmarshalJSON(d.b[start:d.i]) != nil {
				return false
			}
		case key == "level":
			field = 1
			if r.Level, ok = d.str(); !ok {
				return false
			}
		case key == "message":
			field = 2
			if r.Message, ok = d.str(); !ok {
				return false
			}
		case key == "attrs":
			field = 3
			if r.Attrs, ok = d.attrs(); !ok {
				return false
			}
		}
		// A repeated key would need encoding/json's rules for merging; leave it to them.
		if field < 0 || seen[field] {
			return false
		}
		seen[field] = true
		d.space()
		if d.consume('}') {
			return true
		}
		if !d.consume(',') {
			return false
		}
	}
}

// attrs decodes an object of strings. Repeated keys keep the last value, as in
// encoding/json.
func (d *logDecoder) attrs() (map[string]string, bool) {
	if !d.consume('{') {
		return nil, false
	}
	m := map[string]string{}
	d.space()
	if d.consume('}') {
		return m, true
	}
	for {
		d.space()
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		d.space()
		if !d.consume(':') {
			return nil, false
		}
		d.space()
		v, ok := d.str()
		if !ok {
			return nil, false
		}
		m[k] = v
		d.space()
		if d.consume('}') {
			return m, true
		}
		if !d.consume(',') {
			return nil, false
		}
	}
}

// plainByte marks the bytes a JSON string may hold as they are and that need no
// checking: printable ASCII other than '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainWord reports whether the 8 bytes of w are all plain bytes (see plainByte). It
// tests them at once, the way bytes.IndexByte does in assembly: messages are most of a
// body, and a byte at a time through the table was the decoder's largest cost. With
// lo = 0x01 in every byte and hi = 0x80 in every byte, (x - n*lo) &^ x & hi is not zero
// exactly when some byte of x is below n (for n <= 0x80, x without bytes >= 0x80), and
// a byte equal to c is a zero byte of x ^ c*lo.
func plainWord(w uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	quote, backslash := w^('"'*lo), w^('\\'*lo)
	special := (w-0x20*lo)&^w | (quote-lo)&^quote | (backslash-lo)&^backslash
	return (special|w)&hi == 0
}

// str decodes a string. Without escapes it is a substring of d.s; with them, a new
// string. Bytes that are not valid UTF-8, control characters and \u escapes of
// surrogates (which encoding/json replaces or pairs up) return false.
func (d *logDecoder) str() (string, bool) {
	if !d.consume('"') {
		return "", false
	}
	start := d.i
	ascii := true
	for d.i < len(d.b) {
		for d.i+8 <= len(d.b) && plainWord(binary.LittleEndian.Uint64(d.b[d.i:])) {
			d.i += 8
		}
		if d.i == len(d.b) {
			break
		}
		c := d.b[d.i]
		if plainByte[c] {
			d.i++
			continue
		}
		switch {
		case c == '"':
			s := d.s[start:d.i]
			d.i++
			if !ascii && !utf8.ValidString(s) {
				return "", false
			}
			return s, true
		case c == '\\':
			return d.escaped(start)
		case c >= 0x80:
			ascii = false
			d.i++
		default: // a control character
			return "", false
		}
	}
	return "", false
}

// escaped decodes the rest of a string that has escapes, from its first byte at start
// (d.i is at the first backslash).
func (d *logDecoder) escaped(start int) (string, bool) {
	buf := make([]byte, 0, d.i-start+64)
	buf = append(buf, d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(buf) {
				return "", false
			}
			return string(buf), true
		case c == '\\':
			if d.i+1 >= len(d.b) {
				return "", false
			}
			e := d.b[d.i+1]
			d.i += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				if d.i+4 > len(d.b) {
					return "", false
				}
				// ParseUint also takes "+" and "_": check the four digits first.
				for _, h := range d.b[d.i : d.i+4] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return "", false
					}
				}
				v, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 32)
				if err != nil || utf16IsSurrogate(rune(v)) {
					return "", false
				}
				buf = utf8.AppendRune(buf, rune(v))
				d.i += 4
			default:
				return "", false
			}
		case c < 0x20:
			return "", false
		default:
			buf = append(buf, c)
			d.i++
		}
	}
	return "", false
}

func utf16IsSurrogate(r rune) bool { return 0xd800 <= r && r < 0xe000 }

// decodeStrict decodes body into v with encoding/json, rejecting unknown fields and
// anything but white space after the value (as decodeBody does).
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errTrailingData
	}
	return nil
}
