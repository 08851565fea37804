package hub

import (
	"sync"
	"time"
)

// limiter is a token bucket per (workspace, token subject). It is a few
// lines over a map rather than golang.org/x/time/rate because the API also
// needs what that package leaves out: forgetting idle callers, so the map
// only holds those active in the last minutes.
type limiter struct {
	rate  float64 // tokens added per second
	burst float64 // bucket size; a new caller starts full
	// idle is how long a bucket takes to refill completely. A bucket untouched
	// that long is full, the same as no bucket, so it can be forgotten.
	idle time.Duration

	mu        sync.Mutex // guards buckets and nextSweep
	buckets   map[limitKey]bucket
	nextSweep time.Time
}

type limitKey struct{ ws, sub string }

type bucket struct {
	tokens float64
	last   time.Time // when tokens was last brought up to date
}

// limitSweepEvery bounds how often take walks the map to forget idle buckets:
// the walk is under the lock, so it must stay rare.
const limitSweepEvery = time.Minute

// newLimiter allows rate requests per second with bursts of twice that
// (at least one request).
func newLimiter(rate float64) *limiter {
	burst := max(1, 2*rate)
	return &limiter{
		rate:    rate,
		burst:   burst,
		idle:    time.Duration(burst / rate * float64(time.Second)),
		buckets: make(map[limitKey]bucket),
	}
}

// take spends one token of k's bucket at now. When the bucket is empty it
// spends nothing and says how long until a token is back.
func (l *limiter) take(k limitKey, now time.Time) (ok bool, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(l.nextSweep) {
		l.sweep(now)
		l.nextSweep = now.Add(limitSweepEvery)
	}
	b, found := l.buckets[k]
	if !found {
		b = bucket{tokens: l.burst, last: now}
	} else if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		ok = true
	} else {
		wait = time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	l.buckets[k] = b
	return ok, wait
}

// sweep forgets the buckets that have had time to refill. l.mu is held.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.idle {
			delete(l.buckets, k)
		}
	}
}

// len is how many callers the limiter remembers, for tests.
func (l *limiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
