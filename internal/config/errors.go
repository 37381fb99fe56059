package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is one problem found in a configuration: where it is and what is wrong.
// It prints as "FILE:LINE: PATH: MSG"; parts that are unknown are left out.
type Error struct {
	File string // config file as given to Load or Parse; empty for JSON bodies and built configs
	Line int    // 1-based line of the offending key; 0 when unknown
	Path string // key path, like checks[1].http.url or cluster.join[0]
	Msg  string // what is wrong and how to fix it
}

// Error formats the problem as FILE:LINE: PATH: MSG.
func (e Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration, in file order. Its message has
// one problem per line. Parse, Embedded, Validate, Check.Validate and DecodeCheckJSON
// return it (never empty) as their error, and so does Load once the file is read; use
// errors.As to get at the single problems.
type Errors []Error

// Error lists every problem, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// orNil returns es as an error, or a true nil when it is empty.
func (es Errors) orNil() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// sortByLine orders errors by line, keeping the found order within a line; errors without
// a line come last.
func (es Errors) sortByLine() {
	key := func(e Error) int {
		if e.Line <= 0 {
			return int(^uint(0) >> 1)
		}
		return e.Line
	}
	sort.SliceStable(es, func(i, j int) bool { return key(es[i]) < key(es[j]) })
}

// parentPath returns the key path one level up: checks[1].http.url → checks[1].http →
// checks[1] → checks → "".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// under reports whether path p is at or below path root.
func under(p, root string) bool {
	if root == "" || p == root {
		return true
	}
	return strings.HasPrefix(p, root) && (p[len(root)] == '.' || p[len(root)] == '[')
}

// joinPath appends a map key to a key path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath appends a list index to a key path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// mapKeyPath appends a key of a free-form map (headers, tags, env), quoting keys that
// are not plain words.
func mapKeyPath(path, key string) string {
	for _, r := range key {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return path + "[" + strconv.Quote(key) + "]"
		}
	}
	if key == "" {
		return path + `[""]`
	}
	return joinPath(path, key)
}

// suggest returns the candidate closest to word by edit distance (ignoring case), or ""
// when none is close enough to be a likely typo.
func suggest(word string, candidates []string) string {
	w := strings.ToLower(word)
	n := utf8.RuneCountInString(w)
	limit := max(1, min(3, n/3))
	best, bestDist := "", limit+1
	for _, c := range candidates {
		lc := strings.ToLower(c)
		if m := utf8.RuneCountInString(lc); n-m > limit || m-n > limit {
			continue // too far apart in length to be a typo; skip the quadratic work
		}
		if d := editDistance(w, lc); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b, counted in
// runes: insertions, deletions, substitutions and swaps of neighbours each cost one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// unknownKeyMsg explains an unknown key, with a suggestion or the list of valid keys.
func unknownKeyMsg(key string, valid []string) string {
	if s := suggest(key, valid); s != "" {
		return fmt.Sprintf("unknown key; did you mean %q?", s)
	}
	return "unknown key; valid keys here are " + strings.Join(valid, ", ")
}
