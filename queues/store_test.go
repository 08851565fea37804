package queues

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestStaleVersionConflict(t *testing.T) {
	f := newFixture(t)
	r := f.inbound("c1")
	v := r.Conv.Version
	if _, err := f.s.Assign(f.ctx, ws, alice, "c1", "alice", v); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.Assign(f.ctx, ws, bob, "c1", "bob", v)
	var stale *StaleError
	if !errors.As(err, &stale) || !errors.Is(err, ErrConflict) || stale.Want != v || stale.Have != v+1 {
		t.Fatalf("got %v, want a StaleError want %d have %d", err, v, v+1)
	}
	f.wantOwner("c1", "alice")
	// Move with version 0 is unconditional; with a stale one it conflicts.
	if _, err := f.s.Move(f.ctx, ws, bob, "c1", QueuePending, v); !errors.Is(err, ErrConflict) {
		t.Errorf("stale move: got %v", err)
	}
	if r, err := f.s.Move(f.ctx, ws, bob, "c1", QueuePending, 0); err != nil || !r.Changed {
		t.Errorf("unconditional move: got %+v %v", r, err)
	}
	// Assigning the current owner again changes nothing.
	c := f.conv("c1")
	if r, err := f.s.Assign(f.ctx, ws, bob, "c1", "alice", c.Version); err != nil || r.Changed || r.Conv.Version != c.Version {
		t.Errorf("same owner: got %+v %v, want unchanged", r, err)
	}
	if _, err := f.s.Assign(f.ctx, ws, bob, "c1", "zed", c.Version); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown agent: got %v", err)
	}
}

func TestConcurrentAssignOnlyOneWins(t *testing.T) {
	f := newFixture(t)
	v := f.inbound("c1").Conv.Version
	agents := []Actor{admin, alice, bob, carol}
	var wg sync.WaitGroup
	errs := make([]error, len(agents))
	for i, a := range agents {
		wg.Add(1)
		// Ends after its one Assign.
		go func() {
			defer wg.Done()
			_, errs[i] = f.s.Assign(f.ctx, ws, a, "c1", a.ID, v)
		}()
	}
	wg.Wait()
	won := ""
	for i, err := range errs {
		switch {
		case err == nil:
			if won != "" {
				t.Fatalf("%s and %s both won", won, agents[i].ID)
			}
			won = agents[i].ID
		case !errors.Is(err, ErrConflict):
			t.Errorf("%s: got %v, want ErrConflict", agents[i].ID, err)
		}
	}
	if won == "" {
		t.Fatal("nobody won")
	}
	f.wantOwner("c1", won)
	if h := f.ownerAudits("c1"); len(h) != 1 {
		t.Errorf("got %d ownership entries, want 1", len(h))
	}
}

func TestInboundIdempotent(t *testing.T) {
	f := newFixture(t)
	in := Inbound{Conversation: "c1", MessageID: "<m1@mail>", Channel: "email", Customer: "x", Text: "hi"}
	r1, err := f.s.Inbound(f.ctx, ws, in)
	if err != nil || !r1.Changed {
		t.Fatalf("first: %+v %v", r1, err)
	}
	head := f.s.Head(ws)
	r2, err := f.s.Inbound(f.ctx, ws, in)
	if err != nil || r2.Changed || r2.Seq != 0 || r2.Conv.Version != r1.Conv.Version {
		t.Fatalf("repeat: got %+v %v, want unchanged", r2, err)
	}
	if f.s.Head(ws) != head {
		t.Errorf("repeat emitted an event")
	}
	// The same id twice inside one batch is deduplicated too.
	var wg sync.WaitGroup
	in.MessageID = "m2"
	results := make([]Result, 8)
	for i := range results {
		wg.Add(1)
		// Ends after its one Inbound.
		go func() { defer wg.Done(); results[i], _ = f.s.Inbound(f.ctx, ws, in) }()
	}
	wg.Wait()
	changed := 0
	for _, r := range results {
		if r.Changed {
			changed++
		}
	}
	if changed != 1 {
		t.Errorf("concurrent repeats: %d changed, want 1", changed)
	}
	if msgs, _ := f.s.Messages(ws, "c1", 0); len(msgs) != 2 {
		t.Errorf("got %d messages, want 2", len(msgs))
	}
	// A reply's message id dedupes the same way.
	if r, _ := f.s.Reply(f.ctx, ws, alice, "c1", "r1", "a"); !r.Changed {
		t.Error("first reply unchanged")
	}
	if r, _ := f.s.Reply(f.ctx, ws, alice, "c1", "r1", "a"); r.Changed {
		t.Error("repeated reply changed")
	}
	if msgs, _ := f.s.Messages(ws, "c1", 2); len(msgs) != 2 || msgs[1].ID != "r1" || msgs[0].ID != "m2" {
		t.Errorf("last two messages: got %+v", msgs)
	}
}

func TestInboundValidation(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		ws    string
		in    Inbound
		field string
	}{
		{ws, Inbound{Conversation: "c1", MessageID: "m", Customer: "x"}, "channel"},
		{ws, Inbound{Conversation: "c1", MessageID: "m", Channel: "chat"}, "customer"},
		{ws, Inbound{Conversation: "a/b", MessageID: "m", Channel: "chat", Customer: "x"}, "conversation"},
		{ws, Inbound{Conversation: "c1", Channel: "chat", Customer: "x"}, "message_id"},
		{"new/ws", Inbound{Conversation: "c1", MessageID: "m", Channel: "chat", Customer: "x"}, "workspace"},
		{"fresh", Inbound{Conversation: "c1", MessageID: "m", Customer: "x"}, "channel"},
	}
	for _, c := range cases {
		_, err := f.s.Inbound(f.ctx, c.ws, c.in)
		var ie *InvalidError
		if !errors.As(err, &ie) || ie.Field != c.field {
			t.Errorf("%+v: got %v, want an InvalidError on %s", c.in, err, c.field)
		}
	}
	if got := f.s.Workspaces(); !slices.Equal(got, []string{ws}) {
		t.Errorf("a refused inbound created a workspace: %v", got)
	}
	// A valid first inbound creates its workspace.
	if _, err := f.s.Inbound(f.ctx, "fresh", Inbound{Conversation: "c1", MessageID: "m", Channel: "chat", Customer: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := f.s.Workspaces(); !slices.Equal(got, []string{ws, "fresh"}) {
		t.Errorf("workspaces: got %v", got)
	}
}

func TestWorkspaceIsolation(t *testing.T) {
	f := newFixture(t)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	if err := f.s.EnsureWorkspace(f.ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Conversation("globex", "c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("conversation across workspaces: got %v", err)
	}
	if _, err := f.s.Assign(f.ctx, "globex", alice, "c1", "", 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("assign across workspaces: got %v", err)
	}
	if _, err := f.s.Agent("globex", "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("agent across workspaces: got %v", err)
	}
	if _, err := f.s.History("globex", "c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("history across workspaces: got %v", err)
	}
	if p, _ := f.s.List("globex", ListQuery{Queue: QueueNew}); len(p.Items) != 0 || p.Counts.Total != 0 || p.Seq != 0 {
		t.Errorf("list across workspaces: got %+v", p)
	}
	if evs, _, _ := f.s.EventsSince("globex", 0, 100); len(evs) != 0 {
		t.Errorf("events across workspaces: got %d", len(evs))
	}
	// The same ids live independently in another workspace.
	if _, err := f.s.Inbound(f.ctx, "globex", Inbound{Conversation: "c1", MessageID: "m1", Channel: "chat", Customer: "y"}); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.s.Conversation("globex", "c1"); c.Customer != "y" || c.Owner != "" {
		t.Errorf("globex c1: got %+v", c)
	}
	f.wantOwner("c1", "alice")
	for _, e := range f.pub.all() {
		if e.Workspace == "globex" && e.Seq != 1 {
			t.Errorf("globex's first event has seq %d, want 1", e.Seq)
		}
	}
	if _, err := f.s.Settings("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown workspace: got %v", err)
	}
	if f.s.Head("nope") != 0 {
		t.Error("head of an unknown workspace")
	}
}

func TestEventsSeqAndResume(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.EventLogSize = 10 })
	start := f.s.Head(ws)
	for i := range 12 {
		f.inbound(fmt.Sprintf("c%d", i))
	}
	evs := f.pub.all()
	for i, e := range evs {
		if e.Seq != uint64(i+1) || e.Workspace != ws {
			t.Fatalf("event %d: seq %d workspace %q", i, e.Seq, e.Workspace)
		}
		var wire map[string]any
		if err := json.Unmarshal(e.Wire, &wire); err != nil || wire["type"] != "event" || wire["seq"] != float64(e.Seq) || wire["kind"] != string(e.Kind) {
			t.Fatalf("wire of %d: %s (%v)", e.Seq, e.Wire, err)
		}
	}
	head := f.s.Head(ws)
	if head != start+12 {
		t.Fatalf("head %d, want %d", head, start+12)
	}

	got, complete, err := f.s.EventsSince(ws, head-3, 100)
	if err != nil || !complete || len(got) != 3 || got[0].Seq != head-2 || got[2].Seq != head {
		t.Fatalf("resume: got %d complete=%v err=%v", len(got), complete, err)
	}
	if got[2].Conv == nil || got[2].Conv.ID != "c11" || string(got[2].Wire) != string(evs[len(evs)-1].Wire) || got[2].Workspace != ws {
		t.Errorf("decoded event: got %+v", got[2])
	}
	if got, complete, _ := f.s.EventsSince(ws, head-5, 2); complete || len(got) != 2 || got[0].Seq != head-4 {
		t.Errorf("over max: got %d complete=%v", len(got), complete)
	}
	if got, complete, _ := f.s.EventsSince(ws, head, 10); !complete || len(got) != 0 {
		t.Errorf("at head: got %d complete=%v", len(got), complete)
	}
	// The log keeps the last 10: resuming from head-10 works, from
	// head-11 it cannot.
	if got, complete, _ := f.s.EventsSince(ws, head-10, 100); !complete || len(got) != 10 {
		t.Errorf("oldest kept: got %d complete=%v", len(got), complete)
	}
	if got, complete, _ := f.s.EventsSince(ws, head-11, 100); complete || len(got) != 0 {
		t.Errorf("trimmed: got %d complete=%v, want incomplete", len(got), complete)
	}
	// The trimmed entries are really gone from Badger.
	n := 0
	f.s.view(func(txn *badger.Txn) error {
		return scan(txn, prefix(kindEvent, ws), false, func(_, _ []byte) (bool, error) { n++; return true, nil })
	})
	if n != 10 {
		t.Errorf("event log holds %d entries, want 10", n)
	}
	if _, _, err := f.s.EventsSince("nope", 0, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown workspace: got %v", err)
	}
}

// A reader called from Publish sees the change, and a page's Seq matches
// its items.
func TestPublishAfterInstall(t *testing.T) {
	f := newFixture(t)
	p := &checkingPublisher{s: f.s, t: t}
	f.s.SetPublisher(p)
	f.inbound("c1")
	f.assign(alice, "c1", "bob")
	f.s.SetPublisher(nil)
	f.inbound("c2")
	if p.seen != 3 || p.bad != "" {
		t.Errorf("publisher saw %d events; %s", p.seen, p.bad)
	}
}

type checkingPublisher struct {
	s    *Store
	t    *testing.T
	seen int
	bad  string
}

func (p *checkingPublisher) Publish(w string, events []Event) {
	for _, e := range events {
		p.seen++
		page, err := p.s.List(w, ListQuery{Queue: QueueNew})
		if err != nil || page.Seq < e.Seq {
			p.bad = fmt.Sprintf("event %d published before install (page seq %d, %v)", e.Seq, page.Seq, err)
		}
		if e.Kind == EventConversation && (len(page.Items) == 0 || page.Items[0].Version != e.Conv.Version) {
			p.bad = fmt.Sprintf("event %d: page does not show version %d", e.Seq, e.Conv.Version)
		}
	}
}

// A grace deadline whose presence timer was lost is enforced by the store:
// by the timer at deadline+GraceSlack, and by reconciliation.
func TestReconciliationForcesLostGrace(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice, bob)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	grace := f.clk.Now().Add(60 * time.Second)
	a, err := f.s.ApplyPresence(f.ctx, ws, PresenceUpdate{Agent: "alice", Status: StatusOnline, Reason: "last_disconnect", GraceDeadline: grace})
	if err != nil || !a.GraceDeadline.Equal(grace) || a.Status != StatusOnline {
		t.Fatalf("grace: got %+v %v", a, err)
	}
	head := f.s.Head(ws)
	f.s.ApplyPresence(f.ctx, ws, PresenceUpdate{Agent: "bob", Status: StatusOnline, GraceDeadline: grace})
	if f.s.Head(ws) != head {
		t.Error("a grace deadline alone emitted an event")
	}

	f.clk.Advance(62 * time.Second)
	if n := f.reconcile(); n != 0 {
		t.Errorf("reconciled %d inside the slack, want 0", n)
	}
	f.clk.Advance(5 * time.Second)
	if n := f.reconcile(); n != 2 {
		t.Fatalf("reconciled %d, want 2 (alice and bob forced offline, alice's conversation swept)", n)
	}
	a, _ = f.s.Agent(ws, "alice")
	if a.Status != StatusOffline || a.StatusReason != "grace_expired" || !a.GraceDeadline.IsZero() {
		t.Errorf("alice: got %+v", a)
	}
	f.wantOwner("c1", "")
	var pres *PresenceChange
	for _, e := range f.pub.all() {
		if e.Kind == EventPresence && e.Presence.Agent == "alice" && e.Presence.To == StatusOffline {
			pres = e.Presence
		}
	}
	if pres == nil || pres.Reason != "grace_expired" || !pres.LastSeen.Equal(grace.Add(-60*time.Second)) {
		t.Errorf("presence event: got %+v, want grace_expired last seen %v", pres, grace.Add(-60*time.Second))
	}
	if n := f.reconcile(); n != 0 {
		t.Errorf("second reconciliation changed %d, want 0", n)
	}
	// The heap entries for those graces are now stale and fire nothing.
	if n := f.fire(); n != 0 {
		t.Errorf("stale grace timers fired %d", n)
	}
}

// An offline agent who still owns new conversations they owned before
// going offline (a sweep that never ran: the store never makes this state
// itself, so the test writes it) has them unowned by reconciliation; a
// conversation assigned to them after they went offline is not touched,
// and does not even make them a candidate.
func TestReconciliationRedoesALostSweep(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice, bob)
	f.inbound("c1")
	f.inbound("c2")
	f.assign(alice, "c1", "alice")
	f.clk.Advance(time.Minute)
	// alice goes offline without the sweep.
	if _, err := do(f.s, f.ctx, func(b *batch) (int, error) {
		t, err := b.ws(ws, false)
		if err != nil {
			return 0, err
		}
		a, _ := t.agent("alice")
		next := *a
		next.Status, next.OfflineSince = StatusOffline, f.clk.Now()
		t.putAgent(a, &next)
		return 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Second)
	f.assign(bob, "c2", "alice") // assigned while offline: rule 5

	only := f.s.reconcileCandidates()
	if len(only) != 1 || !slices.Equal(only[ws], []string{"alice"}) {
		t.Fatalf("candidates %v, want alice in %s", only, ws)
	}
	if n := f.reconcile(); n != 1 {
		t.Fatalf("reconciled %d, want 1 (c1 unowned)", n)
	}
	f.wantOwner("c1", "")
	f.wantOwner("c2", "alice")
	if only := f.s.reconcileCandidates(); only != nil {
		t.Errorf("after the sweep: candidates %v, want none", only)
	}
}

// A grace deadline fires by itself GraceSlack after the deadline.
func TestGraceTimerFires(t *testing.T) {
	f := newFixture(t)
	f.online(alice)
	grace := f.clk.Now().Add(30 * time.Second)
	f.s.ApplyPresence(f.ctx, ws, PresenceUpdate{Agent: "alice", Status: StatusOnline, GraceDeadline: grace})
	f.clk.Advance(34 * time.Second)
	if n := f.fire(); n != 0 {
		t.Fatalf("fired %d before deadline+slack", n)
	}
	f.clk.Advance(time.Second)
	if n := f.fire(); n != 1 {
		t.Fatalf("fired %d at deadline+slack, want 1", n)
	}
	// A reconnect inside the grace clears it: nothing fires.
	f.online(bob)
	grace = f.clk.Now().Add(30 * time.Second)
	f.s.ApplyPresence(f.ctx, ws, PresenceUpdate{Agent: "bob", Status: StatusOnline, GraceDeadline: grace})
	f.s.ApplyPresence(f.ctx, ws, PresenceUpdate{Agent: "bob", Status: StatusOnline})
	f.clk.Advance(time.Minute)
	if n := f.fire(); n != 0 {
		t.Errorf("cleared grace fired %d", n)
	}
}

// Run fires a boomerang close to its deadline on a real clock.
func TestRunFiresBoomerangOnTime(t *testing.T) {
	s, err := Open(Options{InMemory: true, ReconcileEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	// Ends when ctx is cancelled below.
	go func() { done <- s.Run(ctx) }()
	s.EnsureAgent(ctx, ws, Agent{ID: "alice", Role: RoleAgent})
	s.Inbound(ctx, ws, Inbound{Conversation: "c1", MessageID: "m", Channel: "chat", Customer: "x"})
	s.Move(ctx, ws, alice, "c1", QueuePending, 0)
	at := time.Now().Add(300 * time.Millisecond)
	if _, err := s.SetBoomerang(ctx, ws, alice, "c1", at, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "boomerang fired", func() bool {
		c, _ := s.Conversation(ws, "c1")
		return c.Queue == QueueNew
	})
	if late := time.Since(at); late > time.Second || late < 0 {
		t.Errorf("fired %v after its deadline, want within 1s", late)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: got %v, want nil after cancel", err)
	}
}

func TestRunEndsWhenClosed(t *testing.T) {
	s, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	// Ends when the store is closed below.
	go func() { done <- s.Run(context.Background()) }()
	s.Close()
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Errorf("Run after Close: got %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Ready(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ready after Close: got %v", err)
	}
	if _, err := s.Inbound(context.Background(), ws, Inbound{Conversation: "c", MessageID: "m", Channel: "c", Customer: "x"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("change after Close: got %v", err)
	}
	if _, err := s.AdminLog(ws, 1); err == nil {
		t.Error("AdminLog after Close succeeded")
	}
}

// Callers waiting when the store closes get ErrUnavailable, not a hang.
func TestCloseAnswersWaitingCallers(t *testing.T) {
	s, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		// Ends when its Inbound returns, at the latest when Close answers it.
		go func() {
			defer wg.Done()
			_, err := s.Inbound(ctx, ws, Inbound{Conversation: fmt.Sprintf("c%d", i), MessageID: "m", Channel: "chat", Customer: "x"})
			errs <- err
		}()
	}
	s.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Errorf("got %v, want nil or ErrUnavailable", err)
		}
	}
}

func TestCommitFailureLeavesMemoryAndRecovers(t *testing.T) {
	f := newFixture(t)
	f.inbound("c1")
	before := f.conv("c1")
	head := f.s.Head(ws)
	published := len(f.pub.all())

	fault := errors.New("disk full")
	f.s.writeFault.Store(&fault)
	_, err := f.s.Assign(f.ctx, ws, alice, "c1", "alice", before.Version)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if err := f.s.Ready(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ready: got %v", err)
	}
	if got := f.conv("c1"); got != before || f.s.Head(ws) != head || len(f.pub.all()) != published {
		t.Fatalf("memory changed by a failed commit: %+v head %d", got, f.s.Head(ws))
	}
	// A boomerang popped by a failed commit is not lost.
	f.s.writeFault.Store(nil)
	f.move(alice, "c1", QueuePending)
	f.boomerang("c1", f.clk.Now().Add(time.Minute))
	f.clk.Advance(time.Minute)
	f.s.writeFault.Store(&fault)
	if _, err := do(f.s, f.ctx, func(b *batch) (int, error) { return b.fireDue(), nil }); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("fire: got %v", err)
	}
	f.s.writeFault.Store(nil)
	if n := f.fire(); n != 1 {
		t.Errorf("fired %d after recovery, want 1", n)
	}
	if err := f.s.Ready(); err != nil {
		t.Errorf("Ready after a good commit: %v", err)
	}
}

func TestEnsureAgent(t *testing.T) {
	f := newFixture(t)
	a, err := f.s.EnsureAgent(f.ctx, "newco", Agent{ID: "dan", Role: RoleAgent})
	if err != nil || a.Name != "dan" || a.Status != StatusOffline || a.StatusSince.IsZero() {
		t.Fatalf("got %+v %v", a, err)
	}
	head := f.s.Head("newco")
	if a2, _ := f.s.EnsureAgent(f.ctx, "newco", Agent{ID: "dan", Role: RoleAgent}); a2 != a || f.s.Head("newco") != head {
		t.Errorf("unchanged agent: got %+v, head %d->%d", a2, head, f.s.Head("newco"))
	}
	a3, _ := f.s.EnsureAgent(f.ctx, "newco", Agent{ID: "dan", Name: "Dan", Role: RoleAdmin})
	if a3.Name != "Dan" || a3.Role != RoleAdmin || f.s.Head("newco") != head+1 {
		t.Errorf("rename: got %+v", a3)
	}
	for _, bad := range []Agent{{ID: "", Role: RoleAgent}, {ID: "x/y", Role: RoleAgent}, {ID: "x", Role: RoleService}} {
		if _, err := f.s.EnsureAgent(f.ctx, "newco", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", bad, err)
		}
	}
	agents, _ := f.s.Agents(ws)
	var names []string
	for _, a := range agents {
		names = append(names, a.Name)
	}
	if !slices.Equal(names, []string{"Ada", "Alice", "Bob", "Carol"}) {
		t.Errorf("agents by name: got %v", names)
	}
	if _, err := f.s.ApplyPresence(f.ctx, ws, PresenceUpdate{Agent: "zed", Status: StatusOnline}); !errors.Is(err, ErrNotFound) {
		t.Errorf("presence of unknown agent: got %v", err)
	}
	if _, err := f.s.Reply(f.ctx, ws, Actor{ID: "zed"}, "c1", "m", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("reply to unknown conversation: got %v", err)
	}
}

func TestConnectAgentCreatesOnlineInOneEvent(t *testing.T) {
	f := newFixture(t)
	head := f.s.Head("newco")
	a, created, err := f.s.ConnectAgent(f.ctx, "newco", Agent{ID: "dan", Name: "Dan", Role: RoleAgent})
	if err != nil || !created || a.Status != StatusOnline || a.StatusReason != ReasonConnected ||
		a.StatusSince.IsZero() || !a.OfflineSince.IsZero() {
		t.Fatalf("new agent: got %+v created=%v %v", a, created, err)
	}
	evs, _, err := f.s.EventsSince("newco", head, 100)
	if err != nil || len(evs) != 1 {
		t.Fatalf("events of a first connect: got %d %v, want 1", len(evs), err)
	}
	ev := evs[0]
	if ev.Kind != EventPresence || ev.Agent == nil || *ev.Agent != a || ev.Presence == nil ||
		*ev.Presence != (PresenceChange{Agent: "dan", From: StatusOffline, To: StatusOnline, Reason: ReasonConnected}) {
		t.Errorf("event: got %+v presence %+v agent %+v", ev, ev.Presence, ev.Agent)
	}
	if got, _ := f.s.Agent("newco", "dan"); got != a {
		t.Errorf("stored: got %+v, want %+v", got, a)
	}

	// The tracker's first transition then finds nothing to write.
	head = f.s.Head("newco")
	if got, err := f.s.ApplyPresence(f.ctx, "newco", PresenceUpdate{Agent: "dan", Status: StatusOnline, Reason: ReasonConnected}); err != nil || got != a || f.s.Head("newco") != head {
		t.Errorf("tracker's connect after it: got %+v %v, head %d->%d", got, err, head, f.s.Head("newco"))
	}

	// A known agent is EnsureAgent's business: nothing, or an agent event.
	if got, created, _ := f.s.ConnectAgent(f.ctx, "newco", Agent{ID: "dan", Name: "Dan", Role: RoleAgent}); created || got != a || f.s.Head("newco") != head {
		t.Errorf("known agent: got %+v created=%v, head %d->%d", got, created, head, f.s.Head("newco"))
	}
	got, created, _ := f.s.ConnectAgent(f.ctx, "newco", Agent{ID: "dan", Name: "Daniel", Role: RoleAgent})
	if created || got.Name != "Daniel" || got.Status != StatusOnline || f.s.Head("newco") != head+1 {
		t.Errorf("rename: got %+v created=%v", got, created)
	}
	if evs, _, _ := f.s.EventsSince("newco", head, 100); len(evs) != 1 || evs[0].Kind != EventAgent {
		t.Errorf("rename: got events %+v, want one agent event", evs)
	}
	// An agent that went offline comes back through the tracker, not here.
	f.s.ApplyPresence(f.ctx, "newco", PresenceUpdate{Agent: "dan", Status: StatusOffline, Reason: "logout"})
	if got, created, _ := f.s.ConnectAgent(f.ctx, "newco", Agent{ID: "dan", Name: "Daniel", Role: RoleAgent}); created || got.Status != StatusOffline {
		t.Errorf("known offline agent: got %+v created=%v", got, created)
	}
	if _, _, err := f.s.ConnectAgent(f.ctx, "newco", Agent{ID: "x", Role: RoleService}); !errors.Is(err, ErrInvalid) {
		t.Errorf("service role: got %v, want ErrInvalid", err)
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t)
	f.online(alice)
	f.inbound("c1")
	f.inbound("c2")
	f.assign(alice, "c1", "alice")
	f.inbound("c3")
	f.move(alice, "c3", QueuePending)
	st := f.s.Stats()
	if st.Workspaces != 1 || st.Conversations[QueueNew] != (QueueStats{Owned: 1, Unowned: 1}) ||
		st.Conversations[QueuePending] != (QueueStats{Unowned: 1}) || st.Agents[StatusOnline] != 1 || st.Agents[StatusOffline] != 3 {
		t.Errorf("got %+v", st)
	}
}

// A caller who gave up before the committer reached its request gets its
// context's error, and the change is not made.
func TestCancelledCallerChangesNothing(t *testing.T) {
	f := newFixture(t)
	v := f.inbound("c1").Conv.Version
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	for range 20 {
		if _, err := f.s.Assign(ctx, ws, alice, "c1", "alice", v); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	}
	f.wantOwner("c1", "")
	if c := f.conv("c1"); c.Version != v {
		t.Errorf("version moved to %d", c.Version)
	}
}

// Requests are recycled, but never one a cancelled caller left behind:
// the committer may still answer it, and the next caller to get it would
// read that answer as its own.
func TestRequestsOfCancelledCallersAreNotReused(t *testing.T) {
	f := newFixture(t)
	v := f.inbound("c1").Conv.Version
	gone, cancel := context.WithCancel(f.ctx)
	cancel()
	for i := range 200 {
		f.s.Assign(gone, ws, alice, "c1", "alice", v) // an error, or nothing at all
		owner := []string{"alice", ""}[i%2]
		r, err := f.s.Assign(f.ctx, ws, alice, "c1", owner, v)
		if err != nil || r.Conv.Owner != owner || r.Conv.Version != v+1 {
			t.Fatalf("call %d: %+v, %v; want owner %q at version %d", i, r.Conv, err, owner, v+1)
		}
		v = r.Conv.Version
	}
}

// The committer keeps its op slice between batches, but nothing the ops
// pointed to: after a batch the kept slice holds no key or value, also
// when a batch outgrew it into one too big to keep.
func TestCommitterKeepsNoKeysBetweenBatches(t *testing.T) {
	f := newFixture(t)
	f.online(alice)
	f.inbound("c1") // small batches: their slice is kept
	big := func(b *batch) (int, error) {
		for i := range maxKeptOps + 1 {
			b.set(fmt.Appendf(nil, "z/test/%d", i), []byte("v"))
		}
		return 0, nil
	}
	if _, err := do(f.s, f.ctx, big); err != nil {
		t.Fatal(err)
	}
	// Look from the committer, the slice's only user.
	var kept, held int
	if _, err := do(f.s, f.ctx, func(b *batch) (int, error) {
		all := f.s.opsBuf[:cap(f.s.opsBuf)]
		kept = cap(all)
		for _, o := range all {
			if o.k != nil || o.v != nil {
				held++
			}
		}
		return 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	if kept == 0 || kept > maxKeptOps {
		t.Errorf("kept a slice of %d ops, want 1 to %d", kept, maxKeptOps)
	}
	if held != 0 {
		t.Errorf("the kept slice still points to %d keys or values", held)
	}
}

// TestCommitObserverHearsEveryWrite: the observer hears of each batch the
// store writes, with its requests, and of none that writes nothing.
func TestCommitObserverHearsEveryWrite(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var batches, requests int
	f.s.SetCommitObserver(func(n int, took time.Duration) {
		if n < 1 || took <= 0 {
			t.Errorf("observed a batch of %d requests in %v", n, took)
		}
		mu.Lock()
		batches++
		requests += n
		mu.Unlock()
	})
	v := f.inbound("c1").Conv.Version
	if _, err := f.s.Assign(f.ctx, ws, alice, "c1", "alice", v); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if batches != 2 || requests != 2 {
		t.Errorf("after two changes: %d batches of %d requests, want 2 and 2", batches, requests)
	}
	mu.Unlock()
	// A change that changes nothing writes nothing.
	c := f.conv("c1")
	if r, err := f.s.Assign(f.ctx, ws, alice, "c1", "alice", c.Version); err != nil || r.Changed {
		t.Fatalf("same owner: %+v %v", r, err)
	}
	// Concurrent changes share batches: every request is counted once.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			conv := fmt.Sprintf("n%d", i)
			if _, err := f.s.Inbound(f.ctx, ws, Inbound{Conversation: conv, MessageID: "m-" + conv,
				Channel: "email", Customer: "cust-" + conv, Subject: "About " + conv, Text: "hello"}); err != nil {
				t.Errorf("Inbound %s: %v", conv, err)
			}
		})
	}
	wg.Wait()
	f.s.SetCommitObserver(nil)
	f.inbound("after")
	mu.Lock()
	defer mu.Unlock()
	if requests != 22 || batches < 3 || batches > 22 {
		t.Errorf("after 22 changes: %d batches of %d requests in all, want 22 requests in 3 to 22 batches", batches, requests)
	}
}
