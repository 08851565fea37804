package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// field is one named value of a report; fields keep their order so the
// JSON line and the table read the same way.
type field struct {
	Key   string
	Value any
}

type fields []field

func (f *fields) add(key string, v any) { *f = append(*f, field{key, v}) }

// MarshalJSON writes the fields as one object, in order.
func (f fields) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range f {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(kv.Key)
		v, err := json.Marshal(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// report is one run: the JSON line is {"scenario","params","results"}.
type report struct {
	Scenario string `json:"scenario"`
	Params   fields `json:"params"`
	Results  fields `json:"results"`
	// Problems lists what went wrong in a run that still completed: lost or
	// wrong events, errors from the hub. Empty when all was well.
	Problems []string `json:"problems"`
}

func (r *report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// loadAvg is the machine's 1-minute load average, -1 if unknown. The hub
// and the load tool share two cores with whatever else runs: a report
// carries the load it was made under.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// write prints the JSON line and, unless jsonOnly, a table for people.
func (r *report) write(w io.Writer, jsonOnly bool) error {
	if r.Problems == nil {
		r.Problems = []string{}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
		return err
	}
	if jsonOnly {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\n%s\n", r.Scenario)
	for _, kv := range r.Params {
		fmt.Fprintf(tw, "  %s\t%s\n", kv.Key, human(kv.Value))
	}
	fmt.Fprintln(tw, "results")
	for _, kv := range r.Results {
		fmt.Fprintf(tw, "  %s\t%s\n", kv.Key, human(kv.Value))
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(tw, "problems")
		for _, p := range r.Problems {
			fmt.Fprintf(tw, "  %s\n", p)
		}
	}
	return tw.Flush()
}

// human formats a value for the table.
func human(v any) string {
	switch x := v.(type) {
	case summary:
		if x.N == 0 {
			return "no samples"
		}
		return fmt.Sprintf("n=%d  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s",
			x.N, msStr(x.P50), msStr(x.P90), msStr(x.P99), msStr(x.P999), msStr(x.Max), msStr(x.Mean))
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return fmt.Sprintf("%.0f", x)
		}
		return fmt.Sprintf("%.2f", x)
	case map[string]int:
		var parts []string
		for _, k := range sortedKeys(x) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, x[k]))
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, " ")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func msStr(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

// round2 keeps two decimals, so the JSON line does not carry float noise.
func round2(v float64) float64 { return math.Round(v*100) / 100 }

// rate is n per second over d seconds, 0 when d is 0.
func rate(n float64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return round2(n / secs)
}

// mib is bytes in MiB with two decimals.
func mib(b int64) float64 { return round2(float64(b) / (1 << 20)) }
