package main

import (
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
		"go_goroutines":                                 1234,
		"process_resident_memory_bytes":                 52428800,
		"presencehub_ws_rejected_total":                 5,
		"presencehub_broadcast_duration_seconds_bucket": 7,
	} {
		if m[k] != want {
			t.Errorf("%s: got %v, want %v", k, m[k], want)
		}
	}
}
