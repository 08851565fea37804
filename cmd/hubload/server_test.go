package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "1234 (pres hub) (x)) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 130 0 0 20 0 12 0 100 123456 789 18446744073709551615"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if got != 3.8 {
		t.Errorf("got %v s, want 3.8 (250 + 130 ticks)", got)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1 2")); err == nil {
		t.Error("short stat: got no error")
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 1234
process_resident_memory_bytes 5.24288e+07
presencehub_ws_rejected_total{reason="no token"} 2
presencehub_ws_rejected_total{reason="origin"} 3
presencehub_broadcast_duration_seconds_bucket{le="0.001"} 7 1700000000000
`
	m := parseMetrics(strings.NewReader(text))
	for k, want := range map[string]float64{
		"go_goroutines":                                             1234,
		"process_resident_memory_bytes":                             52428800,
		"presencehub_ws_rejected_total":                             5,
		"presencehub_broadcast_duration_seconds_bucket":             7,
		`presencehub_ws_rejected_total{reason="no token"}`:          2,
		`presencehub_ws_rejected_total{reason="origin"}`:            3,
		`presencehub_broadcast_duration_seconds_bucket{le="0.001"}`: 7,
	} {
		if m[k] != want {
			t.Errorf("%s: got %v, want %v", k, m[k], want)
		}
	}
}

// commitStalls reads the commits between two scrapes, and those over each
// bound, from the cumulative buckets of the hub's histogram.
func TestCommitStalls(t *testing.T) {
	scrape := func(le01, le025, le05, le1, count float64) map[string]float64 {
		return parseMetrics(strings.NewReader(fmt.Sprintf(`presencehub_store_commit_duration_seconds_bucket{le="0.005"} 1
presencehub_store_commit_duration_seconds_bucket{le="0.01"} %v
presencehub_store_commit_duration_seconds_bucket{le="0.025"} %v
presencehub_store_commit_duration_seconds_bucket{le="0.05"} %v
presencehub_store_commit_duration_seconds_bucket{le="0.1"} %v
presencehub_store_commit_duration_seconds_bucket{le="+Inf"} %v
presencehub_store_commit_duration_seconds_sum 1.5
presencehub_store_commit_duration_seconds_count %v
`, le01, le025, le05, le1, count, count)))
	}
	before := scrape(90, 95, 98, 99, 100)
	// 1,000 commits more: 20 over 10 ms, of which 7 over 25 ms, 3 over 50
	// ms and 1 over 100 ms.
	after := scrape(1070, 1088, 1095, 1098, 1100)
	got := commitStalls(before, after)
	want := fields{{"commits", int64(1000)}, {"over_10ms", int64(20)}, {"over_25ms", int64(7)}, {"over_50ms", int64(3)}, {"over_100ms", int64(1)}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// In order, in the JSON line as in the table.
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); s != `{"commits":1000,"over_10ms":20,"over_25ms":7,"over_50ms":3,"over_100ms":1}` {
		t.Errorf("JSON %s", s)
	}
	if got := commitStalls(before, map[string]float64{"go_goroutines": 3}); got != nil {
		t.Errorf("without the histogram: got %v, want nil", got)
	}
	if got := commitStalls(nil, after); got != nil {
		t.Errorf("without a first scrape: got %v, want nil", got)
	}
}
