package presence

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkNext(b *testing.B) {
	b.Run("activity", func(b *testing.B) {
		// The hot path: activity on a connected agent re-arms the idle timer.
		b.ReportAllocs()
		s, clock := online1, now
		in := Input{Key: ann, Kind: InputActivity}
		for b.Loop() {
			clock = clock.Add(time.Second)
			s, _ = Next(s, in, clock, tt)
		}
	})
	b.Run("reload", func(b *testing.B) {
		// The last tab closes and comes back inside the grace: two updates
		// and four timer changes per round.
		b.ReportAllocs()
		s, clock := online1, now
		ins := [2]Input{{Key: ann, Kind: InputDisconnect}, {Key: ann, Kind: InputConnect}}
		i := 0
		for b.Loop() {
			clock = clock.Add(time.Second)
			s, _ = Next(s, ins[i&1], clock, tt)
			i++
		}
	})
}

// BenchmarkTrackerConnectDisconnect measures a connect and a disconnect of
// one of 1,000 agents through a running Tracker: queueing, the goroutine
// handoff, Next, the timer heap and the callback.
func BenchmarkTrackerConnectDisconnect(b *testing.B) {
	var updates atomic.Int64
	tr := NewTracker(func(Update) { updates.Add(1) }, DefaultTiming)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Ends when cancel is called at the end of the benchmark.
	go func() { done <- tr.Run(ctx) }()

	agents := make([]string, 1000)
	for i := range agents {
		agents[i] = "agent" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a := agents[i%len(agents)]
		tr.Connect("acme", a)
		tr.Disconnect("acme", a)
		i++
	}
	// Wait for the queued inputs, so none is left to a later benchmark.
	tr.Snapshot("acme", agents[0])
	b.StopTimer()
	b.ReportMetric(float64(updates.Load())/float64(i), "updates/op")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
