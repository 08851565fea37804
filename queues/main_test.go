package queues

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// recorder is a Publisher that keeps every event.
type recorder struct {
	mu     sync.Mutex // guards events
	events []Event
}

func (r *recorder) Publish(ws string, events []Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, events...)
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// fixture is a store with a test clock and a recorder, closed at cleanup.
type fixture struct {
	t   *testing.T
	s   *Store
	clk *clock
	pub *recorder
	ctx context.Context
}

const ws = "acme"

var (
	admin   = Actor{ID: "ada", Name: "Ada", Role: RoleAdmin}
	alice   = Actor{ID: "alice", Name: "Alice", Role: RoleAgent}
	bob     = Actor{ID: "bob", Name: "Bob", Role: RoleAgent}
	carol   = Actor{ID: "carol", Name: "Carol", Role: RoleAgent}
	service = Actor{Role: RoleService}
)

func newFixture(t *testing.T, mod ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, clk: newClock(), pub: &recorder{}, ctx: t.Context()}
	o := Options{InMemory: true, Now: f.clk.Now, Publisher: f.pub}
	for _, m := range mod {
		m(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	f.s = s
	for _, a := range []Actor{admin, alice, bob, carol} {
		f.agent(a)
	}
	return f
}

func (f *fixture) agent(a Actor) Agent {
	f.t.Helper()
	got, err := f.s.EnsureAgent(f.ctx, ws, Agent{ID: a.ID, Name: a.Name, Role: a.Role})
	if err != nil {
		f.t.Fatalf("EnsureAgent %s: %v", a.ID, err)
	}
	return got
}

func (f *fixture) presence(agent string, st Status, reason string) Agent {
	f.t.Helper()
	a, err := f.s.ApplyPresence(f.ctx, ws, PresenceUpdate{Agent: agent, Status: st, Reason: reason})
	if err != nil {
		f.t.Fatalf("ApplyPresence %s %s: %v", agent, st, err)
	}
	return a
}

func (f *fixture) online(agents ...Actor) {
	for _, a := range agents {
		f.presence(a.ID, StatusOnline, "connected")
	}
}

func (f *fixture) logout(a Actor) Agent { return f.presence(a.ID, StatusOffline, "logout") }

func (f *fixture) settings(p SettingsPatch) Settings {
	f.t.Helper()
	s, err := f.s.UpdateSettings(f.ctx, ws, admin, p)
	if err != nil {
		f.t.Fatalf("UpdateSettings: %v", err)
	}
	return s
}

func (f *fixture) removeOwnership(on bool) { f.settings(SettingsPatch{RemoveOwnership: &on}) }

var msgN int

func (f *fixture) inbound(conv string) Result {
	f.t.Helper()
	msgN++
	r, err := f.s.Inbound(f.ctx, ws, Inbound{Conversation: conv, MessageID: "m" + itoa(msgN),
		Channel: "email", Customer: "cust-" + conv, Subject: "About " + conv, Text: "hello"})
	if err != nil {
		f.t.Fatalf("Inbound %s: %v", conv, err)
	}
	f.clk.Advance(time.Millisecond)
	return r
}

func (f *fixture) conv(id string) Conversation {
	f.t.Helper()
	c, err := f.s.Conversation(ws, id)
	if err != nil {
		f.t.Fatalf("Conversation %s: %v", id, err)
	}
	return c
}

func (f *fixture) assign(by Actor, conv, owner string) Result {
	f.t.Helper()
	r, err := f.s.Assign(f.ctx, ws, by, conv, owner, f.conv(conv).Version)
	if err != nil {
		f.t.Fatalf("Assign %s to %q: %v", conv, owner, err)
	}
	f.clk.Advance(time.Millisecond)
	return r
}

func (f *fixture) move(by Actor, conv string, to Queue) Result {
	f.t.Helper()
	r, err := f.s.Move(f.ctx, ws, by, conv, to, 0)
	if err != nil {
		f.t.Fatalf("Move %s to %s: %v", conv, to, err)
	}
	f.clk.Advance(time.Millisecond)
	return r
}

func (f *fixture) wantOwner(conv, want string) {
	f.t.Helper()
	if got := f.conv(conv).Owner; got != want {
		f.t.Errorf("owner of %s: got %q, want %q", conv, got, want)
	}
}

func (f *fixture) wantQueue(conv string, want Queue) {
	f.t.Helper()
	if got := f.conv(conv).Queue; got != want {
		f.t.Errorf("queue of %s: got %q, want %q", conv, got, want)
	}
}

// ownerAudits returns the ownership entries of a conversation's history.
func (f *fixture) ownerAudits(conv string) []AuditEntry {
	f.t.Helper()
	h, err := f.s.History(ws, conv)
	if err != nil {
		f.t.Fatalf("History %s: %v", conv, err)
	}
	var out []AuditEntry
	for _, a := range h {
		if a.Kind == AuditOwner {
			out = append(out, a)
		}
	}
	return out
}

// lastOwnerAudit is the conversation's latest ownership entry.
func (f *fixture) lastOwnerAudit(conv string) AuditEntry {
	f.t.Helper()
	h := f.ownerAudits(conv)
	if len(h) == 0 {
		f.t.Fatalf("%s: no ownership entries", conv)
	}
	return h[len(h)-1]
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}
