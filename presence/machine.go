package presence

import "time"

// Status is an agent's presence: the green, orange and gray dots.
type Status string

// Statuses.
const (
	Online  Status = "online"
	Away    Status = "away"
	Offline Status = "offline"
)

// Reason says why an Update was emitted. The store keeps it as the agent's
// status reason and broadcasts it with transitions.
type Reason string

// Reasons.
const (
	// ReasonConnected: the first connection of an offline agent (online, or
	// away when manual away is sticky).
	ReasonConnected Reason = "connected"
	// ReasonLastDisconnect: the last connection ended and the grace runs;
	// the status does not change. Also sent when a configuration change moves
	// a running grace's deadline.
	ReasonLastDisconnect Reason = "last_disconnect"
	// ReasonReconnected: a connection came back inside the grace; the status
	// does not change.
	ReasonReconnected  Reason = "reconnected"
	ReasonGraceExpired Reason = "grace_expired"
	ReasonManualAway   Reason = "manual_away"
	// ReasonAvailable: the agent set themselves available.
	ReasonAvailable Reason = "available"
	// ReasonIdle: automatic away after the workspace's idle timeout.
	ReasonIdle Reason = "idle"
	// ReasonActivity: activity ended automatic away.
	ReasonActivity Reason = "activity"
	// ReasonLogout: explicit logout, immediate.
	ReasonLogout     Reason = "logout"
	ReasonIdleLogout Reason = "idle_logout"
	// ReasonForced: an admin forced the agent offline.
	ReasonForced Reason = "forced"
	// ReasonRestored: state restored after a restart.
	ReasonRestored Reason = "restored"
)

// Key names one agent of one workspace.
type Key struct{ Workspace, Agent string }

// Timing is a workspace's presence settings.
type Timing struct {
	// Grace is how long an agent with no connection keeps their status
	// before going offline. 0 means offline as soon as the last connection
	// ends. Default 60 s.
	Grace time.Duration
	// IdleAway is how long a connected agent may show no activity before
	// becoming away automatically. 0 means never. Default 10 min.
	IdleAway time.Duration
	// IdleLogout is how long a connected agent may show no activity before
	// being logged out. 0 means never, the default.
	IdleLogout time.Duration
}

// DefaultTiming is DOMAIN.md's defaults.
var DefaultTiming = Timing{Grace: 60 * time.Second, IdleAway: 10 * time.Minute}

// normal treats negative durations as 0, so a bad setting disables a
// timeout (or makes the grace instant) instead of arming a timer in the past.
func (t Timing) normal() Timing {
	t.Grace = max(t.Grace, 0)
	t.IdleAway = max(t.IdleAway, 0)
	t.IdleLogout = max(t.IdleLogout, 0)
	return t
}

// State is one agent's presence state.
type State struct {
	Status Status
	// Conns counts the agent's live connections. It is 0 while offline:
	// logging out forgets the connections the hub is closing.
	Conns int
	// ManualAway is set while the agent has put themselves away. It survives
	// reconnects, grace expiry and restarts; setting available or logging
	// out clears it.
	ManualAway bool
	// LastActivity is the last connect, activity or away/available choice.
	LastActivity time.Time
	// GraceDeadline is zero unless the grace runs (Conns == 0 and not
	// offline).
	GraceDeadline time.Time
	// LastSeen is when the last connection ended, or the logout time.
	LastSeen time.Time
}

// InputKind says what happened to an agent.
type InputKind uint8

// Input kinds.
const (
	InputConnect InputKind = iota + 1
	InputDisconnect
	InputActivity
	// InputSetAway carries the agent's choice in Input.ManualAway: true
	// for away, false for available.
	InputSetAway
	InputLogout
	InputForceOffline
	// InputGraceTimer and InputIdleTimer say that the timer Next asked for
	// has fired (and is no longer armed).
	InputGraceTimer
	InputIdleTimer
	// InputRestore carries a stored presence in Input.Status,
	// Input.ManualAway and Input.GraceDeadline.
	InputRestore
	// InputRetime says the workspace's Timing changed; Next is called with
	// the new one.
	InputRetime
)

var inputNames = [...]string{
	InputConnect:      "connect",
	InputDisconnect:   "disconnect",
	InputActivity:     "activity",
	InputSetAway:      "set_away",
	InputLogout:       "logout",
	InputForceOffline: "force_offline",
	InputGraceTimer:   "grace_timer",
	InputIdleTimer:    "idle_timer",
	InputRestore:      "restore",
	InputRetime:       "retime",
}

func (k InputKind) String() string {
	if int(k) < len(inputNames) && inputNames[k] != "" {
		return inputNames[k]
	}
	return "input(?)"
}

// Input is one thing that happened to one agent.
type Input struct {
	Key  Key
	Kind InputKind
	// ManualAway is the agent's choice for InputSetAway, and the stored
	// sticky flag for InputRestore.
	ManualAway bool
	// Status and GraceDeadline are the stored presence for InputRestore.
	// A zero GraceDeadline gives a fresh grace from now.
	Status        Status
	GraceDeadline time.Time
}

// Update is a durable change of one agent's presence, for the store to
// commit and, when it is a transition, to broadcast.
type Update struct {
	Key
	Status        Status // status after this update
	Prev          Status
	Reason        Reason
	ManualAway    bool
	GraceDeadline time.Time // non-zero while the grace runs
	LastSeen      time.Time // set when Status is Offline: when the last connection ended (or the logout time)
	At            time.Time
}

// Transition reports whether the update changes the agent's status, which
// is what everyone else gets to see.
func (u Update) Transition() bool { return u.Status != u.Prev }

// Timer names one of an agent's two timers.
type Timer uint8

// Timers.
const (
	// TimerGrace ends the grace after the last connection.
	TimerGrace Timer = iota + 1
	// TimerIdle fires at the next idle deadline: automatic away or idle
	// logout, whichever comes first.
	TimerIdle
)

// EffectKind says what an Effect asks of its runner.
type EffectKind uint8

// Effect kinds.
const (
	// EffectEmit: publish Effect.Update.
	EffectEmit EffectKind = iota + 1
	// EffectArm: (re)arm Effect.Timer to fire at Effect.At, replacing any
	// earlier arming of that timer.
	EffectArm
	// EffectCancel: stop Effect.Timer if armed.
	EffectCancel
)

// Effect is something Next asks its runner to do.
type Effect struct {
	Kind   EffectKind
	Timer  Timer     // EffectArm, EffectCancel
	At     time.Time // EffectArm
	Update Update    // EffectEmit
}

// Next applies one input to one agent's state at time now under the
// workspace's timing. It is pure: no clock reads, no I/O. It returns the new
// state and, in order, at most one Update to emit followed by the timer
// changes the runner must make. A runner that arms and cancels as told
// always has exactly the timers the state needs.
func Next(s State, in Input, now time.Time, t Timing) (State, []Effect) {
	// One update and two timers at most: one allocation.
	return next(s, in, now, t, make([]Effect, 0, 3))
}

// next is Next appending to fx, so the tracker can reuse one slice.
func next(s State, in Input, now time.Time, t Timing, fx []Effect) (State, []Effect) {
	t = t.normal()
	oldGrace, oldIdle := deadlines(s, t)
	var (
		ns     State
		reason Reason
		emit   bool
	)
	switch in.Kind {
	case InputConnect:
		ns, reason, emit = connect(s, now)
	case InputDisconnect:
		ns, reason, emit = disconnect(s, now, t)
	case InputActivity:
		ns, reason, emit = activity(s, now)
	case InputSetAway:
		ns, reason, emit = setAway(s, in.ManualAway, now)
	case InputLogout:
		ns, reason, emit = logout(s, now, ReasonLogout)
	case InputForceOffline:
		ns, reason, emit = logout(s, now, ReasonForced)
	case InputGraceTimer:
		oldGrace = time.Time{} // it fired: nothing is armed any more
		ns, reason, emit = graceDue(s, now)
	case InputIdleTimer:
		oldIdle = time.Time{}
		ns, reason, emit = idleDue(s, now, t)
	case InputRestore:
		ns, reason, emit = restore(s, in, now, t)
	case InputRetime:
		ns, reason, emit = retime(s, now, t)
	default:
		return s, fx
	}
	if emit {
		u := Update{
			Key:           in.Key,
			Status:        ns.Status,
			Prev:          s.Status,
			Reason:        reason,
			ManualAway:    ns.ManualAway,
			GraceDeadline: ns.GraceDeadline,
			At:            now,
		}
		if in.Kind == InputRestore && s.Conns == 0 {
			// The store already holds the restored status: it is the one
			// this update starts from, not the tracker's blank state.
			u.Prev = in.Status
			if u.Prev != Away && u.Prev != Online {
				u.Prev = Offline
			}
		}
		if ns.Status == Offline {
			u.LastSeen = ns.LastSeen
		}
		fx = append(fx, Effect{Kind: EffectEmit, Update: u})
	}
	newGrace, newIdle := deadlines(ns, t)
	fx = timerEffect(fx, TimerGrace, oldGrace, newGrace, false)
	// A retime changes the idle deadline without the state showing it: the
	// old deadline was computed with the old timing, so always re-arm.
	fx = timerEffect(fx, TimerIdle, oldIdle, newIdle, in.Kind == InputRetime)
	return ns, fx
}

// deadlines returns when the grace and idle timers must fire for s (zero:
// not armed). Idle timeouts count only while the agent is connected: with no
// connection the grace decides.
func deadlines(s State, t Timing) (grace, idle time.Time) {
	if s.Status == Offline {
		return time.Time{}, time.Time{}
	}
	if s.Conns == 0 {
		return s.GraceDeadline, time.Time{}
	}
	if t.IdleAway > 0 && s.Status == Online {
		idle = s.LastActivity.Add(t.IdleAway)
	}
	if t.IdleLogout > 0 {
		if l := s.LastActivity.Add(t.IdleLogout); idle.IsZero() || l.Before(idle) {
			idle = l
		}
	}
	return time.Time{}, idle
}

func timerEffect(fx []Effect, tm Timer, old, new time.Time, always bool) []Effect {
	switch {
	case !always && old.Equal(new):
		return fx
	case new.IsZero():
		return append(fx, Effect{Kind: EffectCancel, Timer: tm})
	default:
		return append(fx, Effect{Kind: EffectArm, Timer: tm, At: new})
	}
}

// connect counts a new connection. Connecting counts as activity, so it
// also ends automatic away.
func connect(s State, now time.Time) (State, Reason, bool) {
	ns := s
	ns.Conns++
	ns.LastActivity = now
	ns.GraceDeadline = time.Time{}
	switch {
	case s.Status != Online && s.Status != Away:
		// From offline (or a blank state): a fresh session.
		ns.Conns = 1
		ns.Status = Online
		if s.ManualAway {
			ns.Status = Away
		}
		return ns, ReasonConnected, true
	case s.Status == Away && !s.ManualAway:
		// The grace, if it ran, ends in the same update.
		ns.Status = Online
		return ns, ReasonActivity, true
	case s.Conns == 0 && !s.GraceDeadline.IsZero():
		return ns, ReasonReconnected, true
	default:
		// Another tab: nothing durable changed.
		return ns, "", false
	}
}

// disconnect forgets one connection; the last one starts the grace.
func disconnect(s State, now time.Time, t Timing) (State, Reason, bool) {
	if s.Status == Offline || s.Conns == 0 {
		// Connections a logout forgot, or a repeated disconnect.
		return s, "", false
	}
	ns := s
	ns.Conns--
	if ns.Conns > 0 {
		return ns, "", false
	}
	ns.LastSeen = now
	if t.Grace == 0 {
		ns.Status = Offline
		return ns, ReasonGraceExpired, true
	}
	ns.GraceDeadline = now.Add(t.Grace)
	return ns, ReasonLastDisconnect, true
}

// activity happens on a connection; with none it cannot have happened.
func activity(s State, now time.Time) (State, Reason, bool) {
	if s.Status == Offline || s.Conns == 0 {
		return s, "", false
	}
	ns := s
	ns.LastActivity = now
	if s.Status == Away && !s.ManualAway {
		ns.Status = Online
		return ns, ReasonActivity, true
	}
	return ns, "", false
}

// setAway records the agent's own choice, which is activity too. An offline
// agent has no session to choose in: the call is ignored.
func setAway(s State, away bool, now time.Time) (State, Reason, bool) {
	if s.Status != Online && s.Status != Away {
		return s, "", false
	}
	ns := s
	ns.LastActivity = now
	ns.ManualAway = away
	if away {
		ns.Status = Away
		return ns, ReasonManualAway, !s.ManualAway
	}
	ns.Status = Online
	// Available ends a manual away and an automatic one alike.
	return ns, ReasonAvailable, s.Status == Away || s.ManualAway
}

// logout takes the agent offline at once and ends the session: the
// connections the hub is closing are forgotten and manual away is cleared,
// so the next login starts available.
func logout(s State, now time.Time, why Reason) (State, Reason, bool) {
	ns := State{
		Status:       Offline,
		LastActivity: s.LastActivity,
		LastSeen:     now,
	}
	switch {
	case s.Status != Online && s.Status != Away:
		// Offline already. Only a sticky manual away left by a grace expiry is durable here.
		ns.LastSeen = s.LastSeen
		return ns, why, s.ManualAway
	case s.Conns == 0 && !s.GraceDeadline.IsZero():
		// The last connection had already ended: that, not the logout, is
		// when the agent was last seen.
		ns.LastSeen = s.LastSeen
	}
	return ns, why, true
}

// graceDue takes the agent offline if the grace has run out. Manual away
// stays: the agent lost their connection, they did not log out.
func graceDue(s State, now time.Time) (State, Reason, bool) {
	if s.Status == Offline || s.Conns > 0 || s.GraceDeadline.IsZero() || now.Before(s.GraceDeadline) {
		return s, "", false
	}
	ns := s
	ns.Status = Offline
	ns.GraceDeadline = time.Time{}
	return ns, ReasonGraceExpired, true
}

// idleDue applies whichever idle timeout has run out: idle logout wins over
// automatic away when both have.
func idleDue(s State, now time.Time, t Timing) (State, Reason, bool) {
	if s.Status == Offline || s.Conns == 0 {
		return s, "", false
	}
	if t.IdleLogout > 0 && !now.Before(s.LastActivity.Add(t.IdleLogout)) {
		return logout(s, now, ReasonIdleLogout)
	}
	if t.IdleAway > 0 && s.Status == Online && !now.Before(s.LastActivity.Add(t.IdleAway)) {
		ns := s
		ns.Status = Away
		return ns, ReasonIdle, true
	}
	return s, "", false
}

// restore installs a presence the store kept across a restart. An agent
// stored online or away has no connection now: its grace runs until the
// stored deadline, or for a full grace from now when none was stored. An
// agent who connected before the restore keeps their live state and takes
// only the sticky manual away.
func restore(s State, in Input, now time.Time, t Timing) (State, Reason, bool) {
	if s.Conns > 0 && s.Status != Offline {
		if !in.ManualAway || s.ManualAway {
			return s, "", false
		}
		ns := s
		ns.ManualAway = true
		ns.Status = Away
		return ns, ReasonRestored, true
	}
	if in.Status != Online && in.Status != Away {
		// The store has them offline: nothing to announce, but a later
		// connect must come back away if they left that way.
		return State{Status: Offline, ManualAway: in.ManualAway, LastActivity: s.LastActivity, LastSeen: s.LastSeen}, "", false
	}
	deadline := in.GraceDeadline
	if deadline.IsZero() {
		deadline = now.Add(t.Grace)
	}
	// Best knowledge of when the last connection ended: a full grace before
	// the deadline, but never in the future. A retime counts from it.
	lastSeen := deadline.Add(-t.Grace)
	if lastSeen.After(now) {
		lastSeen = now
	}
	ns := State{
		Status:        in.Status,
		ManualAway:    in.ManualAway,
		LastActivity:  s.LastActivity,
		GraceDeadline: deadline,
		LastSeen:      lastSeen,
	}
	if in.ManualAway {
		ns.Status = Away
	}
	if !now.Before(deadline) {
		ns.Status = Offline
		ns.GraceDeadline = time.Time{}
		return ns, ReasonGraceExpired, true
	}
	return ns, ReasonRestored, true
}

// retime applies a workspace's new timing. A running grace is re-counted
// from LastSeen with the new length, shorter or longer; idle timeouts are
// re-counted from LastActivity. Whatever has run out under the new timing
// happens now.
func retime(s State, now time.Time, t Timing) (State, Reason, bool) {
	if s.Status == Offline {
		return s, "", false
	}
	if s.Conns == 0 {
		if s.GraceDeadline.IsZero() {
			return s, "", false
		}
		d := s.LastSeen.Add(t.Grace)
		if !now.Before(d) {
			ns := s
			ns.GraceDeadline = d
			return graceDue(ns, now)
		}
		if d.Equal(s.GraceDeadline) {
			return s, "", false
		}
		ns := s
		ns.GraceDeadline = d
		return ns, ReasonLastDisconnect, true
	}
	return idleDue(s, now, t)
}
