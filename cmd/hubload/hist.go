package main

import (
	"math"
	"sync/atomic"
	"time"
)

// hist is a latency histogram that thousands of reader goroutines record
// into at once without a lock and without allocating: 10 µs buckets up to
// 1 s, 1 ms buckets from 1 s to 60 s, and one overflow bucket, each an atomic
// counter. Percentiles are therefore exact to a bucket (10 µs below 1 s),
// and the maximum is kept exactly.
type hist struct {
	buckets [histBuckets]atomic.Uint64
	n       atomic.Uint64
	sum     atomic.Int64 // nanoseconds, for the mean
	max     atomic.Int64 // nanoseconds
}

const (
	histFine       = 10 * time.Microsecond
	histFineTop    = time.Second
	histCoarse     = time.Millisecond
	histCoarseTop  = 60 * time.Second
	histFineN      = int(histFineTop / histFine)                     // 100,000
	histCoarseN    = int((histCoarseTop - histFineTop) / histCoarse) // 59,000
	histBuckets    = histFineN + histCoarseN + 1                     // + overflow
	histOverflowAt = histBuckets - 1
)

func newHist() *hist { return new(hist) }

// bucketOf returns the bucket of a duration; negative durations (clock
// skew cannot happen with the monotonic clock, but a bug could) count as 0.
func bucketOf(d time.Duration) int {
	switch {
	case d < 0:
		return 0
	case d < histFineTop:
		return int(d / histFine)
	case d < histCoarseTop:
		return histFineN + int((d-histFineTop)/histCoarse)
	}
	return histOverflowAt
}

// bucketTop is the upper bound of bucket i: a percentile is reported as the
// top of its bucket, so it is never optimistic.
func bucketTop(i int) time.Duration {
	switch {
	case i < histFineN:
		return time.Duration(i+1) * histFine
	case i < histOverflowAt:
		return histFineTop + time.Duration(i-histFineN+1)*histCoarse
	}
	return time.Duration(math.MaxInt64)
}

// record adds one observation.
func (h *hist) record(d time.Duration) {
	h.buckets[bucketOf(d)].Add(1)
	h.n.Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// count is how many observations were recorded.
func (h *hist) count() uint64 { return h.n.Load() }

// merge adds o's observations to h.
func (h *hist) merge(o *hist) {
	for i := range o.buckets {
		if v := o.buckets[i].Load(); v != 0 {
			h.buckets[i].Add(v)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
}

// quantiles returns the value at each q (0 < q <= 1): the smallest bucket
// top below which at least q of the observations fall. The maximum is
// returned for q = 1 and caps every answer, so p99 of a few slow samples is
// never reported above the slowest one. With no observations every answer
// is 0.
func (h *hist) quantiles(qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	n := h.n.Load()
	if n == 0 {
		return out
	}
	mx := time.Duration(h.max.Load())
	ranks := make([]uint64, len(qs))
	for j, q := range qs {
		r := uint64(math.Ceil(q * float64(n)))
		ranks[j] = min(max(r, 1), n)
	}
	var seen uint64
	for i := range h.buckets {
		c := h.buckets[i].Load()
		if c == 0 {
			continue
		}
		seen += c
		for j, r := range ranks {
			if out[j] == 0 && seen >= r {
				out[j] = min(bucketTop(i), mx)
			}
		}
	}
	for j := range out {
		if out[j] == 0 || qs[j] >= 1 {
			out[j] = mx
		}
	}
	return out
}

// summary is a latency distribution in milliseconds, for the report.
type summary struct {
	N    uint64  `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func (h *hist) summary() summary {
	q := h.quantiles(0.5, 0.9, 0.99, 0.999, 1)
	s := summary{N: h.n.Load(), P50: ms(q[0]), P90: ms(q[1]), P99: ms(q[2]), P999: ms(q[3]), Max: ms(q[4])}
	if s.N > 0 {
		s.Mean = ms(time.Duration(h.sum.Load() / int64(s.N)))
	}
	return s
}
