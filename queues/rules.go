package queues

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The rules of DOMAIN.md as plain functions: given a conversation (or an
// agent, or the settings), the operation and what the rule may know about
// the workspace (ruleEnv), they return the new state, the audit entries and
// what the event should say. They touch no store, no clock and no lock, so
// they are tested row by row; the committer applies what they return.

// convRec is a conversation as the store keeps it: the public record plus
// what only the store needs.
type convRec struct {
	Conversation
	// enteredNew is when the conversation last entered new. Reconciliation
	// uses it to tell a conversation that sat in new when its owner went
	// offline (rule 1: sweep) from one moved back to new by hand later
	// (kept: a deliberate move is not an inbound).
	enteredNew time.Time
	// messages counts the conversation's messages; it orders Messages, whose
	// keys are the dedupe ids.
	messages uint64
}

// ruleEnv is what a rule may know besides its subject.
type ruleEnv struct {
	now      time.Time
	settings *Settings
	// agent resolves an agent id as committed so far (including earlier
	// requests of the same batch).
	agent func(id string) (*Agent, bool)
}

// name is the agent's display name for audit entries, resolved when the
// entry is written so renames never rewrite history.
func (env *ruleEnv) name(id string) string {
	if id == "" || env.agent == nil {
		return ""
	}
	if a, ok := env.agent(id); ok {
		return a.Name
	}
	return ""
}

// offline reports whether id's committed presence is offline. An agent the
// store does not know counts as offline: nobody can be online as them.
func (env *ruleEnv) offline(id string) bool {
	a, ok := env.agent(id)
	return !ok || a.Status == StatusOffline
}

// outcome is what a rule decided for one conversation.
type outcome struct {
	conv    convRec
	changed bool
	reason  Reason // the event's reason
	actor   Actor  // the event's actor
	audits  []AuditEntry
	notify  *Notification // Seq is assigned by the committer
	msg     *Message
}

// Event reasons beyond the audit trail's: a reply, and setting or cancelling
// a boomerang, change a conversation without moving it or its owner.
const (
	ReasonReply        Reason = "reply"
	ReasonBoomerangSet Reason = "boomerang_set"
)

// serviceActor is the helpdesk backend delivering inbound messages.
var serviceActor = Actor{Role: RoleService}

const previewRunes = 120

// preview is the start of a message for queue lists, on one line.
func preview(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(text) <= previewRunes {
		return text
	}
	r := []rune(text)
	return string(r[:previewRunes]) + "…"
}

func (o *outcome) setOwner(to string, by Actor, why Reason, env *ruleEnv) {
	from := o.conv.Owner
	if from == to {
		return
	}
	o.conv.Owner = to
	o.conv.OwnerSince = time.Time{}
	if to != "" {
		o.conv.OwnerSince = env.now
	}
	o.audits = append(o.audits, AuditEntry{
		At: env.now, Kind: AuditOwner,
		From: from, FromName: env.name(from),
		To: to, ToName: env.name(to),
		Actor: by, Reason: why,
	})
	o.changed = true
}

// setQueue moves the conversation. Entering new or resolved cancels the
// boomerang: there is nothing left for it to bring back, and a resolved
// conversation gets a fresh one only if someone sets it.
func (o *outcome) setQueue(to Queue, by Actor, why Reason, env *ruleEnv) {
	from := o.conv.Queue
	if from == to {
		return
	}
	o.conv.Queue = to
	if to == QueueNew {
		o.conv.enteredNew = env.now
	}
	if to == QueueNew || to == QueueResolved {
		o.conv.Boomerang = time.Time{}
	}
	o.audits = append(o.audits, AuditEntry{
		At: env.now, Kind: AuditQueue, From: string(from), To: string(to), Actor: by, Reason: why,
	})
	o.changed = true
}

// finish bumps the version once per committed change.
func (o *outcome) finish(why Reason, by Actor) outcome {
	if o.changed {
		o.conv.Version++
		o.reason = why
		o.actor = by
	}
	return *o
}

func checkVersion(c *convRec, version uint64, required bool) error {
	if (required || version != 0) && version != c.Version {
		return &StaleError{Conversation: c.ID, Want: version, Have: c.Version}
	}
	return nil
}

// ruleInbound: a customer message. c is nil when the conversation does not
// exist yet; dup is true when the message id was already delivered.
func ruleInbound(c *convRec, in Inbound, dup bool, env *ruleEnv) (outcome, error) {
	msg := &Message{ID: in.MessageID, At: env.now, From: serviceActor, Text: in.Text, Inbound: true}
	if c == nil {
		if err := checkNewInbound(in); err != nil {
			return outcome{}, err
		}
		o := outcome{conv: convRec{
			Conversation: Conversation{
				ID: in.Conversation, Channel: in.Channel, Customer: in.Customer, Subject: in.Subject,
				Queue: QueueNew, CreatedAt: env.now, LastActivity: env.now, Preview: preview(in.Text),
			},
			enteredNew: env.now,
			messages:   1,
		}, msg: msg, changed: true}
		o.audits = append(o.audits, AuditEntry{At: env.now, Kind: AuditQueue, To: string(QueueNew),
			Actor: serviceActor, Reason: ReasonCreated})
		return o.finish(ReasonCreated, serviceActor), nil
	}
	o := outcome{conv: *c}
	if dup {
		return o, nil
	}
	o.msg = msg
	o.conv.messages++
	o.conv.LastActivity = env.now
	o.conv.Preview = preview(in.Text)
	o.changed = true
	if o.conv.Queue != QueueNew {
		o.setQueue(QueueNew, serviceActor, ReasonInbound, env)
		// Rule 3: back in new while the owner is offline, the owner goes
		// in the same step.
		if env.settings.RemoveOwnership && o.conv.Owner != "" && env.offline(o.conv.Owner) {
			o.setOwner("", System, ReasonInbound, env)
		}
	}
	return o.finish(ReasonInbound, serviceActor), nil
}

// checkNewInbound checks what the first inbound of a conversation must
// carry.
func checkNewInbound(in Inbound) error {
	if in.Channel == "" {
		return invalid("channel", "required for a new conversation")
	}
	if err := validChannel("channel", in.Channel); err != nil {
		return err
	}
	if in.Customer == "" {
		return invalid("customer", "required for a new conversation")
	}
	return nil
}

// ruleReply: an agent's reply. It moves nothing (docs/design.md); on an
// unowned new or pending conversation of an Auto-Ownership channel the
// replier becomes the owner. Resolved conversations stay unowned.
func ruleReply(c *convRec, by Actor, messageID, text string, dup bool, env *ruleEnv) outcome {
	o := outcome{conv: *c}
	if dup {
		return o
	}
	o.msg = &Message{ID: messageID, At: env.now, From: by, Text: text}
	o.conv.messages++
	o.conv.LastActivity = env.now
	o.conv.Preview = preview(text)
	o.changed = true
	why := ReasonReply
	if o.conv.Owner == "" && o.conv.Queue != QueueResolved && env.settings.AutoOwnership[o.conv.Channel] {
		o.setOwner(by.ID, by, ReasonAutoOwnership, env)
		why = ReasonAutoOwnership
	}
	return o.finish(why, by)
}

// ruleAssign: the ownership dropdown. version must be the current one.
func ruleAssign(c *convRec, by Actor, owner string, version uint64, env *ruleEnv) (outcome, error) {
	if err := checkVersion(c, version, true); err != nil {
		return outcome{}, err
	}
	if owner != "" {
		if _, ok := env.agent(owner); !ok {
			return outcome{}, fmt.Errorf("agent %s: %w", owner, ErrNotFound)
		}
		if c.Queue == QueueResolved {
			return outcome{}, fmt.Errorf("%w: a resolved conversation has no owner; move it first", ErrConflict)
		}
	}
	o := outcome{conv: *c}
	why := ReasonManualAssign
	if owner == "" {
		why = ReasonManualUnassign
	}
	o.setOwner(owner, by, why, env)
	if o.changed && owner != "" && owner != by.ID {
		o.notify = &Notification{At: env.now, Agent: owner, Conversation: c.ID,
			Customer: c.Customer, Subject: c.Subject, By: by}
	}
	return o.finish(why, by), nil
}

// ruleMove: a manual queue move. Resolving removes the owner; moving to
// pending arms the default boomerang unless one is set. A manual move to new
// keeps an offline owner: rule 3 is about inbound messages.
func ruleMove(c *convRec, by Actor, to Queue, version uint64, env *ruleEnv) (outcome, error) {
	if !to.Valid() {
		return outcome{}, invalid("queue", "must be new, pending or resolved")
	}
	if err := checkVersion(c, version, false); err != nil {
		return outcome{}, err
	}
	o := outcome{conv: *c}
	o.setQueue(to, by, ReasonMove, env)
	why := ReasonMove
	switch to {
	case QueueResolved:
		if o.conv.Owner != "" {
			o.setOwner("", by, ReasonResolved, env)
			why = ReasonResolved
		}
	case QueuePending:
		if o.changed && o.conv.Boomerang.IsZero() && env.settings.DefaultBoomerang > 0 {
			o.conv.Boomerang = env.now.Add(time.Duration(env.settings.DefaultBoomerang) * time.Second)
		}
	}
	return o.finish(why, by), nil
}

// MaxBoomerangAhead is how far ahead a boomerang may be set: a year, far
// past the presets (15 min to 24 h) and the longest default (30 days).
// The hub checks relative boomerangs against it too, so both say the same.
const MaxBoomerangAhead = 365 * 24 * time.Hour

// ruleSetBoomerang sets (at in the future) or cancels (zero at) a boomerang
// on a pending or resolved conversation; a new one replaces the old.
func ruleSetBoomerang(c *convRec, by Actor, at time.Time, version uint64, env *ruleEnv) (outcome, error) {
	if err := checkVersion(c, version, false); err != nil {
		return outcome{}, err
	}
	o := outcome{conv: *c}
	if at.IsZero() {
		if c.Boomerang.IsZero() {
			return o, nil
		}
	} else {
		if !at.After(env.now) {
			return outcome{}, invalid("at", "must be in the future")
		}
		// A bound keeps every deadline inside what keys and records
		// store exactly (nanoseconds since 1970 in 64 bits end in 2262).
		if at.After(env.now.Add(MaxBoomerangAhead)) {
			return outcome{}, invalid("at", "must be at most 365 days ahead")
		}
		if c.Queue == QueueNew {
			return outcome{}, fmt.Errorf("%w: a boomerang needs a pending or resolved conversation", ErrConflict)
		}
	}
	if c.Boomerang.Equal(at) {
		return o, nil
	}
	o.conv.Boomerang = at
	o.changed = true
	return o.finish(ReasonBoomerangSet, by), nil
}

// ruleBoomerangFires: the timer armed for deadline is due. It does nothing
// when the boomerang was cancelled or replaced meanwhile, or the
// conversation is already back in new.
func ruleBoomerangFires(c *convRec, deadline time.Time, env *ruleEnv) outcome {
	o := outcome{conv: *c}
	if !c.Boomerang.Equal(deadline) || c.Queue == QueueNew {
		return o
	}
	o.setQueue(QueueNew, System, ReasonBoomerang, env)
	// Rule 4: a boomerang that fires while the owner is offline unowns.
	if env.settings.RemoveOwnership && o.conv.Owner != "" && env.offline(o.conv.Owner) {
		o.setOwner("", System, ReasonBoomerang, env)
	}
	return o.finish(ReasonBoomerang, System)
}

// ruleUnown removes the owner for a sweep (logout, admin_release).
func ruleUnown(c *convRec, by Actor, why Reason, env *ruleEnv) outcome {
	o := outcome{conv: *c}
	o.setOwner("", by, why, env)
	return o.finish(why, by)
}

// sweptAtOffline reports whether rule 1 unowns c when agent goes offline at
// offlineAt: it is in new, theirs, and was theirs before that moment (rule
// 5: a conversation given to an agent already offline stays theirs).
func sweptAtOffline(c *convRec, agent string, offlineAt time.Time) bool {
	return c.Queue == QueueNew && c.Owner == agent && !c.OwnerSince.After(offlineAt)
}

// sweptByReconcile is the reconciliation's version of rule 1 for an agent
// already offline: c was in new and theirs before they went offline, so the
// sweep at their transition should have unowned it.
func sweptByReconcile(c *convRec, a *Agent) bool {
	return c.Queue == QueueNew && c.Owner == a.ID &&
		c.OwnerSince.Before(a.OfflineSince) && !c.enteredNew.After(a.OfflineSince)
}

// rulePresence applies a level-based presence update. It returns the new
// record, the transition (nil if the status did not change) and whether the
// record changed at all (a grace deadline alone is stored silently: a
// reconnect inside the grace is invisible).
func rulePresence(a Agent, u PresenceUpdate, now time.Time) (Agent, *PresenceChange, bool, error) {
	switch u.Status {
	case StatusOnline, StatusAway, StatusOffline:
	default:
		return a, nil, false, invalid("status", "must be online, away or offline")
	}
	next := a
	next.ManualAway = u.ManualAway
	next.GraceDeadline = u.GraceDeadline
	var ch *PresenceChange
	if u.Status != a.Status {
		ch = &PresenceChange{Agent: a.ID, From: a.Status, To: u.Status, Reason: u.Reason}
		next.Status = u.Status
		next.StatusReason = u.Reason
		next.StatusSince = now
		next.OfflineSince = time.Time{}
		if u.Status == StatusOffline {
			next.OfflineSince = now
			ch.LastSeen = u.LastSeen
			if ch.LastSeen.IsZero() {
				ch.LastSeen = now
			}
		}
	}
	if next.Status == StatusOffline {
		// No grace runs for an agent already offline.
		next.GraceDeadline = time.Time{}
	}
	return next, ch, next != a, nil
}

// Settings bounds, in seconds.
const (
	maxOfflineGrace     = 90
	maxIdle             = 86400
	maxDefaultBoomerang = 30 * 86400
)

// DefaultSettings are a new workspace's settings (DOMAIN.md).
func DefaultSettings() Settings {
	return Settings{OfflineGrace: 60, IdleAway: 600, AutoOwnership: map[string]bool{}}
}

// validChannel: channel names are 1 to 64 lower-case letters, digits, '-'
// or '_' ("email", "chat", "twitter").
func validChannel(field, s string) error {
	ok := s != "" && len(s) <= 64
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if !ok {
		return invalid(field, "channel %q: must be 1 to 64 lower-case letters, digits, '-' or '_'", s)
	}
	return nil
}

// ruleSettings applies an admin's patch: every field is checked before any
// is applied, and each changed field becomes one admin log entry.
func ruleSettings(old Settings, by Actor, p SettingsPatch, now time.Time) (Settings, []AdminLogEntry, error) {
	if by.Role != RoleAdmin {
		return old, nil, fmt.Errorf("changing settings needs an admin: %w", ErrForbidden)
	}
	bounds := []struct {
		field string
		v     *int
		max   int
	}{
		{"offline_grace", p.OfflineGrace, maxOfflineGrace},
		{"idle_away", p.IdleAway, maxIdle},
		{"idle_logout", p.IdleLogout, maxIdle},
		{"default_boomerang", p.DefaultBoomerang, maxDefaultBoomerang},
	}
	for _, b := range bounds {
		if b.v != nil && (*b.v < 0 || *b.v > b.max) {
			return old, nil, invalid(b.field, "must be between 0 and %d seconds", b.max)
		}
	}
	chans := make([]string, 0, len(p.AutoOwnership))
	for c := range p.AutoOwnership {
		if err := validChannel("auto_ownership", c); err != nil {
			return old, nil, err
		}
		chans = append(chans, c)
	}
	slices.Sort(chans)

	next := old
	next.AutoOwnership = make(map[string]bool, len(old.AutoOwnership)+len(chans))
	for c, on := range old.AutoOwnership {
		next.AutoOwnership[c] = on
	}
	var log []AdminLogEntry
	note := func(field, from, to string) {
		log = append(log, AdminLogEntry{At: now, Actor: by, Field: field, Old: from, New: to})
	}
	if p.RemoveOwnership != nil && *p.RemoveOwnership != old.RemoveOwnership {
		next.RemoveOwnership = *p.RemoveOwnership
		next.RemoveOwnershipSince = time.Time{}
		if next.RemoveOwnership {
			// Rule 6: only agents going offline from now on are swept.
			next.RemoveOwnershipSince = now
		}
		note("remove_ownership", strconv.FormatBool(old.RemoveOwnership), strconv.FormatBool(next.RemoveOwnership))
	}
	ints := []struct {
		field string
		v     *int
		dst   *int
	}{
		{"offline_grace", p.OfflineGrace, &next.OfflineGrace},
		{"idle_away", p.IdleAway, &next.IdleAway},
		{"idle_logout", p.IdleLogout, &next.IdleLogout},
		{"default_boomerang", p.DefaultBoomerang, &next.DefaultBoomerang},
	}
	for _, f := range ints {
		if f.v != nil && *f.v != *f.dst {
			note(f.field, strconv.Itoa(*f.dst), strconv.Itoa(*f.v))
			*f.dst = *f.v
		}
	}
	for _, c := range chans {
		on := p.AutoOwnership[c]
		if on != old.AutoOwnership[c] {
			note("auto_ownership."+c, strconv.FormatBool(old.AutoOwnership[c]), strconv.FormatBool(on))
		}
		if on {
			next.AutoOwnership[c] = true
		} else {
			delete(next.AutoOwnership, c)
		}
	}
	return next, log, nil
}

// groupNotifications turns an agent's unread notifications (oldest first)
// into the one grouped list shown at connect: a count per assigner, biggest
// first, and the items newest first.
func groupNotifications(unread []Notification) NotificationGroup {
	g := NotificationGroup{Total: len(unread), ByWho: []NotificationCount{}, Items: make([]Notification, len(unread))}
	idx := map[Actor]int{}
	for i, n := range unread {
		g.Items[len(unread)-1-i] = n
		j, ok := idx[n.By]
		if !ok {
			j = len(g.ByWho)
			idx[n.By] = j
			g.ByWho = append(g.ByWho, NotificationCount{By: n.By})
		}
		g.ByWho[j].Count++
	}
	slices.SortStableFunc(g.ByWho, func(a, b NotificationCount) int { return b.Count - a.Count })
	return g
}
