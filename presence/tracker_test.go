package presence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness runs a Tracker and records its updates. Inside a synctest bubble
// time is fake, so update times read as offsets from the start.
type harness struct {
	t     *testing.T
	tr    *Tracker
	start time.Time
	stop  func() // cancels Run and waits for it

	mu      sync.Mutex // guards updates: onUpdate runs on the tracker goroutine
	updates []Update
}

func startTracker(t *testing.T, def Timing) *harness {
	t.Helper()
	h := &harness{t: t, start: time.Now()}
	h.tr = NewTracker(func(u Update) {
		h.mu.Lock()
		h.updates = append(h.updates, u)
		h.mu.Unlock()
	}, def)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Ends when stop cancels ctx.
	go func() { done <- h.tr.Run(ctx) }()
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	}
	return h
}

// take returns the updates since the last take, after the tracker has
// applied everything sent so far.
func (h *harness) take() []Update {
	synctest.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.updates
	h.updates = nil
	return out
}

func (h *harness) offset(x time.Time) string { return x.Sub(h.start).String() }

func (h *harness) format(u Update) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s->%s %s", u.Agent, u.Prev, u.Status, u.Reason)
	if u.ManualAway {
		b.WriteString(" manual")
	}
	if !u.GraceDeadline.IsZero() {
		fmt.Fprintf(&b, " grace=%s", h.offset(u.GraceDeadline))
	}
	if !u.LastSeen.IsZero() {
		fmt.Fprintf(&b, " seen=%s", h.offset(u.LastSeen))
	}
	fmt.Fprintf(&b, " at=%s", h.offset(u.At))
	return b.String()
}

// expect checks the updates since the last take, written as format writes
// them: "agent prev->status reason [manual] [grace=T] [seen=T] at=T", with
// times as offsets from the start.
func (h *harness) expect(want ...string) {
	h.t.Helper()
	var got []string
	for _, u := range h.take() {
		got = append(got, h.format(u))
	}
	if !slices.Equal(got, want) {
		h.t.Errorf("updates:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

func (h *harness) expectStatus(ws, agent string, want Status) {
	h.t.Helper()
	s, _ := h.tr.Snapshot(ws, agent)
	if s.Status != want {
		h.t.Errorf("%s/%s: got %s, want %s", ws, agent, s.Status, want)
	}
}

// noIdleTiming keeps idle timeouts out of tests about connections.
var noIdleTiming = Timing{Grace: time.Minute}

func TestSecondTabKeepsAgentOnline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, noIdleTiming)
		defer h.stop()

		h.tr.Connect("acme", "ann")
		h.tr.Connect("acme", "ann")
		h.tr.Connect("acme", "ann")
		h.expect("ann offline->online connected at=0s")

		time.Sleep(time.Second)
		h.tr.Disconnect("acme", "ann")
		h.tr.Disconnect("acme", "ann")
		h.expect()
		time.Sleep(10 * time.Minute)
		h.expect()
		s, known := h.tr.Snapshot("acme", "ann")
		if !known || s.Status != Online || s.Conns != 1 {
			t.Errorf("got %s known=%v, want online with 1 connection", fmtState(s), known)
		}

		h.tr.Disconnect("acme", "ann")
		h.expect("ann online->online last_disconnect grace=11m1s at=10m1s")
	})
}

func TestReconnectWithinGraceIsInvisible(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, noIdleTiming)
		defer h.stop()

		h.tr.Connect("acme", "ann")
		time.Sleep(10 * time.Second)
		h.tr.Disconnect("acme", "ann")
		h.expect(
			"ann offline->online connected at=0s",
			"ann online->online last_disconnect grace=1m10s at=10s",
		)

		// A page reload a breath before the grace ends.
		time.Sleep(time.Minute - time.Nanosecond)
		h.tr.Connect("acme", "ann")
		for _, u := range h.take() {
			if u.Transition() || u.Reason != ReasonReconnected || !u.GraceDeadline.IsZero() {
				t.Errorf("got %s, want a reconnected update without a grace", h.format(u))
			}
		}
		time.Sleep(time.Hour)
		h.expect()
		h.expectStatus("acme", "ann", Online)
	})
}

func TestGraceExpiryGoesOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()

		h.tr.Connect("acme", "ann")
		time.Sleep(time.Second)
		h.tr.Disconnect("acme", "ann")
		h.expect(
			"ann offline->online connected at=0s",
			"ann online->online last_disconnect grace=1m1s at=1s",
		)

		time.Sleep(DefaultTiming.Grace - time.Nanosecond)
		h.expect()
		h.expectStatus("acme", "ann", Online)

		time.Sleep(time.Nanosecond)
		h.expect("ann online->offline grace_expired seen=1s at=1m1s")
		s, _ := h.tr.Snapshot("acme", "ann")
		if want := (State{Status: Offline, LastActivity: h.start, LastSeen: h.start.Add(time.Second)}); !sameState(s, want) {
			t.Errorf("got %s, want %s", fmtState(s), fmtState(want))
		}
	})
}

// sameState compares states by instant, not by time.Time representation.
func sameState(a, b State) bool {
	return a.Status == b.Status && a.Conns == b.Conns && a.ManualAway == b.ManualAway &&
		a.LastActivity.Equal(b.LastActivity) && a.GraceDeadline.Equal(b.GraceDeadline) && a.LastSeen.Equal(b.LastSeen)
}

func TestManualAwayStickyAcrossReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()

		h.tr.Connect("acme", "ann")
		h.tr.SetAway("acme", "ann", true)
		h.tr.Activity("acme", "ann")
		h.expect(
			"ann offline->online connected at=0s",
			"ann online->away manual_away manual at=0s",
		)

		// Reload inside the grace: still away, nobody sees anything.
		time.Sleep(time.Second)
		h.tr.Disconnect("acme", "ann")
		time.Sleep(time.Second)
		h.tr.Connect("acme", "ann")
		h.tr.Activity("acme", "ann")
		h.expect(
			"ann away->away last_disconnect manual grace=1m1s at=1s",
			"ann away->away reconnected manual at=2s",
		)

		// Gone for longer than the grace: offline, and back as away.
		h.tr.Disconnect("acme", "ann")
		time.Sleep(time.Hour)
		h.tr.Connect("acme", "ann")
		h.expect(
			"ann away->away last_disconnect manual grace=1m2s at=2s",
			"ann away->offline grace_expired manual seen=2s at=1m2s",
			"ann offline->away connected manual at=1h0m2s",
		)

		h.tr.SetAway("acme", "ann", false)
		h.expect("ann away->online available at=1h0m2s")
		h.tr.Disconnect("acme", "ann")
		time.Sleep(time.Hour)
		h.tr.Connect("acme", "ann")
		h.expect(
			"ann online->online last_disconnect grace=1h1m2s at=1h0m2s",
			"ann online->offline grace_expired seen=1h0m2s at=1h1m2s",
			"ann offline->online connected at=2h0m2s",
		)
	})
}

func TestIdleAwayAndActivityEndsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming) // idle away after 10 min
		defer h.stop()

		h.tr.Connect("acme", "ann")
		h.tr.Connect("acme", "ann")
		h.expect("ann offline->online connected at=0s")

		// Activity on any connection holds idle away off.
		time.Sleep(5 * time.Minute)
		h.tr.Activity("acme", "ann")
		time.Sleep(10*time.Minute - time.Nanosecond)
		h.expect()
		time.Sleep(time.Nanosecond)
		h.expect("ann online->away idle at=15m0s")

		time.Sleep(time.Minute)
		h.tr.Activity("acme", "ann")
		h.tr.Activity("acme", "ann")
		h.expect("ann away->online activity at=16m0s")

		time.Sleep(10 * time.Minute)
		h.expect("ann online->away idle at=26m0s")

		// A manual away is not ended by activity, and idle away leaves it be.
		h.tr.SetAway("acme", "ann", true)
		h.tr.Activity("acme", "ann")
		time.Sleep(time.Hour)
		h.expect("ann away->away manual_away manual at=26m0s")
		h.expectStatus("acme", "ann", Away)
	})
}

func TestIdleLogout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, Timing{Grace: time.Minute, IdleAway: 10 * time.Minute, IdleLogout: 30 * time.Minute})
		defer h.stop()

		h.tr.Connect("acme", "ann")
		h.tr.Connect("acme", "ann")
		time.Sleep(time.Minute)
		h.tr.SetAway("acme", "ann", true)
		time.Sleep(30*time.Minute - time.Nanosecond)
		h.expect(
			"ann offline->online connected at=0s",
			"ann online->away manual_away manual at=1m0s",
		)
		time.Sleep(time.Nanosecond)
		h.expect("ann away->offline idle_logout seen=31m0s at=31m0s")

		// The hub closes the sockets; their disconnects change nothing.
		h.tr.Disconnect("acme", "ann")
		h.tr.Disconnect("acme", "ann")
		time.Sleep(time.Hour)
		h.expect()

		// Idle logout counts as a logout: the next login starts available.
		h.tr.Connect("acme", "ann")
		h.expect("ann offline->online connected at=1h31m0s")
	})
}

func TestLogoutIsImmediate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()

		h.tr.Connect("acme", "ann")
		h.tr.Connect("acme", "ann")
		h.tr.SetAway("acme", "ann", true)
		time.Sleep(time.Second)
		h.tr.Logout("acme", "ann")
		h.expect(
			"ann offline->online connected at=0s",
			"ann online->away manual_away manual at=0s",
			"ann away->offline logout seen=1s at=1s",
		)

		h.tr.Disconnect("acme", "ann")
		h.tr.Disconnect("acme", "ann")
		h.tr.Activity("acme", "ann")
		h.tr.SetAway("acme", "ann", true)
		time.Sleep(time.Hour)
		h.expect()

		h.tr.Connect("acme", "ann")
		h.expect("ann offline->online connected at=1h0m1s")
	})
}

func TestForceOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()

		h.tr.Connect("acme", "ann")
		h.tr.Connect("acme", "bob")
		time.Sleep(time.Second)
		h.tr.ForceOffline("acme", "ann")
		h.tr.Disconnect("acme", "ann")
		h.tr.ForceOffline("acme", "ann")
		h.tr.ForceOffline("acme", "nobody")
		time.Sleep(time.Hour)
		h.expect(
			"ann offline->online connected at=0s",
			"bob offline->online connected at=0s",
			"ann online->offline forced seen=1s at=1s",
			"bob online->away idle at=10m0s",
		)
		if _, known := h.tr.Snapshot("acme", "nobody"); known {
			t.Errorf("an agent never connected is remembered after a force offline")
		}
	})
}

func TestConfigureShorterGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, noIdleTiming)
		defer h.stop()

		for _, k := range []Key{{"acme", "ann"}, {"acme", "bob"}, {"other", "cleo"}} {
			h.tr.Connect(k.Workspace, k.Agent)
		}
		h.tr.Disconnect("acme", "ann")
		h.tr.Disconnect("other", "cleo")
		time.Sleep(25 * time.Second)
		h.tr.Disconnect("acme", "bob")
		h.take()

		// ann's last connection ended 25 s ago: a 20 s grace has run out.
		// bob's ended just now: his grace ends 20 s from now. cleo is in
		// another workspace and keeps the default.
		h.tr.Configure("acme", Timing{Grace: 20 * time.Second})
		h.expect(
			"ann online->offline grace_expired seen=0s at=25s",
			"bob online->online last_disconnect grace=45s at=25s",
		)
		time.Sleep(20*time.Second - time.Nanosecond)
		h.expect()
		time.Sleep(time.Nanosecond)
		h.expect("bob online->offline grace_expired seen=25s at=45s")
		time.Sleep(15 * time.Second)
		h.expect("cleo online->offline grace_expired seen=0s at=1m0s")

		// The new timing holds for later disconnects too, and configuring
		// the same again changes nothing.
		h.tr.Configure("acme", Timing{Grace: 20 * time.Second})
		h.tr.Connect("acme", "ann")
		h.tr.Disconnect("acme", "ann")
		h.expect(
			"ann offline->online connected at=1m0s",
			"ann online->online last_disconnect grace=1m20s at=1m0s",
		)
	})
}

func TestConfigureIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()

		h.tr.Connect("acme", "ann")
		h.tr.Connect("acme", "bob")
		time.Sleep(4 * time.Minute)
		h.tr.Activity("acme", "bob")
		h.take()

		// ann has been idle 4 min, bob not at all.
		h.tr.Configure("acme", Timing{Grace: time.Minute, IdleAway: 3 * time.Minute})
		h.expect("ann online->away idle at=4m0s")
		time.Sleep(3 * time.Minute)
		h.expect("bob online->away idle at=7m0s")

		// Idle logout switched on later counts from the last activity.
		h.tr.Activity("acme", "bob")
		h.tr.Configure("acme", Timing{Grace: time.Minute, IdleLogout: 5 * time.Minute})
		h.expect(
			"bob away->online activity at=7m0s",
			"ann away->offline idle_logout seen=7m0s at=7m0s",
		)
		time.Sleep(5 * time.Minute)
		h.expect("bob online->offline idle_logout seen=12m0s at=12m0s")
	})
}

func TestRestoreGivesGraceFromStartup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()

		// What the store held: ann and bob online with no grace (the caller
		// passes now+grace), cleo away with 20 s left of a stored grace,
		// dan offline but manually away.
		start := time.Now()
		h.tr.Restore("acme", "ann", Online, false, start.Add(DefaultTiming.Grace))
		h.tr.Restore("acme", "bob", Online, false, time.Time{})
		h.tr.Restore("acme", "cleo", Away, true, start.Add(20*time.Second))
		h.tr.Restore("acme", "dan", Offline, true, time.Time{})
		h.expect(
			"ann online->online restored grace=1m0s at=0s",
			"bob online->online restored grace=1m0s at=0s",
			"cleo away->away restored manual grace=20s at=0s",
		)

		time.Sleep(30 * time.Second)
		h.tr.Connect("acme", "ann")
		h.tr.Connect("acme", "dan")
		h.expect(
			"cleo away->offline grace_expired manual seen=-40s at=20s",
			"ann online->online reconnected at=30s",
			"dan offline->away connected manual at=30s",
		)

		time.Sleep(30*time.Second - time.Nanosecond)
		h.expect()
		time.Sleep(time.Nanosecond)
		h.expect("bob online->offline grace_expired seen=0s at=1m0s")
		h.expectStatus("acme", "ann", Online)
	})
}

func TestRestoreOverdueGoesOfflineAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()

		h.tr.Restore("acme", "ann", Away, true, time.Now().Add(-5*time.Second))
		h.tr.Restore("acme", "bob", Online, false, time.Now())
		h.expect(
			"ann away->offline grace_expired manual seen=-1m5s at=0s",
			"bob online->offline grace_expired seen=-1m0s at=0s",
		)
		time.Sleep(time.Hour)
		h.expect()

		// Manual away survives the restart.
		h.tr.Connect("acme", "ann")
		h.expect("ann offline->away connected manual at=1h0m0s")
	})
}

func TestRestoreAfterConnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()

		h.tr.Connect("acme", "ann")
		h.tr.Restore("acme", "ann", Away, true, time.Now().Add(time.Minute))
		h.expect(
			"ann offline->online connected at=0s",
			"ann online->away restored manual at=0s",
		)
		s, _ := h.tr.Snapshot("acme", "ann")
		if s.Conns != 1 || !s.GraceDeadline.IsZero() {
			t.Errorf("got %s, want the live connection kept and no grace", fmtState(s))
		}
	})
}

func TestOnlyTransitionsAreTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()

		tr := h.tr
		tr.Connect("acme", "ann")
		tr.Connect("acme", "ann") // second tab
		tr.Activity("acme", "ann")
		tr.Activity("acme", "ann")
		tr.Disconnect("acme", "ann") // one of two tabs
		tr.SetAway("acme", "ann", false)
		time.Sleep(time.Second)
		tr.Disconnect("acme", "ann")
		tr.Disconnect("acme", "ann") // a repeated disconnect
		time.Sleep(time.Second)
		tr.Connect("acme", "ann")
		tr.SetAway("acme", "ann", true)
		tr.SetAway("acme", "ann", true)
		tr.Activity("acme", "ann")
		tr.SetAway("acme", "ann", false)
		time.Sleep(11 * time.Minute) // idle away
		tr.Activity("acme", "ann")
		tr.Logout("acme", "ann")
		tr.Logout("acme", "ann")

		updates := h.take()
		var got []string
		prev := Offline
		for _, u := range updates {
			if u.Prev != prev {
				t.Errorf("%s: got prev %s, want %s (the status before it)", h.format(u), u.Prev, prev)
			}
			prev = u.Status
			if u.Transition() {
				got = append(got, string(u.Reason))
			} else if u.Reason != ReasonLastDisconnect && u.Reason != ReasonReconnected {
				t.Errorf("%s: an update that is not a transition must be the grace starting or ending", h.format(u))
			}
		}
		want := []string{"connected", "manual_away", "available", "idle", "activity", "logout"}
		if !slices.Equal(got, want) {
			t.Errorf("transitions: got %v, want %v", got, want)
		}
		if len(updates) != len(want)+2 {
			t.Errorf("got %d updates, want %d transitions and the grace starting and ending", len(updates), len(want))
		}
	})
}

func TestTimersFireInDeadlineOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, noIdleTiming)
		defer h.stop()

		// Agents leave one second apart, in reverse name order, and every
		// third one comes back.
		const n = 30
		for i := range n {
			h.tr.Connect("acme", fmt.Sprintf("a%02d", n-i))
		}
		for i := range n {
			h.tr.Disconnect("acme", fmt.Sprintf("a%02d", n-i))
			time.Sleep(time.Second)
		}
		for i := 0; i < n; i += 3 {
			h.tr.Connect("acme", fmt.Sprintf("a%02d", n-i))
		}
		h.take()
		time.Sleep(time.Hour)
		var want []string
		for i := range n {
			if i%3 != 0 {
				seen, at := time.Duration(i)*time.Second, time.Duration(60+i)*time.Second
				want = append(want, fmt.Sprintf("a%02d online->offline grace_expired seen=%s at=%s", n-i, seen, at))
			}
		}
		h.expect(want...)
	})
}

func TestInputsSentBeforeRunAreKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu    sync.Mutex
			count int
		)
		tr := NewTracker(func(Update) {
			mu.Lock()
			count++
			mu.Unlock()
		}, DefaultTiming)

		// More inputs than the buffer holds: the sender waits for Run
		// rather than dropping any.
		const n = 3 * inputBuffer
		sent := make(chan struct{})
		// Ends when every input is queued, which needs Run below.
		go func() {
			defer close(sent)
			for i := range n {
				tr.Connect("acme", fmt.Sprint(i))
			}
		}()
		synctest.Wait()
		select {
		case <-sent:
			t.Fatalf("%d inputs queued with no Run, want the sender blocked", n)
		default:
		}

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		// Ends when cancel is called below.
		go func() { done <- tr.Run(ctx) }()
		<-sent
		synctest.Wait()
		mu.Lock()
		got := count
		mu.Unlock()
		if got != n {
			t.Errorf("got %d updates, want %d", got, n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	})
}

func TestRunStopsTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, Timing{Grace: time.Minute, IdleAway: time.Minute, IdleLogout: 2 * time.Minute})
		h.tr.Connect("acme", "ann")
		h.tr.Connect("acme", "bob")
		h.tr.Disconnect("acme", "bob")
		h.take()

		h.stop()
		time.Sleep(time.Hour)
		h.expect() // no timer fired after Run returned

		// Inputs after Run has returned are dropped, never block, even past
		// the size of the buffer.
		for range 2 * inputBuffer {
			h.tr.Activity("acme", "ann")
		}
		h.tr.Configure("acme", DefaultTiming)
		if s, known := h.tr.Snapshot("acme", "ann"); known || s.Status != Offline {
			t.Errorf("Snapshot after Run: got %s known=%v, want an unknown offline agent", fmtState(s), known)
		}
		if err := h.tr.Run(context.Background()); !errors.Is(err, ErrStarted) {
			t.Errorf("second Run: got %v, want ErrStarted", err)
		}
		h.expect()
	})

	// Outside a bubble, with real timers armed: nothing is left behind.
	tr := NewTracker(nil, Timing{Grace: time.Hour, IdleAway: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Ends when cancel is called below.
	go func() { done <- tr.Run(ctx) }()
	tr.Connect("acme", "ann")
	tr.Connect("acme", "bob")
	tr.Disconnect("acme", "bob")
	if s, _ := tr.Snapshot("acme", "bob"); s.GraceDeadline.IsZero() {
		t.Fatalf("got %s, want a running grace", fmtState(s))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
	goleak.VerifyNone(t)
}

func TestSnapshotUnknownAgent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startTracker(t, DefaultTiming)
		defer h.stop()
		h.tr.Activity("acme", "ann")
		h.tr.Disconnect("acme", "ann")
		h.tr.Logout("acme", "ann")
		if s, known := h.tr.Snapshot("acme", "ann"); known || s != blank {
			t.Errorf("got %s known=%v, want an unknown offline agent", fmtState(s), known)
		}
		if _, known := h.tr.Snapshot("nowhere", "ann"); known {
			t.Errorf("unknown workspace: got known, want unknown")
		}
		h.expect()
	})
}
