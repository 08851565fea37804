package hub

import (
	"sync/atomic"
	"time"
)

// Requests are answered off the reader goroutine, so that the deep stack
// decoding, the store and encoding need does not stay with an idle
// connection's reader. A goroutine started per request paid for that
// stack every time: its stack grew by copying, two or three times, on
// every request (5 % of the hub's CPU in a durable run, 7 % in a reconnect
// storm). workers keeps the goroutines of earlier requests, stack and
// all, and hands them the next ones. A request that finds none idle gets
// a new goroutine, which then stays, so the pool follows the load: at most
// maxIdleWorkers wait at a time, each for at most workerIdle.

// maxIdleWorkers bounds the goroutines waiting for a request. They hold
// their grown stacks (the collector shrinks one that stays mostly unused),
// a few KiB each.
const maxIdleWorkers = 64

// workerIdle is how long a goroutine waits for a request before it ends.
const workerIdle = 5 * time.Second

// reqJob is one request to answer: conn's frame b.
type reqJob struct {
	c *conn
	b []byte
}

type workers struct {
	answer  func(reqJob) // answers one request
	jobs    chan reqJob  // unbuffered: a send succeeds only into a waiting worker
	idle    atomic.Int32
	started atomic.Int64    // goroutines started, ever
	quit    <-chan struct{} // the hub's lifetime: every worker ends with it
}

func newWorkers(quit <-chan struct{}, answer func(reqJob)) *workers {
	return &workers{answer: answer, jobs: make(chan reqJob), quit: quit}
}

// run answers j on a waiting worker, or on a new one.
func (w *workers) run(j reqJob) {
	select {
	case w.jobs <- j:
	default:
		w.started.Add(1)
		go w.work(j) // ends after workerIdle without a request, or with the hub
	}
}

// work answers j, then whatever requests come while it waits.
func (w *workers) work(j reqJob) {
	var idle *time.Timer
	for {
		w.answer(j)
		j = reqJob{} // a waiting worker holds no connection or request
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case j = <-w.jobs:
			w.idle.Add(-1)
		case <-idle.C:
			w.idle.Add(-1)
			return
		case <-w.quit:
			w.idle.Add(-1)
			idle.Stop()
			return
		}
	}
}
