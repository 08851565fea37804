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
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v after its context ended", d)
	}
	if !strings.Contains(out.String(), "flushes of 4096 bytes") {
		t.Errorf("no report after stopping:\n%s", out.String())
	}
}

// PRESENCEHUB_DATA names the directory when -data does not, as for serve;
// -data wins over it.
func TestDiskCheckTakesDataDirFromFlagThenEnvironment(t *testing.T) {
	fromEnv, fromFlag := t.TempDir(), t.TempDir()
	env := envOf(map[string]string{"PRESENCEHUB_DATA": fromEnv})
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-rate", "100", "-duration", "30ms"}, fromEnv},
		{[]string{"-data", fromFlag, "-rate", "100", "-duration", "30ms"}, fromFlag},
	} {
		var out bytes.Buffer
		if err := diskCheck(context.Background(), tt.args, env, &out, io.Discard); err != nil {
			t.Fatalf("disk-check %v: %v", tt.args, err)
		}
		if !strings.Contains(out.String(), " in "+tt.want+" over ") {
			t.Errorf("disk-check %v did not test %s:\n%s", tt.args, tt.want, out.String())
		}
	}
	err := diskCheck(context.Background(), nil, envOf(map[string]string{"PRESENCEHUB_DATA": ""}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty PRESENCEHUB_DATA: got %v, want an error saying it is empty", err)
	}
}

// The check writes in turn through a file of fixed size, as the store's log
// is, so it takes no more room however long it runs.
func TestDiskCheckWritesWithinAFileOfFixedSize(t *testing.T) {
	const ring = 16 << 10
	f, err := os.CreateTemp(t.TempDir(), "ring")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(ring); err != nil {
		t.Fatal(err)
	}
	// 10 writes of 4 KiB go round the 16 KiB file twice and a half.
	lat, _, err := measureFlushes(context.Background(), f, ring, 1000, 10*time.Millisecond, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 10 {
		t.Fatalf("made %d flushes, want 10", len(lat))
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != ring {
		t.Errorf("file is %d bytes, want %d", st.Size(), ring)
	}
	// Every block was written (the buffer holds no zero byte).
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	for blk := range ring / (4 << 10) {
		if got[blk*(4<<10)] == 0 {
			t.Errorf("block %d was never written", blk)
		}
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
		{[]string{"-data", dir, "-rate", "1", "-duration", "500ms"}, "-duration must be at least one flush at -rate (1s)"},
		{[]string{"-data", dir, "-duration", "11m"}, "-duration must be"},
		{[]string{"-data", dir, "-size", "100"}, "-size must be"},
		{[]string{"-data", filepath.Join(dir, "missing")}, "missing does not exist: create it"},
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
