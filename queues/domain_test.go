package queues

import (
	"errors"
	"testing"
	"time"
)

// One test per rule of DOMAIN.md, each told like the help-center articles.

// fire runs the committer's timer pass now, as Run does when a timer is due.
func (f *fixture) fire() int {
	f.t.Helper()
	n, err := do(f.s, f.ctx, func(b *batch) (int, error) { return b.fireDue(), nil })
	if err != nil {
		f.t.Fatalf("fire: %v", err)
	}
	return n
}

// reconcile runs one reconciliation as Run does (the scan outside the
// committer, then the committer on what it found), and checks that a full
// pass over every agent afterwards finds nothing the scan missed.
func (f *fixture) reconcile() int {
	f.t.Helper()
	n := 0
	if only := f.s.reconcileCandidates(); only != nil {
		var err error
		n, err = do(f.s, f.ctx, func(b *batch) (int, error) { return b.reconcile(only), nil })
		if err != nil {
			f.t.Fatalf("reconcile: %v", err)
		}
	}
	missed, err := do(f.s, f.ctx, func(b *batch) (int, error) { return b.reconcile(nil), nil })
	if err != nil {
		f.t.Fatalf("full reconcile: %v", err)
	}
	if missed != 0 {
		f.t.Errorf("the candidate scan missed %d changes a full reconciliation made", missed)
	}
	return n
}

func (f *fixture) boomerang(conv string, at time.Time) Result {
	f.t.Helper()
	r, err := f.s.SetBoomerang(f.ctx, ws, alice, conv, at, 0)
	if err != nil {
		f.t.Fatalf("SetBoomerang %s: %v", conv, err)
	}
	return r
}

// Rule 1: when an agent logs out, their new conversations become unowned,
// in the same commit as the transition, with an audit entry.
func TestLogoutRemovesOwnershipOfNew(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice, bob)
	f.inbound("c1")
	f.inbound("c2")
	f.assign(alice, "c1", "alice")
	f.assign(bob, "c2", "alice")
	f.inbound("c3")
	f.assign(bob, "c3", "bob")
	before := f.s.Head(ws)

	f.logout(alice)

	f.wantOwner("c1", "")
	f.wantOwner("c2", "")
	f.wantOwner("c3", "bob")
	a := f.lastOwnerAudit("c1")
	if a.From != "alice" || a.FromName != "Alice" || a.To != "" || a.Reason != ReasonLogout || a.Actor != System {
		t.Errorf("audit: got %+v, want alice -> unowned, logout, by the system", a)
	}
	evs, complete, err := f.s.EventsSince(ws, before, 10)
	if err != nil || !complete {
		t.Fatalf("EventsSince: %v complete=%v", err, complete)
	}
	if len(evs) != 3 || evs[0].Kind != EventPresence || evs[1].Reason != ReasonLogout || evs[2].Reason != ReasonLogout {
		t.Fatalf("got %d events %v, want the presence transition then two logout sweeps", len(evs), kinds(evs))
	}
	if evs[0].Presence.To != StatusOffline || evs[0].Presence.LastSeen.IsZero() {
		t.Errorf("presence: got %+v, want offline with LastSeen", evs[0].Presence)
	}
}

func kinds(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Kind)+"/"+string(e.Reason))
	}
	return out
}

// Rule 2: their pending conversations keep their owner.
func TestPendingKeepsOwnerOnLogout(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	f.move(alice, "c1", QueuePending)

	f.logout(alice)

	f.wantOwner("c1", "alice")
	f.wantQueue("c1", QueuePending)
}

// Rule 3: an inbound that moves a pending conversation to new while its
// owner is offline clears the owner in the same step.
func TestInboundWhileOwnerOfflineClearsOwner(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	f.move(alice, "c1", QueuePending)
	f.logout(alice)
	f.wantOwner("c1", "alice")

	r := f.inbound("c1")

	if r.Conv.Queue != QueueNew || r.Conv.Owner != "" {
		t.Fatalf("got %s owned by %q, want new and unowned", r.Conv.Queue, r.Conv.Owner)
	}
	a := f.lastOwnerAudit("c1")
	if a.Reason != ReasonInbound || a.From != "alice" || a.Actor != System {
		t.Errorf("audit: got %+v, want reason inbound from alice by the system", a)
	}
	evs := f.pub.all()
	last := evs[len(evs)-1]
	if last.Seq != r.Seq || last.Prev.Queue != QueuePending || last.Prev.Owner != "alice" || last.Conv.Owner != "" {
		t.Errorf("one event for both: got %+v prev %+v", last.Conv, last.Prev)
	}
}

// Rule 3 does not apply while the owner is online.
func TestInboundWhileOwnerOnlineKeepsOwner(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	f.move(alice, "c1", QueueResolved)
	f.wantOwner("c1", "")
	f.inbound("c2")
	f.assign(alice, "c2", "alice")
	f.move(alice, "c2", QueuePending)

	f.inbound("c1")
	f.inbound("c2")

	f.wantQueue("c1", QueueNew)
	f.wantQueue("c2", QueueNew)
	f.wantOwner("c2", "alice")
}

// Rule 4: a boomerang that fires while the owner is offline clears the
// owner in the same step.
func TestBoomerangWhileOwnerOfflineClearsOwner(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	f.move(alice, "c1", QueuePending)
	f.boomerang("c1", f.clk.Now().Add(time.Hour))
	f.logout(alice)

	f.clk.Advance(time.Hour)
	if n := f.fire(); n != 1 {
		t.Fatalf("fired %d, want 1", n)
	}

	f.wantQueue("c1", QueueNew)
	f.wantOwner("c1", "")
	if a := f.lastOwnerAudit("c1"); a.Reason != ReasonBoomerang || a.Actor != System {
		t.Errorf("audit: got %+v, want reason boomerang by the system", a)
	}
	if c := f.conv("c1"); !c.Boomerang.IsZero() {
		t.Errorf("boomerang after firing: got %v, want none", c.Boomerang)
	}
	if n := f.fire(); n != 0 {
		t.Errorf("second pass fired %d, want 0", n)
	}
}

// A boomerang that fires while the owner is online keeps the owner; one
// cancelled, replaced, or whose conversation went back to new meanwhile does
// nothing.
func TestBoomerangCancelledOrReplacedDoesNothing(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice)
	for _, id := range []string{"kept", "cancelled", "replaced", "back"} {
		f.inbound(id)
		f.assign(alice, id, "alice")
		f.move(alice, id, QueuePending)
		f.boomerang(id, f.clk.Now().Add(time.Hour))
	}
	f.boomerang("cancelled", time.Time{})
	f.boomerang("replaced", f.clk.Now().Add(3*time.Hour))
	f.inbound("back")

	f.clk.Advance(90 * time.Minute)
	if n := f.fire(); n != 1 {
		t.Fatalf("fired %d, want 1 (only the untouched boomerang)", n)
	}
	f.wantQueue("kept", QueueNew)
	f.wantOwner("kept", "alice")
	f.wantQueue("cancelled", QueuePending)
	f.wantQueue("replaced", QueuePending)
	if h, _ := f.s.History(ws, "back"); h[len(h)-1].Reason != ReasonInbound {
		t.Errorf("back: last audit %+v, want the inbound move only", h[len(h)-1])
	}
	f.clk.Advance(2 * time.Hour)
	if n := f.fire(); n != 1 {
		t.Fatalf("fired %d, want 1 (the replacement)", n)
	}
	f.wantQueue("replaced", QueueNew)
}

// Rule 5: a conversation assigned to an agent already offline is not swept
// by their logout; rules 3 and 4 still apply to it.
func TestAssignToOfflineAgentSurvivesTheirLogoutSweep(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice)
	f.logout(alice)
	f.inbound("c1")
	f.assign(bob, "c1", "alice")

	f.reconcile()
	f.wantOwner("c1", "alice")
	f.online(alice)
	f.logout(alice)
	f.wantOwner("c1", "")

	f.inbound("c2")
	f.assign(bob, "c2", "alice")
	f.move(bob, "c2", QueuePending)
	f.inbound("c2")
	f.wantOwner("c2", "")

	f.inbound("c3")
	f.assign(bob, "c3", "alice")
	f.move(bob, "c3", QueuePending)
	f.boomerang("c3", f.clk.Now().Add(time.Minute))
	f.clk.Advance(time.Minute)
	f.fire()
	f.wantQueue("c3", QueueNew)
	f.wantOwner("c3", "")
}

// Rule 6: switching the setting on does not strip agents already offline.
func TestSwitchingOnIsNotRetroactive(t *testing.T) {
	f := newFixture(t)
	f.online(alice)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	f.logout(alice)
	f.clk.Advance(time.Minute)

	f.removeOwnership(true)
	f.clk.Advance(time.Minute)
	if n := f.reconcile(); n != 0 {
		t.Errorf("reconcile changed %d, want 0", n)
	}
	f.wantOwner("c1", "alice")

	// From now on it applies.
	f.online(bob)
	f.inbound("c2")
	f.assign(bob, "c2", "bob")
	f.logout(bob)
	f.wantOwner("c2", "")
}

// Rule 6: the admin can release offline agents' conversations explicitly.
func TestAdminReleaseOfflineNow(t *testing.T) {
	f := newFixture(t)
	f.online(alice, bob)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	f.inbound("c2")
	f.assign(alice, "c2", "alice")
	f.move(alice, "c2", QueuePending)
	f.inbound("c3")
	f.assign(bob, "c3", "bob")
	f.logout(alice)

	if _, err := f.s.ReleaseOffline(f.ctx, ws, bob); !errors.Is(err, ErrForbidden) {
		t.Fatalf("agent release: got %v, want ErrForbidden", err)
	}
	n, err := f.s.ReleaseOffline(f.ctx, ws, admin)
	if err != nil || n != 1 {
		t.Fatalf("release: got %d, %v, want 1", n, err)
	}
	f.wantOwner("c1", "")
	f.wantOwner("c2", "alice")
	f.wantOwner("c3", "bob")
	if a := f.lastOwnerAudit("c1"); a.Reason != ReasonAdminRelease || a.Actor != admin {
		t.Errorf("audit: got %+v, want admin_release by the admin", a)
	}
	log, _ := f.s.AdminLog(ws, 1)
	if len(log) != 1 || log[0].Field != "release_offline" || log[0].New != "1" || log[0].Actor != admin {
		t.Errorf("admin log: got %+v", log)
	}
}

// Rule 7: away is not offline.
func TestAwayKeepsOwnership(t *testing.T) {
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	f.move(alice, "c1", QueuePending)
	f.boomerang("c1", f.clk.Now().Add(time.Minute))
	f.inbound("c2")
	f.assign(alice, "c2", "alice")

	if _, err := f.s.ApplyPresence(f.ctx, ws, PresenceUpdate{Agent: "alice", Status: StatusAway, ManualAway: true, Reason: "manual_away"}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Hour)
	f.fire()
	f.reconcile()

	f.wantOwner("c1", "alice")
	f.wantQueue("c1", QueueNew)
	f.wantOwner("c2", "alice")
	if a, _ := f.s.Agent(ws, "alice"); a.Status != StatusAway || !a.ManualAway {
		t.Errorf("got %s manual=%v, want away manual", a.Status, a.ManualAway)
	}
}

// When off: ownership stays with agents who log off.
func TestRemoveOwnershipOffKeepsOwnership(t *testing.T) {
	f := newFixture(t)
	f.online(alice)
	f.inbound("c1")
	f.assign(alice, "c1", "alice")
	f.inbound("c2")
	f.assign(alice, "c2", "alice")
	f.move(alice, "c2", QueuePending)
	f.logout(alice)
	f.inbound("c2")
	f.reconcile()

	f.wantOwner("c1", "alice")
	f.wantOwner("c2", "alice")
	f.wantQueue("c2", QueueNew)
}

// Moving to resolved removes the owner, with an audit entry.
func TestResolveClearsOwner(t *testing.T) {
	f := newFixture(t)
	f.inbound("c1")
	f.assign(alice, "c1", "bob")

	r := f.move(alice, "c1", QueueResolved)

	if r.Conv.Owner != "" || r.Conv.Queue != QueueResolved {
		t.Fatalf("got %s owned by %q", r.Conv.Queue, r.Conv.Owner)
	}
	h, _ := f.s.History(ws, "c1")
	last2 := h[len(h)-2:]
	if last2[0].Kind != AuditQueue || last2[0].To != string(QueueResolved) ||
		last2[1].Kind != AuditOwner || last2[1].Reason != ReasonResolved || last2[1].FromName != "Bob" || last2[1].Actor != alice {
		t.Errorf("history: got %+v", last2)
	}
	if _, err := f.s.Assign(f.ctx, ws, alice, "c1", "bob", r.Conv.Version); !errors.Is(err, ErrConflict) {
		t.Errorf("assigning a resolved conversation: got %v, want ErrConflict", err)
	}
}

// An inbound on a resolved or pending conversation moves it to new.
func TestInboundMovesToNew(t *testing.T) {
	f := newFixture(t)
	f.inbound("c1")
	f.move(alice, "c1", QueueResolved)
	r := f.inbound("c1")
	if r.Conv.Queue != QueueNew {
		t.Fatalf("got %s, want new", r.Conv.Queue)
	}
	h, _ := f.s.History(ws, "c1")
	if last := h[len(h)-1]; last.Kind != AuditQueue || last.From != "resolved" || last.To != "new" || last.Reason != ReasonInbound {
		t.Errorf("history: got %+v", last)
	}
}

func TestAutoOwnershipOnReply(t *testing.T) {
	f := newFixture(t)
	f.settings(SettingsPatch{AutoOwnership: map[string]bool{"email": true}})
	f.inbound("c1")

	r, err := f.s.Reply(f.ctx, ws, alice, "c1", "r1", "Looking into it")
	if err != nil {
		t.Fatal(err)
	}
	if r.Conv.Owner != "alice" || r.Conv.Queue != QueueNew || r.Conv.Preview != "Looking into it" {
		t.Fatalf("got %+v, want owned by alice, still new", r.Conv)
	}
	if a := f.lastOwnerAudit("c1"); a.Reason != ReasonAutoOwnership || a.Actor != alice || a.ToName != "Alice" {
		t.Errorf("audit: got %+v", a)
	}
	msgs, _ := f.s.Messages(ws, "c1", 0)
	if len(msgs) != 2 || msgs[1].ID != "r1" || msgs[1].Inbound || msgs[1].From != alice {
		t.Errorf("messages: got %+v", msgs)
	}
}

func TestAutoOwnershipKeepsExistingOwner(t *testing.T) {
	f := newFixture(t)
	f.settings(SettingsPatch{AutoOwnership: map[string]bool{"email": true}})
	f.inbound("c1")
	f.assign(alice, "c1", "bob")

	r, err := f.s.Reply(f.ctx, ws, alice, "c1", "r1", "I'll help too")
	if err != nil {
		t.Fatal(err)
	}
	if r.Conv.Owner != "bob" {
		t.Errorf("owner: got %q, want bob", r.Conv.Owner)
	}
	f.settings(SettingsPatch{AutoOwnership: map[string]bool{"email": false}})
	f.inbound("c2")
	if r, _ := f.s.Reply(f.ctx, ws, alice, "c2", "r2", "hi"); r.Conv.Owner != "" {
		t.Errorf("auto-ownership off: got owner %q, want none", r.Conv.Owner)
	}
}

// Assigning to an offline agent notifies them; the notifications wait and
// come back as one grouped list.
func TestNotificationsGroupedForOfflineAssignee(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"c1", "c2", "c3"} {
		f.inbound(id)
	}
	f.assign(bob, "c1", "alice")
	f.assign(carol, "c2", "alice")
	f.assign(bob, "c3", "alice")
	f.inbound("c4")
	f.assign(alice, "c4", "alice") // her own: no notification

	g, err := f.s.Notifications(ws, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if g.Total != 3 || len(g.Items) != 3 || g.Items[0].Conversation != "c3" || g.Items[2].Conversation != "c1" {
		t.Fatalf("got %+v, want 3 items newest first", g)
	}
	if len(g.ByWho) != 2 || g.ByWho[0].By.ID != "bob" || g.ByWho[0].Count != 2 || g.ByWho[1].Count != 1 {
		t.Errorf("ByWho: got %+v, want bob 2 then carol 1", g.ByWho)
	}
	if g.Items[0].Customer != "cust-c3" || g.Items[0].Subject != "About c3" {
		t.Errorf("item: got %+v", g.Items[0])
	}

	n, err := f.s.MarkNotificationsRead(f.ctx, ws, "alice", g.Items[1].Seq)
	if err != nil || n != 2 {
		t.Fatalf("mark read: got %d, %v, want 2", n, err)
	}
	if g, _ := f.s.Notifications(ws, "alice"); g.Total != 1 || g.Items[0].Conversation != "c3" {
		t.Errorf("after marking: got %+v", g)
	}
	if n, _ := f.s.MarkNotificationsRead(f.ctx, ws, "alice", 0); n != 1 {
		t.Errorf("mark all: got %d, want 1", n)
	}
	if g, _ := f.s.Notifications(ws, "alice"); g.Total != 0 {
		t.Errorf("after marking all: got %+v", g)
	}
	if _, err := f.s.MarkNotificationsRead(f.ctx, ws, "zed", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown agent: got %v", err)
	}
}

func TestSettingsBoundsNameTheField(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		p    SettingsPatch
		want string
	}{
		{SettingsPatch{OfflineGrace: intp(120)}, "offline_grace: must be between 0 and 90 seconds"},
		{SettingsPatch{IdleAway: intp(-5)}, "idle_away: must be between 0 and 86400 seconds"},
		{SettingsPatch{IdleLogout: intp(100000)}, "idle_logout: must be between 0 and 86400 seconds"},
		{SettingsPatch{DefaultBoomerang: intp(3000000)}, "default_boomerang: must be between 0 and 2592000 seconds"},
	}
	for _, c := range cases {
		_, err := f.s.UpdateSettings(f.ctx, ws, admin, c.p)
		var ie *InvalidError
		if !errors.As(err, &ie) || err.Error() != c.want || !errors.Is(err, ErrInvalid) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	if _, err := f.s.UpdateSettings(f.ctx, ws, alice, SettingsPatch{OfflineGrace: intp(30)}); !errors.Is(err, ErrForbidden) {
		t.Errorf("agent: got %v, want ErrForbidden", err)
	}
	if s, _ := f.s.Settings(ws); s.OfflineGrace != 60 {
		t.Errorf("a refused patch changed offline_grace to %d", s.OfflineGrace)
	}
}

func TestSettingsChangeIsAudited(t *testing.T) {
	f := newFixture(t)
	before := f.s.Head(ws)
	s := f.settings(SettingsPatch{RemoveOwnership: boolp(true), OfflineGrace: intp(30), AutoOwnership: map[string]bool{"chat": true}})
	if !s.RemoveOwnership || !s.RemoveOwnershipSince.Equal(f.clk.Now()) || s.OfflineGrace != 30 || !s.AutoOwnership["chat"] {
		t.Fatalf("got %+v", s)
	}
	log, err := f.s.AdminLog(ws, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []AdminLogEntry{
		{Field: "auto_ownership.chat", Old: "false", New: "true"},
		{Field: "offline_grace", Old: "60", New: "30"},
		{Field: "remove_ownership", Old: "false", New: "true"},
	}
	if len(log) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(log), log, len(want))
	}
	for i, w := range want {
		if log[i].Field != w.Field || log[i].Old != w.Old || log[i].New != w.New || log[i].Actor != admin {
			t.Errorf("entry %d: got %+v, want %+v by the admin", i, log[i], w)
		}
	}
	evs, _, _ := f.s.EventsSince(ws, before, 10)
	if len(evs) != 1 || evs[0].Kind != EventSettings || evs[0].Settings.OfflineGrace != 30 {
		t.Errorf("events: got %v", kinds(evs))
	}
	// Nothing changed: nothing logged, no event.
	f.settings(SettingsPatch{OfflineGrace: intp(30)})
	if log2, _ := f.s.AdminLog(ws, 10); len(log2) != 3 {
		t.Errorf("a no-op patch logged: %+v", log2)
	}
	if h := f.s.Head(ws); h != evs[0].Seq {
		t.Errorf("a no-op patch emitted events: head %d, want %d", h, evs[0].Seq)
	}
}

// Any agent can set or clear any conversation's owner; the history says
// who, whom, by whom and why.
func TestOwnershipAuditTrail(t *testing.T) {
	f := newFixture(t)
	f.inbound("c1")
	f.assign(alice, "c1", "bob")
	f.assign(carol, "c1", "alice")
	f.assign(bob, "c1", "")
	got := f.ownerAudits("c1")
	want := []AuditEntry{
		{From: "", To: "bob", ToName: "Bob", Actor: alice, Reason: ReasonManualAssign},
		{From: "bob", FromName: "Bob", To: "alice", ToName: "Alice", Actor: carol, Reason: ReasonManualAssign},
		{From: "alice", FromName: "Alice", To: "", Actor: bob, Reason: ReasonManualUnassign},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		g := got[i]
		g.Seq, g.At, g.Kind = 0, time.Time{}, ""
		if g != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, g, want[i])
		}
		if i > 0 && got[i].Seq <= got[i-1].Seq {
			t.Errorf("entry %d: seq %d not after %d", i, got[i].Seq, got[i-1].Seq)
		}
	}
	// A rename later does not rewrite history.
	f.agent(Actor{ID: "bob", Name: "Robert", Role: RoleAgent})
	if h := f.ownerAudits("c1"); h[0].ToName != "Bob" {
		t.Errorf("history rewritten: %+v", h[0])
	}
}

func TestMoveToPendingSetsDefaultBoomerang(t *testing.T) {
	f := newFixture(t)
	f.settings(SettingsPatch{DefaultBoomerang: intp(3600)})
	f.inbound("c1")
	now := f.clk.Now()
	r := f.move(alice, "c1", QueuePending)
	if !r.Conv.Boomerang.Equal(now.Add(time.Hour)) {
		t.Fatalf("boomerang: got %v, want %v", r.Conv.Boomerang, now.Add(time.Hour))
	}
	f.clk.Advance(time.Hour)
	f.fire()
	f.wantQueue("c1", QueueNew)
	if _, err := f.s.SetBoomerang(f.ctx, ws, alice, "c1", f.clk.Now().Add(time.Hour), 0); !errors.Is(err, ErrConflict) {
		t.Errorf("boomerang on new: got %v, want ErrConflict", err)
	}
}
