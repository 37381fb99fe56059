package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// This file reads the PromQL out of configs/grafana/picket.json so tests can evaluate every
// panel and variable query against a real Prometheus.

// dashboardPath is the shipped Grafana dashboard, relative to the e2e folder.
const dashboardPath = "../configs/grafana/picket.json"

// dashboardQuery is one PromQL expression of the dashboard: a panel target, or a variable
// query (Panel is then "$name").
type dashboardQuery struct {
	Panel string
	RefID string
	Expr  string
}

type grafanaPanel struct {
	Title   string         `json:"title"`
	Type    string         `json:"type"`
	Panels  []grafanaPanel `json:"panels"` // a collapsed row's panels
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

type grafanaDashboard struct {
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"` // a string, or {"query": "..."} since Grafana 10
		} `json:"list"`
	} `json:"templating"`
}

// dashboardExprs returns every panel target's expr, rows' nested panels included, in the
// order of the file. A target without an expr is an error: every panel here is PromQL.
func dashboardExprs(path string) ([]dashboardQuery, error) {
	d, err := readDashboard(path)
	if err != nil {
		return nil, err
	}
	var out []dashboardQuery
	var walk func([]grafanaPanel) error
	walk = func(ps []grafanaPanel) error {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					return fmt.Errorf("%s: panel %q target %s has no expr", path, p.Title, tg.RefID)
				}
				out = append(out, dashboardQuery{Panel: p.Title, RefID: tg.RefID, Expr: tg.Expr})
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(d.Panels)
}

// dashboardVariables returns the query of every variable of type "query".
func dashboardVariables(path string) ([]dashboardQuery, error) {
	d, err := readDashboard(path)
	if err != nil {
		return nil, err
	}
	var out []dashboardQuery
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				return nil, fmt.Errorf("%s: variable %s: query is neither a string nor {\"query\": ...}: %w", path, v.Name, err)
			}
			q = obj.Query
		}
		out = append(out, dashboardQuery{Panel: "$" + v.Name, Expr: q})
	}
	return out, nil
}

func readDashboard(path string) (grafanaDashboard, error) {
	var d grafanaDashboard
	b, err := os.ReadFile(path)
	if err != nil {
		return d, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// grafanaVar matches $name, ${name} and ${name:format} references to dashboard variables.
var grafanaVar = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)`)

// grafanaExpand replaces Grafana variables in expr the way Grafana would before sending it
// to Prometheus; vars gives each variable's value. An unknown variable is left in place, so
// Prometheus rejects the query and the test names it.
func grafanaExpand(expr string, vars map[string]string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

// labelValuesQuery turns Grafana's label_values(selector, label) into the PromQL that
// returns one series per value of label. ok is false for anything else.
func labelValuesQuery(q string) (expr, label string, ok bool) {
	q = strings.TrimSpace(q)
	if !strings.HasPrefix(q, "label_values(") || !strings.HasSuffix(q, ")") {
		return "", "", false
	}
	inner := q[len("label_values(") : len(q)-1]
	i := strings.LastIndex(inner, ",")
	if i < 0 {
		return "", "", false
	}
	sel, label := strings.TrimSpace(inner[:i]), strings.TrimSpace(inner[i+1:])
	return fmt.Sprintf("count by (%s) (%s)", label, sel), label, true
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promBraces   = regexp.MustCompile(`\{[^{}]*\}`)
	promBrackets = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`\b[A-Za-z_:][A-Za-z0-9_:]*\b(\s*\()?`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true}
)

// promMetricNames returns the metric names a PromQL expression selects, sorted and unique:
// identifiers outside label matchers, ranges and grouping lists that are not functions,
// aggregations or keywords. It is a tokenizer, not a parser, good for the dashboard's
// queries (it does not see {__name__="..."} selectors).
func promMetricNames(expr string) []string {
	s := promString.ReplaceAllString(expr, `""`)
	for prev := ""; prev != s; {
		prev, s = s, promBraces.ReplaceAllString(s, " ")
	}
	s = promBrackets.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, m := range promIdent.FindAllStringSubmatch(s, -1) {
		id := strings.TrimRight(strings.TrimSuffix(strings.TrimSpace(m[0]), "("), " \t\n")
		if m[1] != "" || promKeywords[id] || strings.HasPrefix(id, "__") {
			continue // a function or aggregation call, or a keyword
		}
		names = append(names, id)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// exposedNames returns the metric names of the sample lines of a Prometheus text exposition
// (histogram series appear as name_bucket, name_sum and name_count).
func exposedNames(exposition []byte) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(exposition))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			continue
		}
		names[line[:end]] = true
	}
	return names
}
