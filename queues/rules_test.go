package queues

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// testEnv builds a ruleEnv with alice online, bob offline, on the settings
// given.
func testEnv(set Settings) *ruleEnv {
	agents := map[string]*Agent{
		"alice": {ID: "alice", Name: "Alice", Status: StatusOnline},
		"bob":   {ID: "bob", Name: "Bob", Status: StatusOffline, OfflineSince: t0.Add(-time.Hour)},
		"carol": {ID: "carol", Name: "Carol", Status: StatusAway},
	}
	if set.AutoOwnership == nil {
		set.AutoOwnership = map[string]bool{}
	}
	return &ruleEnv{now: t0, settings: &set, agent: func(id string) (*Agent, bool) {
		a, ok := agents[id]
		return a, ok
	}}
}

func conv(q Queue, owner string) *convRec {
	c := &convRec{Conversation: Conversation{ID: "c1", Channel: "chat", Customer: "x", Queue: q, Owner: owner, Version: 3}}
	if owner != "" {
		c.OwnerSince = t0.Add(-2 * time.Hour)
	}
	if q != QueueNew {
		c.Boomerang = t0.Add(time.Hour)
	}
	return c
}

func ownerAudit(o outcome) *AuditEntry {
	for i := range o.audits {
		if o.audits[i].Kind == AuditOwner {
			return &o.audits[i]
		}
	}
	return nil
}

func TestRuleInbound(t *testing.T) {
	on := Settings{RemoveOwnership: true}
	tests := []struct {
		name      string
		c         *convRec
		in        Inbound
		dup       bool
		set       Settings
		wantErr   string
		wantQueue Queue
		wantOwner string
		changed   bool
		reason    Reason
	}{
		{name: "creates in new", in: Inbound{Conversation: "c1", MessageID: "m", Channel: "chat", Customer: "x"},
			wantQueue: QueueNew, changed: true, reason: ReasonCreated},
		{name: "new needs a channel", in: Inbound{Conversation: "c1", MessageID: "m", Customer: "x"}, wantErr: "channel"},
		{name: "new needs a valid channel", in: Inbound{Conversation: "c1", MessageID: "m", Channel: "Chat!", Customer: "x"}, wantErr: "channel"},
		{name: "new needs a customer", in: Inbound{Conversation: "c1", MessageID: "m", Channel: "chat"}, wantErr: "customer"},
		{name: "repeated message changes nothing", c: conv(QueuePending, "bob"), dup: true, set: on,
			wantQueue: QueuePending, wantOwner: "bob"},
		{name: "new stays new, owner kept", c: conv(QueueNew, "bob"), set: on,
			wantQueue: QueueNew, wantOwner: "bob", changed: true, reason: ReasonInbound},
		{name: "pending to new, online owner kept", c: conv(QueuePending, "alice"), set: on,
			wantQueue: QueueNew, wantOwner: "alice", changed: true, reason: ReasonInbound},
		{name: "pending to new, offline owner removed (rule 3)", c: conv(QueuePending, "bob"), set: on,
			wantQueue: QueueNew, wantOwner: "", changed: true, reason: ReasonInbound},
		{name: "pending to new, away owner kept (rule 7)", c: conv(QueuePending, "carol"), set: on,
			wantQueue: QueueNew, wantOwner: "carol", changed: true, reason: ReasonInbound},
		{name: "pending to new, setting off keeps offline owner", c: conv(QueuePending, "bob"),
			wantQueue: QueueNew, wantOwner: "bob", changed: true, reason: ReasonInbound},
		{name: "resolved to new", c: conv(QueueResolved, ""), set: on,
			wantQueue: QueueNew, changed: true, reason: ReasonInbound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ruleInbound(tt.c, tt.in, tt.dup, testEnv(tt.set))
			if tt.wantErr != "" {
				var ie *InvalidError
				if !errors.As(err, &ie) || ie.Field != tt.wantErr {
					t.Fatalf("got error %v, want an InvalidError on %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if o.changed != tt.changed || o.conv.Queue != tt.wantQueue || o.conv.Owner != tt.wantOwner || o.reason != tt.reason {
				t.Errorf("got changed=%v queue=%s owner=%q reason=%q, want %v %s %q %q",
					o.changed, o.conv.Queue, o.conv.Owner, o.reason, tt.changed, tt.wantQueue, tt.wantOwner, tt.reason)
			}
			if tt.changed && o.conv.Queue == QueueNew && !o.conv.Boomerang.IsZero() {
				t.Errorf("boomerang %v survived the move to new", o.conv.Boomerang)
			}
			if tt.c != nil && tt.c.Owner != o.conv.Owner {
				a := ownerAudit(o)
				if a == nil || a.Reason != ReasonInbound || a.Actor != System || a.FromName != "Bob" {
					t.Errorf("owner audit: got %+v, want inbound by system from Bob", a)
				}
			}
			if tt.changed && tt.c != nil && o.conv.Version != tt.c.Version+1 {
				t.Errorf("version: got %d, want %d", o.conv.Version, tt.c.Version+1)
			}
		})
	}
}

func TestRuleReply(t *testing.T) {
	auto := Settings{AutoOwnership: map[string]bool{"chat": true}}
	tests := []struct {
		name      string
		c         *convRec
		set       Settings
		dup       bool
		wantOwner string
		reason    Reason
	}{
		{"auto-ownership takes an unowned conversation", conv(QueueNew, ""), auto, false, "alice", ReasonAutoOwnership},
		{"auto-ownership keeps an owner", conv(QueueNew, "bob"), auto, false, "bob", ReasonReply},
		{"auto-ownership off", conv(QueueNew, ""), Settings{}, false, "", ReasonReply},
		{"other channel", func() *convRec { c := conv(QueueNew, ""); c.Channel = "email"; return c }(), auto, false, "", ReasonReply},
		{"resolved stays unowned", conv(QueueResolved, ""), auto, false, "", ReasonReply},
		{"pending unowned is taken", conv(QueuePending, ""), auto, false, "alice", ReasonAutoOwnership},
		{"repeated message", conv(QueueNew, ""), auto, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ruleReply(tt.c, alice, "m1", "on it", tt.dup, testEnv(tt.set))
			if o.conv.Owner != tt.wantOwner || o.reason != tt.reason {
				t.Errorf("got owner %q reason %q, want %q %q", o.conv.Owner, o.reason, tt.wantOwner, tt.reason)
			}
			if o.changed == tt.dup {
				t.Errorf("changed: got %v, want %v", o.changed, !tt.dup)
			}
			if o.conv.Queue != tt.c.Queue {
				t.Errorf("reply moved the conversation to %s", o.conv.Queue)
			}
		})
	}
}

func TestRuleAssign(t *testing.T) {
	tests := []struct {
		name      string
		c         *convRec
		by        Actor
		owner     string
		version   uint64
		wantErr   error
		wantOwner string
		notify    bool
		reason    Reason
	}{
		{"assign", conv(QueueNew, ""), alice, "bob", 3, nil, "bob", true, ReasonManualAssign},
		{"take it yourself: no notification", conv(QueueNew, ""), alice, "alice", 3, nil, "alice", false, ReasonManualAssign},
		{"unassign", conv(QueueNew, "bob"), alice, "", 3, nil, "", false, ReasonManualUnassign},
		{"same owner is a no-op", conv(QueueNew, "bob"), alice, "bob", 3, nil, "bob", false, ""},
		{"stale version", conv(QueueNew, ""), alice, "bob", 2, ErrConflict, "", false, ""},
		{"version is required", conv(QueueNew, ""), alice, "bob", 0, ErrConflict, "", false, ""},
		{"unknown agent", conv(QueueNew, ""), alice, "zed", 3, ErrNotFound, "", false, ""},
		{"resolved cannot be owned", conv(QueueResolved, ""), alice, "bob", 3, ErrConflict, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ruleAssign(tt.c, tt.by, tt.owner, tt.version, testEnv(Settings{}))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.conv.Owner != tt.wantOwner || (o.notify != nil) != tt.notify || o.reason != tt.reason {
				t.Errorf("got owner %q notify %v reason %q, want %q %v %q", o.conv.Owner, o.notify != nil, o.reason,
					tt.wantOwner, tt.notify, tt.reason)
			}
			if o.notify != nil && (o.notify.Agent != tt.owner || o.notify.By != tt.by) {
				t.Errorf("notification: got %+v", o.notify)
			}
		})
	}
	var stale *StaleError
	_, err := ruleAssign(conv(QueueNew, ""), alice, "bob", 2, testEnv(Settings{}))
	if !errors.As(err, &stale) || stale.Want != 2 || stale.Have != 3 {
		t.Errorf("got %v, want a StaleError want 2 have 3", err)
	}
}

func TestRuleMove(t *testing.T) {
	withDefault := Settings{DefaultBoomerang: 3600}
	noBoomerang := func(q Queue, owner string) *convRec { c := conv(q, owner); c.Boomerang = time.Time{}; return c }
	tests := []struct {
		name          string
		c             *convRec
		to            Queue
		version       uint64
		set           Settings
		wantErr       error
		wantOwner     string
		wantBoomerang time.Time
		reason        Reason
	}{
		{"resolve clears owner and boomerang", conv(QueuePending, "alice"), QueueResolved, 0, Settings{}, nil, "", time.Time{}, ReasonResolved},
		{"resolve unowned", conv(QueuePending, ""), QueueResolved, 0, Settings{}, nil, "", time.Time{}, ReasonMove},
		{"pending gets the default boomerang", noBoomerang(QueueNew, "alice"), QueuePending, 3, withDefault, nil, "alice", t0.Add(time.Hour), ReasonMove},
		{"pending keeps a set boomerang", func() *convRec { c := conv(QueueResolved, ""); c.Boomerang = t0.Add(5 * time.Hour); return c }(),
			QueuePending, 0, withDefault, nil, "", t0.Add(5 * time.Hour), ReasonMove},
		{"pending without default", noBoomerang(QueueNew, ""), QueuePending, 0, Settings{}, nil, "", time.Time{}, ReasonMove},
		{"manual move to new keeps an offline owner", conv(QueuePending, "bob"), QueueNew, 0, Settings{RemoveOwnership: true}, nil, "bob", time.Time{}, ReasonMove},
		{"same queue is a no-op", noBoomerang(QueueNew, "bob"), QueueNew, 0, Settings{}, nil, "bob", time.Time{}, ""},
		{"bad queue", conv(QueueNew, ""), "archive", 0, Settings{}, ErrInvalid, "", time.Time{}, ""},
		{"stale version", conv(QueueNew, ""), QueuePending, 9, Settings{}, ErrConflict, "", time.Time{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ruleMove(tt.c, alice, tt.to, tt.version, testEnv(tt.set))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.conv.Queue != tt.to || o.conv.Owner != tt.wantOwner || !o.conv.Boomerang.Equal(tt.wantBoomerang) || o.reason != tt.reason {
				t.Errorf("got %s owner %q boomerang %v reason %q, want %s %q %v %q", o.conv.Queue, o.conv.Owner,
					o.conv.Boomerang, o.reason, tt.to, tt.wantOwner, tt.wantBoomerang, tt.reason)
			}
		})
	}
}

func TestRuleSetBoomerang(t *testing.T) {
	later := t0.Add(15 * time.Minute)
	tests := []struct {
		name    string
		c       *convRec
		at      time.Time
		wantErr error
		changed bool
	}{
		{"set on pending", conv(QueuePending, ""), later, nil, true},
		{"set on resolved", conv(QueueResolved, ""), later, nil, true},
		{"replace", conv(QueuePending, ""), t0.Add(4 * time.Hour), nil, true},
		{"same time is a no-op", conv(QueuePending, ""), t0.Add(time.Hour), nil, false},
		{"cancel", conv(QueuePending, ""), time.Time{}, nil, true},
		{"cancel with none set", conv(QueueNew, ""), time.Time{}, nil, false},
		{"not on new", conv(QueueNew, ""), later, ErrConflict, false},
		{"not in the past", conv(QueuePending, ""), t0.Add(-time.Minute), ErrInvalid, false},
		{"not now", conv(QueuePending, ""), t0, ErrInvalid, false},
		{"a year ahead", conv(QueuePending, ""), t0.Add(MaxBoomerangAhead), nil, true},
		{"past a year ahead", conv(QueuePending, ""), t0.Add(MaxBoomerangAhead + time.Second), ErrInvalid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ruleSetBoomerang(tt.c, alice, tt.at, 0, testEnv(Settings{}))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err == nil && (o.changed != tt.changed || !o.conv.Boomerang.Equal(tt.at)) {
				t.Errorf("got changed %v boomerang %v, want %v %v", o.changed, o.conv.Boomerang, tt.changed, tt.at)
			}
		})
	}
}

func TestRuleBoomerangFires(t *testing.T) {
	on := Settings{RemoveOwnership: true}
	at := t0.Add(time.Hour)
	tests := []struct {
		name      string
		c         *convRec
		deadline  time.Time
		set       Settings
		changed   bool
		wantOwner string
	}{
		{"pending back to new, online owner kept", conv(QueuePending, "alice"), at, on, true, "alice"},
		{"offline owner removed (rule 4)", conv(QueuePending, "bob"), at, on, true, ""},
		{"offline owner kept when off", conv(QueuePending, "bob"), at, Settings{}, true, "bob"},
		{"resolved back to new", conv(QueueResolved, ""), at, on, true, ""},
		{"replaced meanwhile", conv(QueuePending, "bob"), t0.Add(time.Minute), on, false, "bob"},
		{"already in new", func() *convRec { c := conv(QueueNew, "bob"); c.Boomerang = at; return c }(), at, on, false, "bob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ruleBoomerangFires(tt.c, tt.deadline, testEnv(tt.set))
			if o.changed != tt.changed || o.conv.Owner != tt.wantOwner {
				t.Fatalf("got changed %v owner %q, want %v %q", o.changed, o.conv.Owner, tt.changed, tt.wantOwner)
			}
			if tt.changed && (o.conv.Queue != QueueNew || !o.conv.Boomerang.IsZero() || o.actor != System) {
				t.Errorf("got %s boomerang %v actor %v, want new, none, system", o.conv.Queue, o.conv.Boomerang, o.actor)
			}
			if a := ownerAudit(o); tt.changed && tt.c.Owner != tt.wantOwner && (a == nil || a.Reason != ReasonBoomerang) {
				t.Errorf("owner audit: got %+v, want reason boomerang", a)
			}
		})
	}
}

func TestSweepPredicates(t *testing.T) {
	off := t0
	mk := func(q Queue, owner string, since, enteredNew time.Time) *convRec {
		c := conv(q, owner)
		c.OwnerSince, c.enteredNew = since, enteredNew
		return c
	}
	tests := []struct {
		name                 string
		c                    *convRec
		atOffline, reconcile bool
	}{
		{"owned before, in new", mk(QueueNew, "bob", off.Add(-time.Hour), off.Add(-time.Hour)), true, true},
		{"pending is kept (rule 2)", mk(QueuePending, "bob", off.Add(-time.Hour), time.Time{}), false, false},
		{"assigned after going offline (rule 5)", mk(QueueNew, "bob", off.Add(time.Minute), off.Add(-time.Hour)), false, false},
		{"someone else's", mk(QueueNew, "alice", off.Add(-time.Hour), off.Add(-time.Hour)), false, false},
		{"moved to new by hand after", mk(QueueNew, "bob", off.Add(-time.Hour), off.Add(time.Minute)), true, false},
	}
	bobAgent := &Agent{ID: "bob", Status: StatusOffline, OfflineSince: off}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sweptAtOffline(tt.c, "bob", off); got != tt.atOffline {
				t.Errorf("sweptAtOffline: got %v, want %v", got, tt.atOffline)
			}
			if got := sweptByReconcile(tt.c, bobAgent); got != tt.reconcile {
				t.Errorf("sweptByReconcile: got %v, want %v", got, tt.reconcile)
			}
		})
	}
}

func TestRulePresence(t *testing.T) {
	online := Agent{ID: "a", Status: StatusOnline, StatusSince: t0.Add(-time.Hour)}
	grace := t0.Add(time.Minute)
	tests := []struct {
		name       string
		a          Agent
		u          PresenceUpdate
		transition bool
		changed    bool
		wantErr    bool
	}{
		{"same status is no transition", online, PresenceUpdate{Status: StatusOnline}, false, false, false},
		{"grace deadline alone is silent", online, PresenceUpdate{Status: StatusOnline, GraceDeadline: grace}, false, true, false},
		{"away", online, PresenceUpdate{Status: StatusAway, ManualAway: true, Reason: "manual_away"}, true, true, false},
		{"offline", online, PresenceUpdate{Status: StatusOffline, Reason: "logout"}, true, true, false},
		{"bad status", online, PresenceUpdate{Status: "busy"}, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, ch, changed, err := rulePresence(tt.a, tt.u, t0)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v", err)
			}
			if (ch != nil) != tt.transition || changed != tt.changed {
				t.Fatalf("got transition %v changed %v, want %v %v", ch != nil, changed, tt.transition, tt.changed)
			}
			if ch != nil && (!next.StatusSince.Equal(t0) || next.Status != tt.u.Status || ch.From != tt.a.Status) {
				t.Errorf("got %+v / %+v", next, ch)
			}
			if tt.u.Status == StatusOffline && (!next.OfflineSince.Equal(t0) || !ch.LastSeen.Equal(t0)) {
				t.Errorf("offline: got OfflineSince %v LastSeen %v, want %v", next.OfflineSince, ch.LastSeen, t0)
			}
		})
	}
	back, _, _, _ := rulePresence(Agent{Status: StatusOffline, OfflineSince: t0}, PresenceUpdate{Status: StatusOnline}, t0)
	if !back.OfflineSince.IsZero() {
		t.Errorf("OfflineSince after coming back: got %v, want zero", back.OfflineSince)
	}
}

func intp(v int) *int    { return &v }
func boolp(v bool) *bool { return &v }

func TestRuleSettings(t *testing.T) {
	tests := []struct {
		name    string
		by      Actor
		p       SettingsPatch
		wantErr string
		fields  []string
	}{
		{"agent may not", alice, SettingsPatch{OfflineGrace: intp(30)}, "forbidden", nil},
		{"offline_grace too big", admin, SettingsPatch{OfflineGrace: intp(91)}, "offline_grace: must be between 0 and 90 seconds", nil},
		{"offline_grace negative", admin, SettingsPatch{OfflineGrace: intp(-1)}, "offline_grace: must be between 0 and 90 seconds", nil},
		{"idle_away too big", admin, SettingsPatch{IdleAway: intp(86401)}, "idle_away: must be between 0 and 86400 seconds", nil},
		{"idle_logout too big", admin, SettingsPatch{IdleLogout: intp(86401)}, "idle_logout: must be between 0 and 86400 seconds", nil},
		{"default_boomerang too big", admin, SettingsPatch{DefaultBoomerang: intp(2592001)}, "default_boomerang: must be between 0 and 2592000 seconds", nil},
		{"bad channel", admin, SettingsPatch{AutoOwnership: map[string]bool{"Chat Room": true}}, "auto_ownership: channel", nil},
		{"bounds are inclusive", admin, SettingsPatch{OfflineGrace: intp(90), IdleAway: intp(0), DefaultBoomerang: intp(2592000)}, "",
			[]string{"offline_grace", "idle_away", "default_boomerang"}},
		{"unchanged fields are not logged", admin, SettingsPatch{OfflineGrace: intp(60), IdleAway: intp(600)}, "", nil},
		{"switch on", admin, SettingsPatch{RemoveOwnership: boolp(true), AutoOwnership: map[string]bool{"chat": true, "email": false}}, "",
			[]string{"remove_ownership", "auto_ownership.chat"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, log, err := ruleSettings(DefaultSettings(), tt.by, tt.p, t0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, l := range log {
				fields = append(fields, l.Field)
			}
			if strings.Join(fields, ",") != strings.Join(tt.fields, ",") {
				t.Errorf("logged fields: got %v, want %v", fields, tt.fields)
			}
			if tt.p.RemoveOwnership != nil && (!next.RemoveOwnership || !next.RemoveOwnershipSince.Equal(t0)) {
				t.Errorf("switch on: got %v since %v, want on since %v", next.RemoveOwnership, next.RemoveOwnershipSince, t0)
			}
		})
	}
	on := DefaultSettings()
	on.RemoveOwnership, on.RemoveOwnershipSince = true, t0
	off, log, _ := ruleSettings(on, admin, SettingsPatch{RemoveOwnership: boolp(false)}, t0.Add(time.Hour))
	if off.RemoveOwnership || !off.RemoveOwnershipSince.IsZero() || len(log) != 1 || log[0].Old != "true" || log[0].New != "false" {
		t.Errorf("switch off: got %+v %+v", off, log)
	}
}

func TestGroupNotifications(t *testing.T) {
	var unread []Notification
	for i, by := range []Actor{alice, bob, alice, carol, alice, bob} {
		unread = append(unread, Notification{Seq: uint64(i + 1), By: by})
	}
	g := groupNotifications(unread)
	if g.Total != 6 || len(g.Items) != 6 || g.Items[0].Seq != 6 || g.Items[5].Seq != 1 {
		t.Fatalf("got %+v, want 6 items newest first", g)
	}
	want := []NotificationCount{{alice, 3}, {bob, 2}, {carol, 1}}
	if len(g.ByWho) != 3 || g.ByWho[0] != want[0] || g.ByWho[1] != want[1] || g.ByWho[2] != want[2] {
		t.Errorf("ByWho: got %+v, want %+v", g.ByWho, want)
	}
	if empty := groupNotifications(nil); empty.Total != 0 || empty.ByWho == nil || empty.Items == nil {
		t.Errorf("empty group: got %+v, want zero with empty (not nil) lists", empty)
	}
}

func TestPreview(t *testing.T) {
	if got := preview("  hello\n\tworld  "); got != "hello world" {
		t.Errorf("got %q, want %q", got, "hello world")
	}
	long := strings.Repeat("é", 200)
	if got := preview(long); len([]rune(got)) != previewRunes+1 || !strings.HasSuffix(got, "…") {
		t.Errorf("got %d runes, want %d and an ellipsis", len([]rune(got)), previewRunes+1)
	}
}
