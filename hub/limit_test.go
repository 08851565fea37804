package hub

import (
	"fmt"
	"testing"
	"time"
)

func TestAPILimiterBucket(t *testing.T) {
	l := newLimiter(2) // burst 4
	k := limitKey{ws: "w", sub: "al"}
	t0 := time.Unix(1_000_000, 0)

	steps := []struct {
		at       time.Duration // since t0
		ok       bool
		wait     time.Duration // when refused
		describe string
	}{
		{0, true, 0, "a new caller starts with a full burst"},
		{0, true, 0, ""},
		{0, true, 0, ""},
		{0, true, 0, "fourth of a burst of four"},
		{0, false, 500 * time.Millisecond, "empty: one token every 500ms"},
		{200 * time.Millisecond, false, 300 * time.Millisecond, "refusals spend nothing"},
		{500 * time.Millisecond, true, 0, "refilled one"},
		{500 * time.Millisecond, false, 500 * time.Millisecond, ""},
		{time.Hour, true, 0, "a long pause refills to the burst, no more"},
		{time.Hour, true, 0, ""},
		{time.Hour, true, 0, ""},
		{time.Hour, true, 0, ""},
		{time.Hour, false, 500 * time.Millisecond, ""},
	}
	for i, s := range steps {
		ok, wait := l.take(k, t0.Add(s.at))
		if ok != s.ok || (!ok && (wait-s.wait).Abs() > time.Millisecond) {
			t.Fatalf("step %d (%s): got ok=%v wait=%v, want ok=%v wait=%v", i, s.describe, ok, wait, s.ok, s.wait)
		}
	}
	if ok, _ := l.take(limitKey{ws: "w", sub: "bea"}, t0.Add(time.Hour)); !ok {
		t.Fatalf("another subject: got refused, want its own bucket")
	}
	if ok, _ := l.take(limitKey{ws: "w2", sub: "al"}, t0.Add(time.Hour)); !ok {
		t.Fatalf("same subject in another workspace: got refused, want its own bucket")
	}
}

func TestAPILimiterForgetsIdleCallers(t *testing.T) {
	l := newLimiter(10) // refills completely in 2 s
	t0 := time.Unix(1_000_000, 0)
	for i := range 100 {
		l.take(limitKey{ws: "w", sub: fmt.Sprintf("agent%d", i)}, t0)
	}
	if got := l.len(); got != 100 {
		t.Fatalf("after 100 callers: got %d buckets, want 100", got)
	}
	// The next sweep is due a minute after the first; by then every bucket
	// is full again and carries no information.
	l.take(limitKey{ws: "w", sub: "late"}, t0.Add(limitSweepEvery+time.Second))
	if got := l.len(); got != 1 {
		t.Fatalf("after a sweep: got %d buckets, want 1 (only the caller just seen)", got)
	}
}
