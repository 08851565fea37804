package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The check writes into the directory it is given, reports every flush it
// made, and leaves nothing behind.
func TestDiskCheckReportsFlushesAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	err := run(context.Background(), []string{"disk-check", "-data", dir, "-rate", "200", "-duration", "250ms", "-size", "1024"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("disk-check: %v", err)
	}
	text := out.String()
	m := regexp.MustCompile(`disk-check: (\d+) flushes of 1024 bytes in (\S+) over`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", text)
	}
	// 200/s for 250 ms is 50 slots, and every one is flushed: a slot a
	// slow flush made late goes at once, it is not skipped.
	if n, _ := strconv.Atoi(m[1]); n != 50 {
		t.Errorf("reported %d flushes, want 50", n)
	}
	if m[2] != dir {
		t.Errorf("reported directory %q, want %q", m[2], dir)
	}
	for _, want := range []string{"flush time: p50 ", " p99 ", " max ", "stalls: ", " over 100ms"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("left %d files behind, first %s", len(left), left[0].Name())
	}
}

// Stopping the check (Ctrl-C) still reports what it measured.
func TestDiskCheckStopsEarlyWithAReport(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := diskCheck(ctx, []string{"-data", dir, "-rate", "100", "-duration", "10m"}, envOf(nil), &out, io.Discard)
	if err != nil {
		t.Fatalf("disk-check: %v", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("took %v after its context ended", d)
	}
	if !strings.Contains(out.String(), "flushes of 4096 bytes") {
		t.Errorf("no report after stopping:\n%s", out.String())
	}
}

// PRESENCEHUB_DATA names the directory when -data does not, as for serve.
func TestDiskCheckReadsDataDirFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	env := envOf(map[string]string{"PRESENCEHUB_DATA": dir})
	if err := diskCheck(context.Background(), []string{"-rate", "100", "-duration", "30ms"}, env, &out, io.Discard); err != nil {
		t.Fatalf("disk-check: %v", err)
	}
	if !strings.Contains(out.String(), " in "+dir+" over ") {
		t.Errorf("did not test %s:\n%s", dir, out.String())
	}
}

func TestDiskCheckRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-data", dir, "-rate", "0"}, "-rate must be 1 to 10000"},
		{[]string{"-data", dir, "-rate", "20000"}, "-rate must be 1 to 10000"},
		{[]string{"-data", dir, "-duration", "0s"}, "-duration must be"},
		{[]string{"-data", dir, "-duration", "11m"}, "-duration must be"},
		{[]string{"-data", dir, "-size", "100"}, "-size must be"},
		{[]string{"-data", filepath.Join(dir, "missing")}, "no such file or directory"},
		{[]string{"-data", file}, "is not a directory"},
		{[]string{"-data", dir, "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		err := diskCheck(context.Background(), tt.args, envOf(nil), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("disk-check %v: got %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}

func TestCountOver(t *testing.T) {
	sorted := []time.Duration{1, 5, 10, 10, 11, 50}
	for _, tt := range []struct {
		lim  time.Duration
		want int
	}{{0, 6}, {1, 5}, {10, 2}, {11, 1}, {50, 0}} {
		if got := countOver(sorted, tt.lim); got != tt.want {
			t.Errorf("countOver(%v) = %d, want %d", tt.lim, got, tt.want)
		}
	}
}
