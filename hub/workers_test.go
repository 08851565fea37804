package hub

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Workers stay for the next request, at most maxIdleWorkers of them, and
// end after workerIdle without one, or with the hub.
func TestWorkersAreKeptAndBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		quit := make(chan struct{})
		var answered atomic.Int64
		release := make(chan struct{})
		w := newWorkers(quit, func(reqJob) { <-release; answered.Add(1) })

		// 100 requests at once: none finds a worker waiting.
		for range 100 {
			w.run(reqJob{})
		}
		close(release)
		synctest.Wait()
		if n, s := answered.Load(), w.started.Load(); n != 100 || s != 100 {
			t.Fatalf("answered %d on %d goroutines, want 100 on 100", n, s)
		}
		if n := w.idle.Load(); n != maxIdleWorkers {
			t.Errorf("%d workers waiting, want %d", n, maxIdleWorkers)
		}

		// The next requests go to those waiting: no goroutine is started.
		for range 10 {
			w.run(reqJob{})
			synctest.Wait()
		}
		if n, s := answered.Load(), w.started.Load(); n != 110 || s != 100 {
			t.Errorf("answered %d on %d goroutines, want 110 on 100", n, s)
		}

		// Idle for workerIdle: they end.
		time.Sleep(workerIdle + time.Second)
		synctest.Wait()
		if n := w.idle.Load(); n != 0 {
			t.Errorf("%d workers still waiting after %v", n, workerIdle)
		}

		// And they end with the hub.
		w.run(reqJob{})
		synctest.Wait()
		if n := w.idle.Load(); n != 1 {
			t.Fatalf("%d workers waiting, want 1", n)
		}
		close(quit)
		synctest.Wait()
		if n := w.idle.Load(); n != 0 {
			t.Errorf("%d workers still waiting after the hub stopped", n)
		}
	})
}
