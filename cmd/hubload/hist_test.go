package main

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestHistQuantilesUniform(t *testing.T) {
	h := newHist()
	// 1 ms, 2 ms, ..., 1000 ms.
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	q := h.quantiles(0.5, 0.9, 0.99, 1)
	want := []time.Duration{500 * time.Millisecond, 900 * time.Millisecond, 990 * time.Millisecond, time.Second}
	for i := range q {
		// A value is reported as the top of its bucket: at most 10 µs (1 ms
		// above 1 s) above it, never below.
		if q[i] < want[i] || q[i] > want[i]+histCoarse {
			t.Errorf("q%d: got %v, want %v (to a bucket)", i, q[i], want[i])
		}
	}
	if s := h.summary(); s.N != 1000 || s.Mean < 500 || s.Mean > 501 {
		t.Errorf("summary: got n=%d mean=%v, want 1000 and 500.5 ms", s.N, s.Mean)
	}
}

func TestHistQuantilesMatchSortedSample(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := newHist()
	var sample []time.Duration
	for range 100_000 {
		// Log-normal-ish: mostly sub-millisecond, a tail into seconds.
		d := time.Duration(rng.ExpFloat64() * rng.ExpFloat64() * float64(300*time.Microsecond))
		h.record(d)
		sample = append(sample, d)
	}
	slices.Sort(sample)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := sample[int(q*float64(len(sample)))-1]
		got := h.quantiles(q)[0]
		tol := histFine
		if exact >= histFineTop {
			tol = histCoarse
		}
		if got < exact || got > exact+tol {
			t.Errorf("p%v: got %v, want %v to within %v", q*100, got, exact, tol)
		}
	}
	if got := h.quantiles(1)[0]; got != sample[len(sample)-1] {
		t.Errorf("max: got %v, want %v", got, sample[len(sample)-1])
	}
}

func TestHistEdges(t *testing.T) {
	h := newHist()
	if q := h.quantiles(0.5, 1); q[0] != 0 || q[1] != 0 {
		t.Fatalf("empty: got %v, want zeros", q)
	}
	h.record(-time.Second) // counts as the first bucket
	h.record(2 * time.Minute)
	if got := h.quantiles(1)[0]; got != 2*time.Minute {
		t.Errorf("max: got %v, want 2m (the overflow bucket keeps the exact max)", got)
	}
	if got := h.quantiles(0.5)[0]; got != histFine {
		t.Errorf("p50: got %v, want %v", got, histFine)
	}
	// A single sample in a wide bucket is reported as itself, not the
	// bucket's top.
	one := newHist()
	one.record(1500*time.Millisecond + 123*time.Microsecond)
	if got := one.quantiles(0.99)[0]; got != 1500*time.Millisecond+123*time.Microsecond {
		t.Errorf("single sample: got %v, want 1.500123s", got)
	}
	for _, d := range []time.Duration{0, histFine - 1, histFine, histFineTop - 1, histFineTop, histCoarseTop - 1, histCoarseTop} {
		if b := bucketOf(d); d < histCoarseTop && bucketTop(b) <= d {
			t.Errorf("bucket of %v: top %v is not above it", d, bucketTop(b))
		}
	}
}

func TestHistConcurrentRecordAndMerge(t *testing.T) {
	a, b := newHist(), newHist()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() { // ends after its 1000 records
			defer wg.Done()
			h := a
			if g%2 == 1 {
				h = b
			}
			for i := range 1000 {
				h.record(time.Duration(i) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	a.merge(b)
	if a.count() != 8000 {
		t.Fatalf("count: got %d, want 8000", a.count())
	}
	if got := a.quantiles(1)[0]; got != 999*time.Microsecond {
		t.Errorf("max: got %v, want 999µs", got)
	}
}
