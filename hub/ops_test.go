package hub

import (
	"testing"
	"time"

	"github.com/presencehub/presencehub/queues"
)

func TestAdminOpsForbiddenForAgents(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	e.connect("acme", "bea")
	ops := []struct {
		op     string
		fields map[string]any
	}{
		{"update_settings", map[string]any{"settings": map[string]any{"remove_ownership": true}}},
		{"release_offline", nil},
		{"force_offline", map[string]any{"agent": "bea"}},
		{"admin_log", nil},
	}
	for _, o := range ops {
		al.fails(o.op, o.fields, codeForbidden)
	}
	if got := e.obs.rejections(RejectRole); got != len(ops) {
		t.Errorf("role rejections: got %d, want %d", got, len(ops))
	}
	if s, _ := e.store.Settings("acme"); s.RemoveOwnership {
		t.Errorf("an agent changed the settings")
	}
	if got := e.agentStatus("acme", "bea"); got == queues.StatusOffline {
		t.Errorf("an agent forced bea offline")
	}
}

func TestAdminOps(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	admin := e.connect("acme", "admin1")
	al := e.connect("acme", "al")

	var s settingsResult
	admin.ok("update_settings", map[string]any{"settings": map[string]any{
		"remove_ownership": true, "auto_ownership": map[string]bool{"chat": true},
	}}, &s)
	if !s.Settings.RemoveOwnership || !s.Settings.AutoOwnership["chat"] {
		t.Errorf("settings: got %+v", s.Settings)
	}
	ev := al.waitEvent("settings pushed", func(ev eventMsg) bool { return ev.Kind == queues.EventSettings && ev.Settings.RemoveOwnership })
	if ev.Actor.ID != "admin1" {
		t.Errorf("settings actor: got %+v, want admin1", ev.Actor)
	}
	admin.fails("update_settings", map[string]any{"settings": map[string]any{"offline_grace": 9999}}, codeInvalid)

	var log entriesResult
	admin.ok("admin_log", map[string]any{"limit": 10}, &log)
	if len(log.Entries) == 0 {
		t.Errorf("admin log: got no entries")
	}
	var rel releasedResult
	admin.ok("release_offline", nil, &rel)
	if rel.Released != 0 {
		t.Errorf("released: got %d, want 0", rel.Released)
	}
	// The next hello lists the Auto-Ownership channel.
	if h := e.connect("acme", "bea").hello(); len(h.Channels) != 1 || h.Channels[0] != "chat" {
		t.Errorf("channels: got %v, want [chat]", h.Channels)
	}
}

func TestConversationOps(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	c := e.inbound("acme", "c1", "email")
	al := e.connect("acme", "al")

	var page queues.Page
	al.ok("page", map[string]any{"queue": "new", "filter": map[string]any{"kind": "unowned"}}, &page)
	if len(page.Items) != 1 || page.Items[0].ID != "c1" || page.Counts.Unowned != 1 {
		t.Fatalf("page: got %+v", page)
	}
	var res convResult
	al.ok("reply", map[string]any{"conv": "c1", "text": "on it"}, &res)
	al.ok("assign", map[string]any{"conv": "c1", "agent": "al", "version": res.Conv.Version}, &res)
	// A change made against an old version conflicts.
	al.fails("unassign", map[string]any{"conv": "c1", "version": c.Version}, codeConflict)
	// An ownership change without the version its sender saw names the field.
	al.fails("unassign", map[string]any{"conv": "c1"}, codeInvalid)
	al.fails("assign", map[string]any{"conv": "c1", "agent": "al"}, codeInvalid)
	al.ok("move", map[string]any{"conv": "c1", "queue": "pending"}, &res)
	al.ok("boomerang", map[string]any{"conv": "c1", "preset": "1h"}, &res)
	if d := time.Until(res.Conv.Boomerang); d < 59*time.Minute || d > time.Hour {
		t.Errorf("boomerang in %v, want an hour", d)
	}
	al.ok("boomerang", map[string]any{"conv": "c1", "in": 90}, &res)
	res = convResult{} // an absent boomerang leaves the old value in place
	al.ok("cancel_boomerang", map[string]any{"conv": "c1"}, &res)
	if !res.Conv.Boomerang.IsZero() {
		t.Errorf("boomerang after cancel: got %v", res.Conv.Boomerang)
	}
	var conv conversationResult
	al.ok("conversation", map[string]any{"conv": "c1"}, &conv)
	if conv.Conv.Queue != queues.QueuePending || len(conv.Messages) != 2 || len(conv.History) < 2 {
		t.Errorf("conversation: got queue %s, %d messages, %d history entries", conv.Conv.Queue, len(conv.Messages), len(conv.History))
	}
	var hist historyResult
	al.ok("history", map[string]any{"conv": "c1"}, &hist)
	if len(hist.History) != len(conv.History) {
		t.Errorf("history: got %d entries, want %d", len(hist.History), len(conv.History))
	}
	al.fails("history", map[string]any{"conv": "nope"}, codeNotFound)
	al.fails("assign", map[string]any{"conv": "c1", "agent": "ghost", "version": res.Conv.Version}, codeNotFound)
}

func TestStatusAway(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	bea := e.connect("acme", "bea")
	bea.ok("status", map[string]any{"status": "away"}, nil)
	ev := al.waitEvent("bea away", isPresence("bea", queues.StatusAway))
	if !ev.Agent.ManualAway {
		t.Errorf("bea's record: got %+v, want manual away", ev.Agent)
	}
	bea.ok("status", map[string]any{"status": "available"}, nil)
	al.waitEvent("bea available", func(ev eventMsg) bool {
		return isPresence("bea", queues.StatusOnline)(ev) && ev.Presence.From == queues.StatusAway
	})
}

func TestUnsubscribeStopsEvents(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	al.ok("subscribe", map[string]any{"view": "v", "queue": "new"}, nil)
	e.inbound("acme", "c1", "email")
	al.waitEvent("c1 created", isConv("c1"))
	al.ok("unsubscribe", map[string]any{"view": "v"}, nil)
	e.inbound("acme", "c2", "email")
	never(t, 300*time.Millisecond, func() bool { return len(al.events(isConv("c2"))) > 0 },
		"an event arrived for an unsubscribed view")
	for i := range maxViews {
		al.ok("subscribe", map[string]any{"view": string(rune('a' + i)), "queue": "new"}, nil)
	}
	al.fails("subscribe", map[string]any{"view": "one-too-many", "queue": "new"}, codeInvalid)
	al.ok("subscribe", map[string]any{"view": "a", "queue": "pending"}, nil) // replaces a view
}

// TestPingIsNotActivity: a client's heartbeat keeps the socket busy but is
// not the agent doing anything, so automatic away still comes; a real
// request ends it.
func TestPingIsNotActivity(t *testing.T) {
	e := newEnv(t)
	idle := 1
	e.workspace("acme", queues.SettingsPatch{IdleAway: &idle})
	bea := e.connect("acme", "bea")
	al := e.connect("acme", "al")
	deadline := time.Now().Add(activityEvery + 2*time.Second)
	for time.Now().Before(deadline) {
		al.ok("ping", nil, nil)
		time.Sleep(200 * time.Millisecond) // pacing the heartbeat, not waiting for a result
	}
	bea.waitEvent("al idle away despite pings", func(ev eventMsg) bool {
		return ev.Kind == queues.EventPresence && ev.Presence.Agent == "al" && ev.Presence.To == queues.StatusAway
	})
	al.ok("activity", nil, nil)
	bea.waitEvent("al back online after activity", func(ev eventMsg) bool {
		return ev.Kind == queues.EventPresence && ev.Presence.Agent == "al" &&
			ev.Presence.From == queues.StatusAway && ev.Presence.To == queues.StatusOnline
	})
}
