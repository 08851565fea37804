package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/presence"
	"github.com/presencehub/presencehub/queues"
)

type recordingPublisher struct {
	mu     sync.Mutex
	events map[string][]queues.PresenceChange // by agent, in publish order
}

func (r *recordingPublisher) Publish(ws string, events []queues.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range events {
		if ev.Kind == queues.EventPresence {
			r.events[ev.Presence.Agent] = append(r.events[ev.Presence.Agent], *ev.Presence)
		}
	}
}

func (r *recordingPublisher) of(agent string) []queues.PresenceChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]queues.PresenceChange(nil), r.events[agent]...)
}

type nopCloser struct{}

func (nopCloser) CloseAgent(string, string, websocket.StatusCode, string) {}

// TestPresenceSinkKeepsEachAgentsOrder pushes interleaved updates for many
// agents, as the tracker would during a burst of logins and tab closes, and
// checks every agent's transitions were committed in the order pushed.
// The store records a new agent's first connection with the reason the
// tracker gives it: the two must say the same, for the events, the audit
// and the metrics' reason label.
func TestFirstConnectReasonIsTheTrackers(t *testing.T) {
	if string(presence.ReasonConnected) != queues.ReasonConnected {
		t.Errorf("queues.ReasonConnected %q, presence.ReasonConnected %q", queues.ReasonConnected, presence.ReasonConnected)
	}
}

func TestPresenceSinkKeepsEachAgentsOrder(t *testing.T) {
	store, err := queues.Open(queues.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rec := &recordingPublisher{events: map[string][]queues.PresenceChange{}}
	store.SetPublisher(rec)
	ctx := context.Background()
	const agents = 200
	for i := range agents {
		if _, err := store.EnsureAgent(ctx, "acme", queues.Agent{ID: fmt.Sprintf("a%d", i), Role: queues.RoleAgent}); err != nil {
			t.Fatal(err)
		}
	}

	sink := newPresenceSink(store, nopCloser{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { sink.run(runCtx); close(done) }() // ends when runCtx is cancelled and the queue drained

	// Each agent: online, away, online, offline; pushed round-robin so
	// agents interleave as they would in the tracker's stream.
	steps := []struct {
		status presence.Status
		reason presence.Reason
	}{
		{presence.Online, presence.ReasonConnected},
		{presence.Away, presence.ReasonManualAway},
		{presence.Online, presence.ReasonAvailable},
		{presence.Offline, presence.ReasonLogout},
	}
	prev := presence.Offline
	for _, st := range steps {
		for i := range agents {
			sink.push(presence.Update{
				Key:    presence.Key{Workspace: "acme", Agent: fmt.Sprintf("a%d", i)},
				Status: st.status, Prev: prev, Reason: st.reason, At: time.Now(), LastSeen: time.Now(),
			})
		}
		prev = st.status
	}

	deadline := time.Now().Add(20 * time.Second)
	for i := range agents {
		id := fmt.Sprintf("a%d", i)
		for len(rec.of(id)) < len(steps) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		got := rec.of(id)
		if len(got) != len(steps) {
			t.Fatalf("agent %s: got %d transitions, want %d: %+v", id, len(got), len(steps), got)
		}
		for j, st := range steps {
			if got[j].To != queues.Status(st.status) || got[j].Reason != string(st.reason) {
				t.Fatalf("agent %s transition %d: got %s (%s), want %s (%s)", id, j, got[j].To, got[j].Reason, st.status, st.reason)
			}
		}
	}
	stop()
	<-done
}
