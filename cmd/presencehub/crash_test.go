package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// crashCommand is how the reliability figures in docs/reliability.md are
// made.
const crashCommand = "go test -race -count=1 -v -run 'Crash|Silent|Flood|Burst|StoreWrite|Shutdown|Replies' ./cmd/presencehub/"

// TestCrashRecovery runs the real binary with durable writes under a steady
// load of real clients, kills it with SIGKILL at random moments, restarts it
// on the same data directory each time, and checks that it kept its word:
//
//   - every change it acknowledged is there (each client's ledger, checked
//     again after every restart and at the end), nothing is applied twice
//     (message ids, history entries), and re-sent message ids are no-ops;
//   - every conversation's history replays to its current owner and queue,
//     with increasing seqs, and is exactly what the acknowledged changes
//     wrote;
//   - boomerangs and Remove Ownership deadlines that fell due while the hub
//     was down fire after the restart, once;
//   - clients resuming from their last seq miss nothing of what the event
//     log holds for them (see load.checkCoverage for exactly what).
//
// The schedule is drawn from a seeded RNG; the seed is logged, and
// PRESENCEHUB_CRASH_SEED=<seed> replays the same schedule.
func TestCrashRecovery(t *testing.T) {
	bin := needBinary(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PRESENCEHUB_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("PRESENCEHUB_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (PRESENCEHUB_CRASH_SEED=%d replays this schedule)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	began := time.Now()
	addr, dir := freeAddr(t), t.TempDir()
	opts := hubOptions{durable: true}
	p := startHub(t, bin, addr, dir, opts)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newLoad(t, p.base, loadConfig{
		ws:           "load",
		agents:       24,
		convsPer:     4,
		churners:     4,
		inboundConvs: 48,
		inboundEvery: 80 * time.Millisecond,
		opPause:      [2]time.Duration{150 * time.Millisecond, 450 * time.Millisecond},
		session:      [2]time.Duration{2 * time.Second, 8 * time.Second},
		away:         [2]time.Duration{100 * time.Millisecond, 1500 * time.Millisecond},
	}, seed)
	l.setup(t)
	tw := newTimerWorkspace(t, p.base)
	tw.setup(t)
	// On any early return the clients end with ctx, before the hub is
	// killed by its own cleanup.
	t.Cleanup(func() {
		cancel()
		l.stop(30 * time.Second)
		tw.stopKeeper()
	})
	tw.keep(t, ctx)
	l.start(t, ctx)

	// Kills 2 and 5 leave timers overdue: the first stays down past the
	// store's own deadline for a lost grace (it fires inside Open), the
	// second only past the grace (the restored presence tracker fires it).
	const kills = 6
	timerKills := map[int]bool{2: true, 5: false} // kill -> fired by Open
	var rounds []*timerRound
	for k := 1; k <= kills; k++ {
		time.Sleep(between(rng, [2]time.Duration{2500 * time.Millisecond, 5 * time.Second}))
		var round *timerRound
		if byOpen, ok := timerKills[k]; ok {
			round = tw.prepare(t, len(rounds)+1, byOpen)
		}
		if !p.alive() {
			t.Fatalf("kill %d: the hub had already exited by itself (%s)", k, p.exitStatus())
		}
		killAt := time.Now()
		p.kill()
		killed := p.exitStatus()
		down := between(rng, [2]time.Duration{0, time.Second})
		if round != nil {
			down = round.downtime(t, killAt)
		}
		time.Sleep(down)
		l.epoch.Add(1)
		restartAt := time.Now()
		p = startHub(t, bin, addr, dir, opts)
		if round != nil {
			round.restartAt, round.listening = restartAt, time.Now()
			rounds = append(rounds, round)
		}
		t.Logf("kill %d at +%.1fs (%s), down %v, listening again after %v",
			k, killAt.Sub(began).Seconds(), killed, down.Round(time.Millisecond), time.Since(restartAt).Round(time.Millisecond))
	}

	// The load goes on after the last restart until every agent has read
	// its conversations back, then the clients finish what is in flight.
	if late := l.waitVerified(kills, 30*time.Second); len(late) > 0 {
		t.Errorf("after the last restart, %d agents never verified their conversations: %v", len(late), late)
	}
	time.Sleep(2 * time.Second)
	if !l.stop(30 * time.Second) {
		t.Fatal("the clients did not finish within 30s of being asked")
	}
	loadEnd := time.Now()

	l.probs.report(t)
	fin := l.checkFinal(t)
	cov := l.checkCoverage(t, ctx)
	// tw-on stays connected through the check: its leaving would, after
	// the 2 s grace, rightly release the conversations it owns.
	fired := tw.check(t, ctx, rounds)
	tw.stopKeeper()
	if head := l.head(t); head > 9000 {
		t.Errorf("the load workspace has %d events: over 9,000 the 10,000-event log may not reach back far enough for the coverage check", head)
	}
	took, inTime := p.term(15 * time.Second)
	if !inTime || p.exitStatus() != "exit status 0" {
		t.Errorf("final SIGTERM: got %s after %v, want exit status 0", p.exitStatus(), took)
	}

	st := l.stats
	losses := st.losses.Load() + int64(fin.losses)
	dups := st.duplicates.Load() + int64(fin.duplicates) + int64(cov.dupView+cov.stale)
	t.Logf(`crash recovery summary (seed %d, %s, %s)
  kills: %d SIGKILL (%d with timers overdue), load ran %.0fs, whole test %.0fs
  acknowledged: %d (%s)
  sent without an answer (kills, outages): %d had committed, %d had not (resolved by reading back)
  losses: %d   duplicates: %d   re-sent message ids that were no-ops: %d
  timers fired after restart: %d boomerangs of %d, %d ownership removals of %d, %d grace expiries of %d
  resume: %d reconnects, %d view events replayed by subscribe, %d workspace events by hello.missed
  resume gaps: %d   events not in the log: %d   (checked %d view events, %d workspace events)
  events that came after a reply with a higher seq on the same socket: %d
  final read: %d conversations, %d messages, %d history entries
  command: %s`,
		seed, goVersion(), "durable", kills, len(rounds), loadEnd.Sub(began).Seconds(), time.Since(began).Seconds(),
		st.ackedTotal(), st.ackedString(),
		st.uncertainCommitted.Load(), st.uncertainNot.Load(),
		losses, dups, st.retriedNoop.Load(),
		fired.boomerangs, fired.wantBoomerangs, fired.removals, fired.wantRemovals, fired.graces, fired.wantGraces,
		st.reconnects.Load(), st.resumedEvents.Load(), st.missedEvents.Load(),
		cov.gaps, cov.phantoms, cov.viewEvents, cov.otherEvents, cov.inversions,
		fin.convs, fin.messages, fin.historyEntries,
		crashCommand)
	if losses != 0 || dups != 0 || cov.gaps != 0 {
		t.Errorf("got %d losses, %d duplicates, %d resume gaps; want 0 of each", losses, dups, cov.gaps)
	}
	if st.ackedTotal() < 1000 {
		t.Errorf("only %d changes were acknowledged: the load was too light to prove much", st.ackedTotal())
	}
}

// head is the load workspace's last sequence number.
func (l *load) head(t *testing.T) uint64 {
	var page struct {
		Seq uint64 `json:"seq"`
	}
	l.api.must(t, http.MethodGet, "/api/v1/conversations?limit=1", l.svc.token, nil, &page)
	return page.Seq
}

// ---- the timers workspace ----

// twWS is a workspace of its own, with Remove Ownership on and a 2 s offline
// grace, so its timers do not disturb the load's ledgers.
const twWS = "timers"

// graceSlack is queues.Options.GraceSlack's default: how long after a
// stored grace deadline the store forces the agent offline itself.
const graceSlack = 5 * time.Second

// timerWorkspace holds the agents of the timer rounds: an admin and a
// service (HTTP only), tw-on (kept connected, reconnecting at once after
// every restart) and tw-off (exists, never connected: offline).
type timerWorkspace struct {
	api               *api
	hc                *http.Client
	base              string
	admin, svc, onTok string
	stop              chan struct{}
	stopOnce          sync.Once
	done              chan struct{}
	onConnects        atomic.Int64
}

func newTimerWorkspace(t *testing.T, base string) *timerWorkspace {
	return &timerWorkspace{api: newAPI(t, base), hc: &http.Client{Transport: newTransport(t)}, base: base,
		admin: mintFor(t, twWS, "tw-admin", queues.RoleAdmin), svc: mintFor(t, twWS, "tw-svc", queues.RoleService),
		onTok: mintFor(t, twWS, "tw-on", queues.RoleAgent), stop: make(chan struct{}), done: make(chan struct{})}
}

func (w *timerWorkspace) setup(t *testing.T) {
	t.Helper()
	w.api.must(t, http.MethodPatch, "/api/v1/settings", w.admin, map[string]any{"remove_ownership": true, "offline_grace": 2}, nil)
	// tw-off becomes an agent with a request, and stays offline.
	w.api.must(t, http.MethodGet, "/api/v1/settings", mintFor(t, twWS, "tw-off", queues.RoleAgent), nil, nil)
}

// keep holds a socket for tw-on, reconnecting within tens of milliseconds
// after every restart: the restart gives it only the 2 s grace.
func (w *timerWorkspace) keep(t *testing.T, ctx context.Context) {
	t.Helper()
	go func() { // ends at stopKeeper or with ctx
		defer close(w.done)
		for ctx.Err() == nil {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			conn, _, err := dialWS(dctx, w.hc, w.base, w.onTok, nil, nil)
			cancel()
			if err != nil {
				select {
				case <-w.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				continue
			}
			w.onConnects.Add(1)
			select {
			case <-conn.done:
				conn.drop()
			case <-w.stop:
				conn.close()
				return
			case <-ctx.Done():
				conn.drop()
				return
			}
		}
	}()
	if !pollUntil(10*time.Second, 20*time.Millisecond, func() bool { return w.onConnects.Load() > 0 }) {
		t.Fatal("tw-on did not connect within 10s")
	}
}

func (w *timerWorkspace) stopKeeper() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
}

// timerRound is one kill with timers overdue while the hub is down: three
// pending conversations with a boomerang (unowned, owned by tw-off, owned by
// tw-on) and a grace agent whose only socket closed just before the kill,
// owning one conversation in new and one in pending.
type timerRound struct {
	n             int
	byOpen        bool // down past the store's slack: Open fires the grace
	agent         string
	b1, b2, b3    string
	g1, g2        string
	headBefore    uint64
	boomerang     time.Time
	graceDeadline time.Time
	killAt        time.Time
	restartAt     time.Time
	listening     time.Time
}

func (w *timerWorkspace) agents(t *testing.T) []queues.Agent {
	var r struct {
		Agents []queues.Agent `json:"agents"`
	}
	w.api.must(t, http.MethodGet, "/api/v1/agents", w.admin, nil, &r)
	return r.Agents
}

func (w *timerWorkspace) agent(t *testing.T, id string) queues.Agent {
	for _, a := range w.agents(t) {
		if a.ID == id {
			return a
		}
	}
	return queues.Agent{}
}

// prepare sets a round up and returns once the grace agent's deadline is
// stored; the caller kills the hub at once.
func (w *timerWorkspace) prepare(t *testing.T, n int, byOpen bool) *timerRound {
	t.Helper()
	r := &timerRound{n: n, byOpen: byOpen, agent: fmt.Sprintf("tw-g%d", n)}
	r.b1, r.b2, r.b3 = fmt.Sprintf("r%d-b1", n), fmt.Sprintf("r%d-b2", n), fmt.Sprintf("r%d-b3", n)
	r.g1, r.g2 = fmt.Sprintf("r%d-g1", n), fmt.Sprintf("r%d-g2", n)
	var page struct {
		Seq uint64 `json:"seq"`
	}
	w.api.must(t, http.MethodGet, "/api/v1/conversations?limit=1", w.admin, nil, &page)
	r.headBefore = page.Seq

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := dialWS(ctx, w.hc, w.base, mintFor(t, twWS, r.agent, queues.RoleAgent), nil, nil)
	if err != nil {
		t.Fatalf("round %d: %s: %v", n, r.agent, err)
	}
	defer conn.drop()
	if !pollUntil(5*time.Second, 20*time.Millisecond, func() bool { return w.agent(t, r.agent).Status == queues.StatusOnline }) {
		t.Fatalf("round %d: %s is not online 5s after connecting", n, r.agent)
	}

	ver := map[string]uint64{}
	set := func(id string, c queues.Conversation) { ver[id] = c.Version }
	for _, id := range []string{r.b1, r.b2, r.b3, r.g1, r.g2} {
		var ans inboundAnswer
		w.api.must(t, http.MethodPost, "/api/v1/conversations/"+id+"/inbound", w.svc,
			map[string]any{"message_id": id + "-m1", "channel": "chat", "customer": "C " + id}, &ans)
		set(id, ans.Conversation)
	}
	var res struct {
		Conversation queues.Conversation `json:"conversation"`
	}
	for id, owner := range map[string]string{r.b2: "tw-off", r.b3: "tw-on", r.g1: r.agent, r.g2: r.agent} {
		w.api.must(t, http.MethodPost, "/api/v1/conversations/"+id+"/assign", w.admin, map[string]any{"agent": owner, "version": ver[id]}, &res)
		set(id, res.Conversation)
	}
	for _, id := range []string{r.b1, r.b2, r.b3, r.g2} {
		w.api.must(t, http.MethodPost, "/api/v1/conversations/"+id+"/move", w.admin, map[string]any{"queue": "pending", "version": ver[id]}, &res)
		set(id, res.Conversation)
	}
	for _, id := range []string{r.b1, r.b2, r.b3} {
		w.api.must(t, http.MethodPut, "/api/v1/conversations/"+id+"/boomerang", w.admin, map[string]any{"in": 3, "version": ver[id]}, &res)
		if res.Conversation.Boomerang.After(r.boomerang) {
			r.boomerang = res.Conversation.Boomerang
		}
	}

	// The grace agent's last socket ends: the grace starts, and its
	// deadline is stored before the kill.
	conn.close()
	if !pollUntil(1500*time.Millisecond, 10*time.Millisecond, func() bool {
		r.graceDeadline = w.agent(t, r.agent).GraceDeadline
		return !r.graceDeadline.IsZero()
	}) {
		t.Fatalf("round %d: %s's grace deadline was not stored within 1.5s of its socket closing", n, r.agent)
	}
	return r
}

// downtime is how long the hub stays down: past every deadline of the
// round, and for the Open round also past the store's slack.
func (r *timerRound) downtime(t *testing.T, killAt time.Time) time.Duration {
	r.killAt = killAt
	if !killAt.Before(r.graceDeadline) || !killAt.Before(r.boomerang) {
		t.Errorf("round %d: killed at %v, after a deadline (grace %v, boomerang %v): the round proves nothing",
			r.n, killAt.Format(time.StampMilli), r.graceDeadline.Format(time.StampMilli), r.boomerang.Format(time.StampMilli))
	}
	until := r.boomerang
	if r.byOpen {
		until = latest(until, r.graceDeadline.Add(graceSlack))
	} else {
		until = latest(until, r.graceDeadline)
	}
	return time.Until(until.Add(800 * time.Millisecond))
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// firedCounts: the timers that fired after a restart, and how many should
// have.
type firedCounts struct {
	boomerangs, wantBoomerangs int
	removals, wantRemovals     int
	graces, wantGraces         int
}

// check reads every round's conversations and the grace agent's presence
// events after the final restart.
func (w *timerWorkspace) check(t *testing.T, ctx context.Context, rounds []*timerRound) firedCounts {
	t.Helper()
	var fc firedCounts
	created := histKey(queues.AuditQueue, "", "new", queues.ReasonCreated)
	toPending := histKey(queues.AuditQueue, "new", "pending", queues.ReasonMove)
	back := histKey(queues.AuditQueue, "pending", "new", queues.ReasonBoomerang)
	assign := func(to string) string { return histKey(queues.AuditOwner, "", to, queues.ReasonManualAssign) }
	unown := func(from string, why queues.Reason) string { return histKey(queues.AuditOwner, from, "", why) }
	for _, r := range rounds {
		want := []struct {
			id    string
			queue queues.Queue
			owner string
			hist  []string
		}{
			{r.b1, queues.QueueNew, "", []string{created, toPending, back}},
			{r.b2, queues.QueueNew, "", []string{created, assign("tw-off"), toPending, back, unown("tw-off", queues.ReasonBoomerang)}},
			{r.b3, queues.QueueNew, "tw-on", []string{created, assign("tw-on"), toPending, back}},
			{r.g1, queues.QueueNew, "", []string{created, assign(r.agent), unown(r.agent, queues.ReasonLogout)}},
			{r.g2, queues.QueuePending, r.agent, []string{created, assign(r.agent), toPending}},
		}
		fc.wantBoomerangs += 3
		fc.wantRemovals += 2
		fc.wantGraces++
		for _, c := range want {
			var d convDetail
			w.api.must(t, http.MethodGet, "/api/v1/conversations/"+c.id, w.admin, nil, &d)
			if d.Conversation.Queue != c.queue || d.Conversation.Owner != c.owner {
				t.Errorf("round %d %s: got %s/%q, want %s/%q", r.n, c.id, d.Conversation.Queue, d.Conversation.Owner, c.queue, c.owner)
			}
			checkHistoryChain(t, c.id, d)
			var got []string
			for _, h := range d.History {
				k := histKey(h.Kind, h.From, h.To, h.Reason)
				got = append(got, k)
				system := h.Actor.Role == queues.RoleSystem
				if !system {
					continue
				}
				if h.At.Before(r.restartAt) {
					t.Errorf("round %d %s: %s at %v, before the restart at %v: it fired while the hub was still up",
						r.n, c.id, k, h.At.Format(time.StampMilli), r.restartAt.Format(time.StampMilli))
					continue
				}
				switch {
				case h.Kind == queues.AuditQueue && h.Reason == queues.ReasonBoomerang:
					fc.boomerangs++
					// Overdue boomerangs fire inside Open, before the hub
					// listens.
					if h.At.After(r.listening) {
						t.Errorf("round %d %s: boomerang fired at %v, after the hub listened at %v: want it fired at start-up",
							r.n, c.id, h.At.Format(time.StampMilli), r.listening.Format(time.StampMilli))
					}
				case h.Kind == queues.AuditOwner:
					fc.removals++
				}
			}
			if !slices.Equal(got, c.hist) {
				t.Errorf("round %d %s: got history\n  %v\nwant\n  %v", r.n, c.id, got, c.hist)
			}
		}
		a := w.agent(t, r.agent)
		if a.Status != queues.StatusOffline || a.StatusReason != "grace_expired" {
			t.Errorf("round %d %s: got %s (%s), want offline (grace_expired)", r.n, r.agent, a.Status, a.StatusReason)
		}

		// The grace agent's presence events since the round began: exactly
		// one transition to offline, after the restart.
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, hello, err := dialWS(dctx, w.hc, w.base, w.admin, &r.headBefore, nil)
		cancel()
		if err != nil {
			t.Errorf("round %d: reading the event log: %v", r.n, err)
			continue
		}
		conn.close()
		if !hello.Resumed {
			t.Errorf("round %d: hello since %d did not resume", r.n, r.headBefore)
		}
		offline := 0
		for _, raw := range hello.Missed {
			var ev wsMsg
			if json.Unmarshal(raw, &ev) != nil || ev.Presence == nil || ev.Presence.To != queues.StatusOffline {
				continue
			}
			switch ev.Presence.Agent {
			case r.agent:
				offline++
				if ev.At.Before(r.restartAt) {
					t.Errorf("round %d: %s went offline at %v, before the restart at %v", r.n, r.agent,
						ev.At.Format(time.StampMilli), r.restartAt.Format(time.StampMilli))
				} else {
					fc.graces++
				}
			case "tw-on":
				t.Errorf("round %d: tw-on went offline at %v (%s): its keeper did not reconnect within the 2 s grace after a restart, so its conversations were released; the test, not the hub, is at fault",
					r.n, ev.At.Format(time.StampMilli), ev.Presence.Reason)
			}
		}
		if offline != 1 {
			t.Errorf("round %d: %s has %d transitions to offline since the round began, want 1", r.n, r.agent, offline)
		}
		t.Logf("timer round %d (%s): killed %v before the grace deadline, down %v; boomerang due %v after the kill",
			r.n, map[bool]string{true: "overdue at Open", false: "grace overdue for the restored tracker"}[r.byOpen],
			r.graceDeadline.Sub(r.killAt).Round(time.Millisecond), r.restartAt.Sub(r.killAt).Round(time.Millisecond),
			r.boomerang.Sub(r.killAt).Round(time.Millisecond))
	}
	return fc
}
