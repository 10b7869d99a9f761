package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"text/tabwriter"
	"time"
)

// field indexes one measured quantity of a round.
type field int

const (
	fRPS field = iota
	fP50
	fP99
	fTTFB
	fErrors
	fCPU
	fRSS
	nFields
)

var fieldNames = [nFields]string{"rps", "p50 ms", "p99 ms", "ttfb p50 ms", "errors", "cpu s/10k", "rss MB"}
var fieldFormats = [nFields]string{"%.0f", "%.3f", "%.3f", "%.3f", "%.0f", "%.3f", "%.1f"}

// obs is what one round of one scenario measured against one target; nil: does not apply.
type obs [nFields]*float64

func (o *obs) set(f field, v float64) { o[f] = &v }

// series is every round of one scenario against one target.
type series struct {
	scenario string
	target   string
	rounds   []obs
}

// agg returns the median, minimum and maximum of f over the rounds that measured it.
func (s *series) agg(f field) (med, lo, hi float64, ok bool) {
	var v []float64
	for i := range s.rounds {
		if p := s.rounds[i][f]; p != nil {
			v = append(v, *p)
		}
	}
	if len(v) == 0 {
		return 0, 0, 0, false
	}
	slices.Sort(v)
	return median(v), v[0], v[len(v)-1], true
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// check is one target of the issue, met or missed.
type check struct {
	what string
	want string
	got  string
	met  bool
}

// report collects the series in the order they were first measured.
type report struct {
	series []*series
	checks []check
	notes  []string
}

func (r *report) add(scenario, target string, o obs) {
	for _, s := range r.series {
		if s.scenario == scenario && s.target == target {
			s.rounds = append(s.rounds, o)
			return
		}
	}
	r.series = append(r.series, &series{scenario: scenario, target: target, rounds: []obs{o}})
}

func (r *report) get(scenario, target string) *series {
	for _, s := range r.series {
		if s.scenario == scenario && s.target == target {
			return s
		}
	}
	return nil
}

// medianOf is the median of f for scenario and target, and whether it was measured.
func (r *report) medianOf(scenario, target string, f field) (float64, bool) {
	s := r.get(scenario, target)
	if s == nil {
		return 0, false
	}
	med, _, _, ok := s.agg(f)
	return med, ok
}

// added returns the per-round differences tollgate − direct of f in scenario: the
// median, min and max, paired round by round since rounds are interleaved.
func (r *report) added(scenario string, f field) (med, lo, hi float64, ok bool) {
	d, t := r.get(scenario, "direct"), r.get(scenario, "tollgate")
	if d == nil || t == nil {
		return 0, 0, 0, false
	}
	var diffs []float64
	for i := 0; i < len(d.rounds) && i < len(t.rounds); i++ {
		if d.rounds[i][f] != nil && t.rounds[i][f] != nil {
			diffs = append(diffs, *t.rounds[i][f]-*d.rounds[i][f])
		}
	}
	if len(diffs) == 0 {
		return 0, 0, 0, false
	}
	slices.Sort(diffs)
	return median(diffs), diffs[0], diffs[len(diffs)-1], true
}

func (r *report) check(what, want string, got string, met bool) {
	r.checks = append(r.checks, check{what: what, want: want, got: got, met: met})
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// cell formats the median of f with its range when the rounds differ.
func cell(s *series, f field) string {
	med, lo, hi, ok := s.agg(f)
	if !ok {
		return "-"
	}
	m := fmt.Sprintf(fieldFormats[f], med)
	if len(s.rounds) < 2 {
		return m
	}
	l, h := fmt.Sprintf(fieldFormats[f], lo), fmt.Sprintf(fieldFormats[f], hi)
	if l == h {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, l, h)
}

// print writes the table, the targets and the notes.
func (r *report) print(w io.Writer, header string) {
	fmt.Fprintf(w, "\n%s\nEach cell: median over rounds (min–max).\n\n", header)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "scenario\ttarget\trounds")
	for f := range nFields {
		fmt.Fprintf(tw, "\t%s", fieldNames[f])
	}
	fmt.Fprintln(tw)
	for _, s := range r.series {
		fmt.Fprintf(tw, "%s\t%s\t%d", s.scenario, s.target, len(s.rounds))
		for f := range nFields {
			fmt.Fprintf(tw, "\t%s", cell(s, f))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nTargets (issue 6)\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\trequired\tmeasured\t")
	met := 0
	for _, c := range r.checks {
		verdict := "MISSED"
		if c.met {
			verdict = "met"
			met++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.what, c.want, c.got, verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d of %d targets met.\n", met, len(r.checks))
	if len(r.notes) > 0 {
		fmt.Fprintln(w, "\nNotes:")
		for _, n := range r.notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// jsonRow is one object of bench/results.json: medians over rounds, null where a field
// does not apply.
type jsonRow struct {
	Scenario string   `json:"scenario"`
	Target   string   `json:"target"`
	RPS      *float64 `json:"rps"`
	P50      *float64 `json:"p50_ms"`
	P99      *float64 `json:"p99_ms"`
	TTFB     *float64 `json:"ttfb_p50_ms"`
	Errors   *int64   `json:"errors"`
	CPU      *float64 `json:"cpu_s_per_10k"`
	RSS      *float64 `json:"rss_mb"`
}

func (r *report) writeJSON(path string) error {
	rows := make([]jsonRow, 0, len(r.series))
	for _, s := range r.series {
		row := jsonRow{Scenario: s.scenario, Target: s.target}
		val := func(f field, decimals int) *float64 {
			med, _, _, ok := s.agg(f)
			if !ok {
				return nil
			}
			p := math.Pow10(decimals)
			v := math.Round(med*p) / p
			return &v
		}
		row.RPS = val(fRPS, 1)
		row.P50 = val(fP50, 3)
		row.P99 = val(fP99, 3)
		row.TTFB = val(fTTFB, 3)
		if e := val(fErrors, 0); e != nil {
			n := int64(*e)
			row.Errors = &n
		}
		row.CPU = val(fCPU, 3)
		row.RSS = val(fRSS, 1)
		rows = append(rows, row)
	}
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// percentile returns the p-th percentile (0 < p ≤ 1, nearest rank) of d, which it sorts.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(math.Ceil(p*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(v float64) string {
	sign := "+"
	if v < 0 {
		sign = "−"
		v = -v
	}
	return fmt.Sprintf("%s%.3f ms", sign, v)
}
