package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Verdict is how a row compares with its target.
type Verdict string

// Verdicts.
const (
	OK      Verdict = "ok"      // the target is met
	Miss    Verdict = "miss"    // the target is not met
	Pending Verdict = "pending" // picket's side is not measurable yet
	Info    Verdict = "info"    // a reference figure without a target
	Failed  Verdict = "error"   // the workload failed; Note says why
)

// Row is one line of the results table.
type Row struct {
	ID       string // target number from BENCHMARKS.md: "P1"; "" for reference rows
	Metric   string // what is measured, naming the baseline
	Unit     string // unit of Picket and Baseline
	Picket   Stat   // N == 0: not measured
	Baseline Stat   // N == 0: no baseline
	Target   string // the target as written in BENCHMARKS.md
	Verdict  Verdict
	Note     string // how it was measured, or why it failed
}

// Ratio is picket's median over the baseline's, or 0 when either is missing.
func (r Row) Ratio() float64 {
	if r.Picket.N == 0 || r.Baseline.N == 0 || r.Baseline.Median == 0 {
		return 0
	}
	return r.Picket.Median / r.Baseline.Median
}

func (r Row) cells() []string {
	ratio := "—"
	if q := r.Ratio(); q != 0 {
		ratio = fmt.Sprintf("%.2f×", q)
	}
	picket := r.Picket.Format(r.Unit)
	if r.Verdict == Pending && r.Picket.N == 0 {
		picket = "pending"
	}
	metric := r.Metric
	if r.ID != "" {
		metric = r.ID + " " + metric
	}
	return []string{metric, picket, r.Baseline.Format(r.Unit), ratio, r.Target, string(r.Verdict)}
}

var header = []string{"metric", "picket", "baseline", "ratio", "target", "verdict"}

// WriteText writes rows as an aligned plain-text table followed by the numbered notes.
func WriteText(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeNotes(w, rows, "")
}

// WriteMarkdown writes rows as a Markdown table followed by the notes as a list.
func WriteMarkdown(w io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString(strings.Repeat("|---", len(header)) + "|\n")
	for _, r := range rows {
		cells := r.cells()
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	return writeNotes(w, rows, "- ")
}

func writeNotes(w io.Writer, rows []Row, bullet string) error {
	first := true
	for _, r := range rows {
		if r.Note == "" {
			continue
		}
		if first {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
			first = false
		}
		name := r.ID
		if name == "" {
			name = r.Metric
		}
		if _, err := fmt.Fprintf(w, "%s%s: %s\n", bullet, name, r.Note); err != nil {
			return err
		}
	}
	return nil
}
