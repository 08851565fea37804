package queues

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// The changes. Each validates what it can without state, then sends one
// request to the committer; the request reads through the batch overlay,
// asks a rule what to do and, only if the rule accepts, writes. A request
// that fails writes nothing, so it cannot disturb the rest of its batch.

// EnsureWorkspace creates the workspace with the default settings if it
// does not exist.
func (s *Store) EnsureWorkspace(ctx context.Context, ws string) error {
	if err := ValidID("workspace", ws); err != nil {
		return err
	}
	if _, err := s.workspace(ws); err == nil {
		return nil
	}
	_, err := do(s, ctx, func(b *batch) (bool, error) {
		_, err := b.ws(ws, true)
		return err == nil, err
	})
	return err
}

// EnsureAgent creates an agent (offline until presence says otherwise) or
// updates their name and role, creating the workspace if needed. Presence
// fields of a are ignored: only ApplyPresence changes them.
func (s *Store) EnsureAgent(ctx context.Context, ws string, a Agent) (Agent, error) {
	got, _, err := s.ensureAgent(ctx, ws, a, false)
	return got, err
}

// ReasonConnected is the presence reason of an agent's first connection,
// the one ConnectAgent records (the presence tracker's "connected").
const ReasonConnected = "connected"

// ConnectAgent is EnsureAgent for an agent whose connection is opening. An
// agent the store does not know yet is created online (ReasonConnected),
// with one presence event from offline to online that carries the new
// record, instead of an agent event followed by the tracker's first
// transition: one commit and one event where a first login took two of
// each. created reports that the agent was new; the caller must then tell
// the presence tracker of the connection, which finds nothing left to
// write, or, if the connection never opens, of its connect and disconnect,
// so that the grace takes the agent offline again. A known agent is left
// as EnsureAgent leaves it.
func (s *Store) ConnectAgent(ctx context.Context, ws string, a Agent) (got Agent, created bool, err error) {
	return s.ensureAgent(ctx, ws, a, true)
}

func (s *Store) ensureAgent(ctx context.Context, ws string, a Agent, online bool) (Agent, bool, error) {
	if err := ValidID("workspace", ws); err != nil {
		return Agent{}, false, err
	}
	if err := ValidID("agent", a.ID); err != nil {
		return Agent{}, false, err
	}
	if a.Role != RoleAgent && a.Role != RoleAdmin {
		return Agent{}, false, invalid("role", "must be agent or admin")
	}
	if a.Name == "" {
		a.Name = a.ID
	}
	if len(a.Name) > 128 {
		return Agent{}, false, invalid("name", "must be at most 128 bytes")
	}
	// Every connection ensures its agent: answer the common case, nothing
	// to change, without a commit.
	if got, err := s.Agent(ws, a.ID); err == nil && got.Name == a.Name && got.Role == a.Role {
		return got, false, nil
	}
	type result struct {
		a       Agent
		created bool
	}
	r, err := do(s, ctx, func(b *batch) (result, error) {
		t, err := b.ws(ws, true)
		if err != nil {
			return result{}, err
		}
		prev, ok := t.agent(a.ID)
		if ok && prev.Name == a.Name && prev.Role == a.Role {
			return result{a: *prev}, nil
		}
		now := t.b.s.now()
		var next Agent
		switch {
		case ok:
			next = *prev
			next.Name, next.Role = a.Name, a.Role
		case online:
			next = Agent{ID: a.ID, Name: a.Name, Role: a.Role, Status: StatusOnline,
				StatusReason: ReasonConnected, StatusSince: now}
		default:
			next = Agent{ID: a.ID, Name: a.Name, Role: a.Role, Status: StatusOffline,
				StatusSince: now, OfflineSince: now}
		}
		t.putAgent(prev, &next)
		rec := next
		if !ok && online {
			ch := &PresenceChange{Agent: a.ID, From: StatusOffline, To: StatusOnline, Reason: ReasonConnected}
			t.emit(Event{Kind: EventPresence, At: now, Actor: System, Reason: ReasonConnected, Presence: ch, Agent: &rec})
		} else {
			t.emit(Event{Kind: EventAgent, Actor: System, Agent: &rec})
		}
		return result{a: next, created: !ok}, nil
	})
	return r.a, r.created, err
}

// Inbound delivers a customer message, creating the conversation (and the
// workspace) on the first one. A repeated MessageID changes nothing.
func (s *Store) Inbound(ctx context.Context, ws string, in Inbound) (Result, error) {
	if err := ValidID("workspace", ws); err != nil {
		return Result{}, err
	}
	if err := ValidID("conversation", in.Conversation); err != nil {
		return Result{}, err
	}
	if err := validMessageID(in.MessageID); err != nil {
		return Result{}, err
	}
	return do(s, ctx, func(b *batch) (Result, error) {
		var c *convRec
		t, err := b.ws(ws, false)
		if err == nil {
			c = t.conv(in.Conversation)
		}
		if c == nil {
			// Check before creating the workspace, so a bad first
			// inbound leaves nothing behind.
			if err := checkNewInbound(in); err != nil {
				return Result{}, err
			}
		}
		if t == nil {
			if t, err = b.ws(ws, true); err != nil {
				return Result{}, err
			}
		}
		dup := false
		if c != nil {
			if dup, err = t.hasMessage(c.ID, in.MessageID); err != nil {
				return Result{}, err
			}
		}
		o, err := ruleInbound(c, in, dup, t.env())
		if err != nil {
			return Result{}, err
		}
		return t.apply(c, o), nil
	})
}

// conversation is the batch's view of one conversation, or ErrNotFound.
func (b *batch) conversation(ws, id string) (*wsTx, *convRec, error) {
	t, err := b.ws(ws, false)
	if err != nil {
		return nil, nil, err
	}
	c := t.conv(id)
	if c == nil {
		return nil, nil, fmt.Errorf("conversation %s: %w", id, ErrNotFound)
	}
	return t, c, nil
}

// Reply records an agent's reply. It may give the conversation to the
// replier (Auto-Ownership); it never moves it.
func (s *Store) Reply(ctx context.Context, ws string, by Actor, conv, messageID, text string) (Result, error) {
	if err := validMessageID(messageID); err != nil {
		return Result{}, err
	}
	return do(s, ctx, func(b *batch) (Result, error) {
		t, c, err := b.conversation(ws, conv)
		if err != nil {
			return Result{}, err
		}
		if _, ok := t.agent(by.ID); !ok {
			return Result{}, fmt.Errorf("agent %s: %w", by.ID, ErrNotFound)
		}
		dup, err := t.hasMessage(c.ID, messageID)
		if err != nil {
			return Result{}, err
		}
		return t.apply(c, ruleReply(c, by, messageID, text, dup, t.env())), nil
	})
}

// Assign sets (owner != "") or clears the owner. version must be the
// conversation's current version, else *StaleError.
func (s *Store) Assign(ctx context.Context, ws string, by Actor, conv, owner string, version uint64) (Result, error) {
	return do(s, ctx, func(b *batch) (Result, error) {
		t, c, err := b.conversation(ws, conv)
		if err != nil {
			return Result{}, err
		}
		o, err := ruleAssign(c, by, owner, version, t.env())
		if err != nil {
			return Result{}, err
		}
		return t.apply(c, o), nil
	})
}

// Move moves a conversation to another queue (version 0: whatever it is).
func (s *Store) Move(ctx context.Context, ws string, by Actor, conv string, to Queue, version uint64) (Result, error) {
	return do(s, ctx, func(b *batch) (Result, error) {
		t, c, err := b.conversation(ws, conv)
		if err != nil {
			return Result{}, err
		}
		o, err := ruleMove(c, by, to, version, t.env())
		if err != nil {
			return Result{}, err
		}
		return t.apply(c, o), nil
	})
}

// SetBoomerang sets (at in the future) or cancels (zero at) the boomerang
// of a pending or resolved conversation (version 0: whatever it is).
func (s *Store) SetBoomerang(ctx context.Context, ws string, by Actor, conv string, at time.Time, version uint64) (Result, error) {
	at = normTime(at)
	return do(s, ctx, func(b *batch) (Result, error) {
		t, c, err := b.conversation(ws, conv)
		if err != nil {
			return Result{}, err
		}
		o, err := ruleSetBoomerang(c, by, at, version, t.env())
		if err != nil {
			return Result{}, err
		}
		return t.apply(c, o), nil
	})
}

// ReleaseOffline is the admin's "release offline agents' conversations
// now" (rule 6): every new conversation owned by an offline agent becomes
// unowned, whenever they went offline. It returns how many.
func (s *Store) ReleaseOffline(ctx context.Context, ws string, by Actor) (int, error) {
	if by.Role != RoleAdmin {
		return 0, fmt.Errorf("releasing offline agents' conversations needs an admin: %w", ErrForbidden)
	}
	return do(s, ctx, func(b *batch) (int, error) {
		t, err := b.ws(ws, false)
		if err != nil {
			return 0, err
		}
		env := t.env()
		n := 0
		for _, id := range t.agentIDs() {
			if a, _ := t.agent(id); a.Status != StatusOffline {
				continue
			}
			for _, c := range t.ownedNew(id) {
				t.apply(c, ruleUnown(c, by, ReasonAdminRelease, env))
				n++
			}
		}
		t.adminLog(AdminLogEntry{At: env.now, Actor: by, Field: "release_offline", New: strconv.Itoa(n)})
		return n, nil
	})
}

// UpdateSettings applies an admin's patch, logs every changed field in the
// admin log and emits the new settings.
func (s *Store) UpdateSettings(ctx context.Context, ws string, by Actor, patch SettingsPatch) (Settings, error) {
	return do(s, ctx, func(b *batch) (Settings, error) {
		t, err := b.ws(ws, false)
		if err != nil {
			return Settings{}, err
		}
		now := b.s.now()
		next, log, err := ruleSettings(t.rec.Settings, by, patch, now)
		if err != nil {
			return Settings{}, err
		}
		if len(log) == 0 {
			return cloneSettings(t.rec.Settings), nil
		}
		t.rec.Settings = next
		t.dirtyRec()
		for _, l := range log {
			t.adminLog(l)
		}
		ev := cloneSettings(next)
		t.emit(Event{Kind: EventSettings, At: now, Actor: by, Settings: &ev})
		return cloneSettings(next), nil
	})
}

// MarkNotificationsRead marks read every unread notification of agent with
// Seq <= upTo (0: all) and returns how many. Nobody else is told: the
// notification list is the agent's own.
func (s *Store) MarkNotificationsRead(ctx context.Context, ws, agent string, upTo uint64) (int, error) {
	return do(s, ctx, func(b *batch) (int, error) {
		t, err := b.ws(ws, false)
		if err != nil {
			return 0, err
		}
		if _, ok := t.agent(agent); !ok {
			return 0, fmt.Errorf("agent %s: %w", agent, ErrNotFound)
		}
		if upTo == 0 {
			upTo = t.rec.NotifSeq
		}
		already := t.readUpTo[agent]
		var unread []Notification
		if t.w != nil {
			unread = t.w.unread[agent]
		}
		n := 0
		for _, list := range [][]Notification{unread, t.notifAdd} {
			for _, x := range list {
				if x.Agent == agent && x.Seq <= upTo && x.Seq > already {
					t.b.del(notificationKey(ws, agent, x.Seq))
					n++
				}
			}
		}
		if upTo > already {
			if t.readUpTo == nil {
				t.readUpTo = map[string]uint64{}
			}
			t.readUpTo[agent] = upTo
		}
		return n, nil
	})
}

// ApplyPresence commits an agent's presence (level-based: the status they
// already have is no transition). A transition is broadcast; a transition to
// offline with Remove Ownership on unowns, in the same commit, the agent's
// new conversations they owned at that moment (rules 1, 2, 5, 7).
func (s *Store) ApplyPresence(ctx context.Context, ws string, u PresenceUpdate) (Agent, error) {
	return do(s, ctx, func(b *batch) (Agent, error) {
		t, err := b.ws(ws, false)
		if err != nil {
			return Agent{}, err
		}
		a, _, err := t.presence(u)
		return a, err
	})
}

// presence applies u and returns the agent after it and whether anything
// changed.
func (t *wsTx) presence(u PresenceUpdate) (Agent, bool, error) {
	prev, ok := t.agent(u.Agent)
	if !ok {
		return Agent{}, false, fmt.Errorf("agent %s: %w", u.Agent, ErrNotFound)
	}
	now := t.b.s.now()
	u.GraceDeadline = normTime(u.GraceDeadline)
	u.LastSeen = normTime(u.LastSeen)
	next, ch, changed, err := rulePresence(*prev, u, now)
	if err != nil || !changed {
		return *prev, false, err
	}
	a := &next
	t.putAgent(prev, a)
	if ch == nil {
		return next, true, nil
	}
	rec := next
	t.emit(Event{Kind: EventPresence, At: now, Actor: System, Reason: Reason(u.Reason), Presence: ch, Agent: &rec})
	if ch.To == StatusOffline && t.rec.Settings.RemoveOwnership {
		env := t.env()
		for _, c := range t.ownedNew(a.ID) {
			if sweptAtOffline(c, a.ID, now) {
				t.apply(c, ruleUnown(c, System, ReasonLogout, env))
			}
		}
	}
	return next, true, nil
}
