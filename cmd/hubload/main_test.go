package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseArgs(t *testing.T) {
	c, err := parseArgs([]string{"fanout", "-secret", "0123456789abcdef", "-burst", "1", "-n", "10", "-url", "http://127.0.0.1:18080"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.burst || c.n != 10 || !strings.HasPrefix(c.wsPrefix, "hl") {
		t.Errorf("got burst=%v n=%d ws=%q, want true 10 hl...", c.burst, c.n, c.wsPrefix)
	}
	for _, args := range [][]string{
		{"fanout", "-secret", "short"},
		{"fanout", "-secret", "0123456789abcdef", "-url", "http://10.0.0.1:8080"},
		{"nosuch"},
		{"churn", "-secret", "0123456789abcdef", "-grace", "91"},
		{"idle", "-secret", "0123456789abcdef", "-n", "0"},
	} {
		if _, err := parseArgs(args, io.Discard); err == nil {
			t.Errorf("%v: got no error", args)
		}
	}
}

func TestNormalizeBoolArgs(t *testing.T) {
	got := normalizeBoolArgs([]string{"-burst", "1", "-n", "5", "--burst", "false", "-burst", "-x"}, "burst")
	want := "-burst=1 -n 5 --burst=false -burst -x"
	if strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	if !sleep(context.Background(), time.Millisecond) {
		t.Error("a full sleep reported false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if sleep(ctx, time.Hour) {
		t.Error("a sleep cut short reported true")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v after its context ended", d)
	}
	if sleep(ctx, 0) {
		t.Error("no sleep on an ended context reported true")
	}
}
