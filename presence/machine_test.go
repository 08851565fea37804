package presence

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	t0  = time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)
	now = t0.Add(5 * time.Minute) // every row happens at now unless it says otherwise
	ann = Key{Workspace: "acme", Agent: "ann"}
	// tt has every timeout on, so rows show every timer.
	tt = Timing{Grace: 60 * time.Second, IdleAway: 10 * time.Minute, IdleLogout: 30 * time.Minute}
)

func at(d time.Duration) time.Time { return now.Add(d) }

func emit(u Update) Effect                { return Effect{Kind: EffectEmit, Update: u} }
func arm(tm Timer, when time.Time) Effect { return Effect{Kind: EffectArm, Timer: tm, At: when} }
func cancel(tm Timer) Effect              { return Effect{Kind: EffectCancel, Timer: tm} }

// States the rows start from. Connected agents were last active at t0.
var (
	offline     = State{Status: Offline, LastSeen: t0}
	offlineAway = State{Status: Offline, ManualAway: true, LastSeen: t0}
	online1     = State{Status: Online, Conns: 1, LastActivity: t0}
	online2     = State{Status: Online, Conns: 2, LastActivity: t0}
	autoAway    = State{Status: Away, Conns: 1, LastActivity: t0}
	manualAway  = State{Status: Away, Conns: 1, ManualAway: true, LastActivity: t0}
	// In the grace: the last connection ended 30 s ago.
	onlineGrace = State{Status: Online, LastActivity: t0, LastSeen: at(-30 * time.Second), GraceDeadline: at(30 * time.Second)}
	autoGrace   = State{Status: Away, LastActivity: t0, LastSeen: at(-30 * time.Second), GraceDeadline: at(30 * time.Second)}
	manualGrace = State{Status: Away, ManualAway: true, LastActivity: t0, LastSeen: at(-30 * time.Second), GraceDeadline: at(30 * time.Second)}
)

// with returns s changed by f, so a row's want reads as a difference.
func with(s State, f func(*State)) State {
	f(&s)
	return s
}

type row struct {
	name string
	s    State
	in   Input
	now  time.Time // zero: now
	t    *Timing   // nil: tt
	want State
	fx   []Effect // Update.Key and a zero Update.At are filled in
}

func TestNext(t *testing.T) {
	grace0 := Timing{IdleAway: 10 * time.Minute}
	noIdle := Timing{Grace: 60 * time.Second}
	sameIdle := Timing{Grace: 60 * time.Second, IdleAway: 10 * time.Minute, IdleLogout: 10 * time.Minute}
	connect := Input{Kind: InputConnect}
	disconnect := Input{Kind: InputDisconnect}
	activity := Input{Kind: InputActivity}
	away := Input{Kind: InputSetAway, ManualAway: true}
	available := Input{Kind: InputSetAway, ManualAway: false}
	logout := Input{Kind: InputLogout}
	force := Input{Kind: InputForceOffline}
	graceTimer := Input{Kind: InputGraceTimer}
	idleTimer := Input{Kind: InputIdleTimer}
	retime := Input{Kind: InputRetime}
	restore := func(st Status, manual bool, deadline time.Time) Input {
		return Input{Kind: InputRestore, Status: st, ManualAway: manual, GraceDeadline: deadline}
	}

	rows := []row{
		// Connect.
		{name: "connect/offline", s: offline, in: connect,
			want: State{Status: Online, Conns: 1, LastActivity: now, LastSeen: t0},
			fx:   []Effect{emit(Update{Prev: Offline, Status: Online, Reason: ReasonConnected}), arm(TimerIdle, at(10*time.Minute))}},
		{name: "connect/offline manual away is sticky", s: offlineAway, in: connect,
			want: State{Status: Away, Conns: 1, ManualAway: true, LastActivity: now, LastSeen: t0},
			fx:   []Effect{emit(Update{Prev: Offline, Status: Away, Reason: ReasonConnected, ManualAway: true}), arm(TimerIdle, at(30*time.Minute))}},
		{name: "connect/blank state counts as offline", s: State{}, in: connect,
			want: State{Status: Online, Conns: 1, LastActivity: now},
			fx:   []Effect{emit(Update{Prev: "", Status: Online, Reason: ReasonConnected}), arm(TimerIdle, at(10*time.Minute))}},
		{name: "connect/second tab", s: online1, in: connect,
			want: with(online1, func(s *State) { s.Conns = 2; s.LastActivity = now }),
			fx:   []Effect{arm(TimerIdle, at(10*time.Minute))}},
		{name: "connect/inside grace", s: onlineGrace, in: connect,
			want: State{Status: Online, Conns: 1, LastActivity: now, LastSeen: at(-30 * time.Second)},
			fx: []Effect{emit(Update{Prev: Online, Status: Online, Reason: ReasonReconnected}),
				cancel(TimerGrace), arm(TimerIdle, at(10*time.Minute))}},
		{name: "connect/inside grace manual away", s: manualGrace, in: connect,
			want: State{Status: Away, Conns: 1, ManualAway: true, LastActivity: now, LastSeen: at(-30 * time.Second)},
			fx: []Effect{emit(Update{Prev: Away, Status: Away, Reason: ReasonReconnected, ManualAway: true}),
				cancel(TimerGrace), arm(TimerIdle, at(30*time.Minute))}},
		{name: "connect/inside grace ends automatic away", s: autoGrace, in: connect,
			want: State{Status: Online, Conns: 1, LastActivity: now, LastSeen: at(-30 * time.Second)},
			fx: []Effect{emit(Update{Prev: Away, Status: Online, Reason: ReasonActivity}),
				cancel(TimerGrace), arm(TimerIdle, at(10*time.Minute))}},
		{name: "connect/second tab ends automatic away", s: autoAway, in: connect,
			want: State{Status: Online, Conns: 2, LastActivity: now},
			fx:   []Effect{emit(Update{Prev: Away, Status: Online, Reason: ReasonActivity}), arm(TimerIdle, at(10*time.Minute))}},
		{name: "connect/second tab keeps manual away", s: manualAway, in: connect,
			want: with(manualAway, func(s *State) { s.Conns = 2; s.LastActivity = now }),
			fx:   []Effect{arm(TimerIdle, at(30*time.Minute))}},

		// Disconnect.
		{name: "disconnect/one of two tabs", s: online2, in: disconnect,
			want: online1},
		{name: "disconnect/last starts grace", s: online1, in: disconnect,
			want: State{Status: Online, LastActivity: t0, LastSeen: now, GraceDeadline: at(time.Minute)},
			fx: []Effect{emit(Update{Prev: Online, Status: Online, Reason: ReasonLastDisconnect, GraceDeadline: at(time.Minute)}),
				arm(TimerGrace, at(time.Minute)), cancel(TimerIdle)}},
		{name: "disconnect/last while manual away", s: manualAway, in: disconnect,
			want: State{Status: Away, ManualAway: true, LastActivity: t0, LastSeen: now, GraceDeadline: at(time.Minute)},
			fx: []Effect{emit(Update{Prev: Away, Status: Away, Reason: ReasonLastDisconnect, ManualAway: true, GraceDeadline: at(time.Minute)}),
				arm(TimerGrace, at(time.Minute)), cancel(TimerIdle)}},
		{name: "disconnect/grace 0 is offline at once", s: online1, in: disconnect, t: &grace0,
			want: State{Status: Offline, LastActivity: t0, LastSeen: now},
			fx: []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonGraceExpired, LastSeen: now}),
				cancel(TimerIdle)}},
		{name: "disconnect/grace 0 keeps manual away", s: manualAway, in: disconnect, t: &grace0,
			want: State{Status: Offline, ManualAway: true, LastActivity: t0, LastSeen: now},
			fx:   []Effect{emit(Update{Prev: Away, Status: Offline, Reason: ReasonGraceExpired, ManualAway: true, LastSeen: now})}},
		{name: "disconnect/negative grace counts as 0", s: online1, in: disconnect, t: &Timing{Grace: -time.Second},
			want: State{Status: Offline, LastActivity: t0, LastSeen: now},
			fx:   []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonGraceExpired, LastSeen: now})}},
		{name: "disconnect/while offline after logout", s: offline, in: disconnect,
			want: offline},
		{name: "disconnect/with conns 0 inside grace", s: onlineGrace, in: disconnect,
			want: onlineGrace},

		// Activity.
		{name: "activity/online", s: online1, in: activity,
			want: with(online1, func(s *State) { s.LastActivity = now }),
			fx:   []Effect{arm(TimerIdle, at(10*time.Minute))}},
		{name: "activity/ends automatic away", s: autoAway, in: activity,
			want: State{Status: Online, Conns: 1, LastActivity: now},
			fx:   []Effect{emit(Update{Prev: Away, Status: Online, Reason: ReasonActivity}), arm(TimerIdle, at(10*time.Minute))}},
		{name: "activity/keeps manual away", s: manualAway, in: activity,
			want: with(manualAway, func(s *State) { s.LastActivity = now }),
			fx:   []Effect{arm(TimerIdle, at(30*time.Minute))}},
		{name: "activity/while offline", s: offline, in: activity,
			want: offline},
		{name: "activity/with no connection inside grace", s: autoGrace, in: activity,
			want: autoGrace},
		{name: "activity/no idle timeouts arms nothing", s: online1, in: activity, t: &noIdle,
			want: with(online1, func(s *State) { s.LastActivity = now })},

		// SetAway.
		{name: "set away/online", s: online1, in: away,
			want: State{Status: Away, Conns: 1, ManualAway: true, LastActivity: now},
			fx:   []Effect{emit(Update{Prev: Online, Status: Away, Reason: ReasonManualAway, ManualAway: true}), arm(TimerIdle, at(30*time.Minute))}},
		{name: "set away/automatic away becomes manual", s: autoAway, in: away,
			want: State{Status: Away, Conns: 1, ManualAway: true, LastActivity: now},
			fx:   []Effect{emit(Update{Prev: Away, Status: Away, Reason: ReasonManualAway, ManualAway: true}), arm(TimerIdle, at(30*time.Minute))}},
		{name: "set away/already manual", s: manualAway, in: away,
			want: with(manualAway, func(s *State) { s.LastActivity = now }),
			fx:   []Effect{arm(TimerIdle, at(30*time.Minute))}},
		{name: "set away/inside grace keeps the grace", s: onlineGrace, in: away,
			want: with(onlineGrace, func(s *State) { s.Status = Away; s.ManualAway = true; s.LastActivity = now }),
			fx:   []Effect{emit(Update{Prev: Online, Status: Away, Reason: ReasonManualAway, ManualAway: true, GraceDeadline: at(30 * time.Second)})}},
		{name: "set away/offline is ignored", s: offline, in: away,
			want: offline},
		{name: "available/ends manual away", s: manualAway, in: available,
			want: State{Status: Online, Conns: 1, LastActivity: now},
			fx:   []Effect{emit(Update{Prev: Away, Status: Online, Reason: ReasonAvailable}), arm(TimerIdle, at(10*time.Minute))}},
		{name: "available/ends automatic away", s: autoAway, in: available,
			want: State{Status: Online, Conns: 1, LastActivity: now},
			fx:   []Effect{emit(Update{Prev: Away, Status: Online, Reason: ReasonAvailable}), arm(TimerIdle, at(10*time.Minute))}},
		{name: "available/already online", s: online1, in: available,
			want: with(online1, func(s *State) { s.LastActivity = now }),
			fx:   []Effect{arm(TimerIdle, at(10*time.Minute))}},
		{name: "available/offline is ignored", s: offlineAway, in: available,
			want: offlineAway},

		// Logout and ForceOffline.
		{name: "logout/with tabs open", s: online2, in: logout,
			want: State{Status: Offline, LastActivity: t0, LastSeen: now},
			fx:   []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonLogout, LastSeen: now}), cancel(TimerIdle)}},
		{name: "logout/clears manual away", s: manualAway, in: logout,
			want: State{Status: Offline, LastActivity: t0, LastSeen: now},
			fx:   []Effect{emit(Update{Prev: Away, Status: Offline, Reason: ReasonLogout, LastSeen: now}), cancel(TimerIdle)}},
		{name: "logout/inside grace keeps when last seen", s: onlineGrace, in: logout,
			want: State{Status: Offline, LastActivity: t0, LastSeen: at(-30 * time.Second)},
			fx:   []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonLogout, LastSeen: at(-30 * time.Second)}), cancel(TimerGrace)}},
		{name: "logout/offline", s: offline, in: logout,
			want: offline},
		{name: "logout/offline clears sticky manual away", s: offlineAway, in: logout,
			want: offline,
			fx:   []Effect{emit(Update{Prev: Offline, Status: Offline, Reason: ReasonLogout, LastSeen: t0})}},
		{name: "force offline/online", s: online1, in: force,
			want: State{Status: Offline, LastActivity: t0, LastSeen: now},
			fx:   []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonForced, LastSeen: now}), cancel(TimerIdle)}},
		{name: "force offline/away inside grace", s: manualGrace, in: force,
			want: State{Status: Offline, LastActivity: t0, LastSeen: at(-30 * time.Second)},
			fx:   []Effect{emit(Update{Prev: Away, Status: Offline, Reason: ReasonForced, LastSeen: at(-30 * time.Second)}), cancel(TimerGrace)}},
		{name: "force offline/offline", s: offline, in: force,
			want: offline},

		// Grace timer.
		{name: "grace timer/expires", s: onlineGrace, in: graceTimer, now: at(30 * time.Second),
			want: State{Status: Offline, LastActivity: t0, LastSeen: at(-30 * time.Second)},
			fx:   []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonGraceExpired, LastSeen: at(-30 * time.Second)})}},
		{name: "grace timer/expiry keeps manual away", s: manualGrace, in: graceTimer, now: at(30 * time.Second),
			want: State{Status: Offline, ManualAway: true, LastActivity: t0, LastSeen: at(-30 * time.Second)},
			fx:   []Effect{emit(Update{Prev: Away, Status: Offline, Reason: ReasonGraceExpired, ManualAway: true, LastSeen: at(-30 * time.Second)})}},
		{name: "grace timer/early re-arms", s: onlineGrace, in: graceTimer,
			want: onlineGrace,
			fx:   []Effect{arm(TimerGrace, at(30*time.Second))}},
		{name: "grace timer/after reconnect", s: online1, in: graceTimer,
			want: online1},
		{name: "grace timer/offline", s: offline, in: graceTimer,
			want: offline},

		// Idle timer.
		{name: "idle timer/automatic away", s: online1, in: idleTimer, now: t0.Add(10 * time.Minute),
			want: with(online1, func(s *State) { s.Status = Away }),
			fx:   []Effect{emit(Update{Prev: Online, Status: Away, Reason: ReasonIdle}), arm(TimerIdle, t0.Add(30*time.Minute))}},
		{name: "idle timer/after activity re-arms", s: with(online1, func(s *State) { s.LastActivity = now }), in: idleTimer, now: t0.Add(10 * time.Minute),
			want: with(online1, func(s *State) { s.LastActivity = now }),
			fx:   []Effect{arm(TimerIdle, at(10*time.Minute))}},
		{name: "idle timer/idle logout", s: autoAway, in: idleTimer, now: t0.Add(30 * time.Minute),
			want: State{Status: Offline, LastActivity: t0, LastSeen: t0.Add(30 * time.Minute)},
			fx:   []Effect{emit(Update{Prev: Away, Status: Offline, Reason: ReasonIdleLogout, LastSeen: t0.Add(30 * time.Minute)})}},
		{name: "idle timer/idle logout clears manual away", s: manualAway, in: idleTimer, now: t0.Add(30 * time.Minute),
			want: State{Status: Offline, LastActivity: t0, LastSeen: t0.Add(30 * time.Minute)},
			fx:   []Effect{emit(Update{Prev: Away, Status: Offline, Reason: ReasonIdleLogout, LastSeen: t0.Add(30 * time.Minute)})}},
		{name: "idle timer/logout wins over away when both are due", s: online1, in: idleTimer, now: t0.Add(10 * time.Minute), t: &sameIdle,
			want: State{Status: Offline, LastActivity: t0, LastSeen: t0.Add(10 * time.Minute)},
			fx:   []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonIdleLogout, LastSeen: t0.Add(10 * time.Minute)})}},
		{name: "idle timer/offline", s: offline, in: idleTimer,
			want: offline},
		{name: "idle timer/inside grace", s: onlineGrace, in: idleTimer, now: t0.Add(time.Hour),
			want: onlineGrace},

		// Restore.
		{name: "restore/stored grace", s: State{Status: Offline}, in: restore(Online, false, at(20*time.Second)),
			want: State{Status: Online, LastSeen: at(-40 * time.Second), GraceDeadline: at(20 * time.Second)},
			fx: []Effect{emit(Update{Prev: Online, Status: Online, Reason: ReasonRestored, GraceDeadline: at(20 * time.Second)}),
				arm(TimerGrace, at(20*time.Second))}},
		{name: "restore/fresh grace from now", s: State{Status: Offline}, in: restore(Online, false, time.Time{}),
			want: State{Status: Online, LastSeen: now, GraceDeadline: at(time.Minute)},
			fx: []Effect{emit(Update{Prev: Online, Status: Online, Reason: ReasonRestored, GraceDeadline: at(time.Minute)}),
				arm(TimerGrace, at(time.Minute))}},
		{name: "restore/deadline past a full grace from now", s: State{Status: Offline}, in: restore(Online, false, at(90*time.Second)),
			want: State{Status: Online, LastSeen: now, GraceDeadline: at(90 * time.Second)},
			fx: []Effect{emit(Update{Prev: Online, Status: Online, Reason: ReasonRestored, GraceDeadline: at(90 * time.Second)}),
				arm(TimerGrace, at(90*time.Second))}},
		{name: "restore/manual away", s: State{Status: Offline}, in: restore(Away, true, at(time.Minute)),
			want: State{Status: Away, ManualAway: true, LastSeen: now, GraceDeadline: at(time.Minute)},
			fx: []Effect{emit(Update{Prev: Away, Status: Away, Reason: ReasonRestored, ManualAway: true, GraceDeadline: at(time.Minute)}),
				arm(TimerGrace, at(time.Minute))}},
		{name: "restore/manual away wins over a stored online", s: State{Status: Offline}, in: restore(Online, true, at(time.Minute)),
			want: State{Status: Away, ManualAway: true, LastSeen: now, GraceDeadline: at(time.Minute)},
			fx: []Effect{emit(Update{Prev: Online, Status: Away, Reason: ReasonRestored, ManualAway: true, GraceDeadline: at(time.Minute)}),
				arm(TimerGrace, at(time.Minute))}},
		{name: "restore/overdue is offline at once", s: State{Status: Offline}, in: restore(Online, false, at(-time.Second)),
			want: State{Status: Offline, LastSeen: at(-61 * time.Second)},
			fx:   []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonGraceExpired, LastSeen: at(-61 * time.Second)})}},
		{name: "restore/deadline now is overdue", s: State{Status: Offline}, in: restore(Away, true, now),
			want: State{Status: Offline, ManualAway: true, LastSeen: at(-time.Minute)},
			fx:   []Effect{emit(Update{Prev: Away, Status: Offline, Reason: ReasonGraceExpired, ManualAway: true, LastSeen: at(-time.Minute)})}},
		{name: "restore/grace 0 without deadline", s: State{Status: Offline}, in: restore(Online, false, time.Time{}), t: &grace0,
			want: State{Status: Offline, LastSeen: now},
			fx:   []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonGraceExpired, LastSeen: now})}},
		{name: "restore/offline keeps manual away for the next connect", s: State{Status: Offline}, in: restore(Offline, true, time.Time{}),
			want: State{Status: Offline, ManualAway: true}},
		{name: "restore/offline", s: State{Status: Offline}, in: restore(Offline, false, time.Time{}),
			want: State{Status: Offline}},
		{name: "restore/unknown status counts as offline", s: State{Status: Offline}, in: restore("busy", false, at(time.Minute)),
			want: State{Status: Offline}},
		{name: "restore/offline over a running grace", s: onlineGrace, in: restore(Offline, false, time.Time{}),
			want: State{Status: Offline, LastActivity: t0, LastSeen: at(-30 * time.Second)},
			fx:   []Effect{cancel(TimerGrace)}},
		{name: "restore/already connected takes manual away", s: online1, in: restore(Online, true, at(time.Minute)),
			want: with(online1, func(s *State) { s.Status = Away; s.ManualAway = true }),
			fx:   []Effect{emit(Update{Prev: Online, Status: Away, Reason: ReasonRestored, ManualAway: true}), arm(TimerIdle, t0.Add(30*time.Minute))}},
		{name: "restore/already connected", s: online1, in: restore(Online, false, at(time.Minute)),
			want: online1},

		// Retime: a Configure. The idle timer is always re-armed or cancelled.
		{name: "retime/shorter grace re-counts from last seen", s: onlineGrace, in: retime, t: &Timing{Grace: 40 * time.Second},
			want: with(onlineGrace, func(s *State) { s.GraceDeadline = at(10 * time.Second) }),
			fx: []Effect{emit(Update{Prev: Online, Status: Online, Reason: ReasonLastDisconnect, GraceDeadline: at(10 * time.Second)}),
				arm(TimerGrace, at(10*time.Second)), cancel(TimerIdle)}},
		{name: "retime/shorter grace already run out", s: manualGrace, in: retime, t: &Timing{Grace: 20 * time.Second},
			want: State{Status: Offline, ManualAway: true, LastActivity: t0, LastSeen: at(-30 * time.Second)},
			fx: []Effect{emit(Update{Prev: Away, Status: Offline, Reason: ReasonGraceExpired, ManualAway: true, LastSeen: at(-30 * time.Second)}),
				cancel(TimerGrace), cancel(TimerIdle)}},
		{name: "retime/grace 0", s: onlineGrace, in: retime, t: &grace0,
			want: State{Status: Offline, LastActivity: t0, LastSeen: at(-30 * time.Second)},
			fx: []Effect{emit(Update{Prev: Online, Status: Offline, Reason: ReasonGraceExpired, LastSeen: at(-30 * time.Second)}),
				cancel(TimerGrace), cancel(TimerIdle)}},
		{name: "retime/longer grace", s: onlineGrace, in: retime, t: &Timing{Grace: 90 * time.Second},
			want: with(onlineGrace, func(s *State) { s.GraceDeadline = at(time.Minute) }),
			fx: []Effect{emit(Update{Prev: Online, Status: Online, Reason: ReasonLastDisconnect, GraceDeadline: at(time.Minute)}),
				arm(TimerGrace, at(time.Minute)), cancel(TimerIdle)}},
		{name: "retime/same grace", s: onlineGrace, in: retime,
			want: onlineGrace,
			fx:   []Effect{cancel(TimerIdle)}},
		{name: "retime/shorter idle away already run out", s: online1, in: retime, t: &Timing{Grace: time.Minute, IdleAway: 3 * time.Minute, IdleLogout: 30 * time.Minute},
			want: with(online1, func(s *State) { s.Status = Away }),
			fx:   []Effect{emit(Update{Prev: Online, Status: Away, Reason: ReasonIdle}), arm(TimerIdle, t0.Add(30*time.Minute))}},
		{name: "retime/longer idle away", s: online1, in: retime, t: &Timing{Grace: time.Minute, IdleAway: 20 * time.Minute},
			want: online1,
			fx:   []Effect{arm(TimerIdle, t0.Add(20*time.Minute))}},
		{name: "retime/idle timeouts off", s: online1, in: retime, t: &noIdle,
			want: online1,
			fx:   []Effect{cancel(TimerIdle)}},
		{name: "retime/idle off leaves automatic away", s: autoAway, in: retime, t: &noIdle,
			want: autoAway,
			fx:   []Effect{cancel(TimerIdle)}},
		{name: "retime/shorter idle logout already run out", s: manualAway, in: retime, t: &Timing{Grace: time.Minute, IdleLogout: 4 * time.Minute},
			want: State{Status: Offline, LastActivity: t0, LastSeen: now},
			fx:   []Effect{emit(Update{Prev: Away, Status: Offline, Reason: ReasonIdleLogout, LastSeen: now}), cancel(TimerIdle)}},
		{name: "retime/offline", s: offline, in: retime,
			want: offline,
			fx:   []Effect{cancel(TimerIdle)}},

		// Anything else is ignored.
		{name: "unknown input", s: online1, in: Input{Kind: 99}, want: online1},
	}

	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			when, timing := now, tt
			if !r.now.IsZero() {
				when = r.now
			}
			if r.t != nil {
				timing = *r.t
			}
			in := r.in
			in.Key = ann
			for i := range r.fx {
				if r.fx[i].Kind == EffectEmit {
					r.fx[i].Update.Key = ann
					if r.fx[i].Update.At.IsZero() {
						r.fx[i].Update.At = when
					}
				}
			}
			got, fx := Next(r.s, in, when, timing)
			if got != r.want {
				t.Errorf("state:\n got %s\nwant %s", fmtState(got), fmtState(r.want))
			}
			if !reflect.DeepEqual(fx, r.fx) && (len(fx) != 0 || len(r.fx) != 0) {
				t.Errorf("effects:\n got %s\nwant %s", fmtEffects(fx), fmtEffects(r.fx))
			}
		})
	}
}

func fmtTime(x time.Time) string {
	if x.IsZero() {
		return "0"
	}
	return "now" + x.Sub(now).String()
}

func fmtState(s State) string {
	return fmt.Sprintf("{%s conns=%d manual=%v active=%s grace=%s seen=%s}",
		s.Status, s.Conns, s.ManualAway, fmtTime(s.LastActivity), fmtTime(s.GraceDeadline), fmtTime(s.LastSeen))
}

func fmtEffects(fx []Effect) string {
	var b strings.Builder
	for _, f := range fx {
		switch f.Kind {
		case EffectEmit:
			u := f.Update
			fmt.Fprintf(&b, "[emit %v %s->%s %s manual=%v grace=%s seen=%s at=%s]", u.Key, u.Prev, u.Status, u.Reason,
				u.ManualAway, fmtTime(u.GraceDeadline), fmtTime(u.LastSeen), fmtTime(u.At))
		case EffectArm:
			fmt.Fprintf(&b, "[arm %d %s]", f.Timer, fmtTime(f.At))
		case EffectCancel:
			fmt.Fprintf(&b, "[cancel %d]", f.Timer)
		}
	}
	return b.String()
}

func TestUpdateTransition(t *testing.T) {
	for _, c := range []struct {
		u    Update
		want bool
	}{
		{Update{Prev: Offline, Status: Online}, true},
		{Update{Prev: Online, Status: Away}, true},
		{Update{Prev: Online, Status: Online, Reason: ReasonLastDisconnect}, false},
		{Update{Prev: Away, Status: Away, Reason: ReasonManualAway}, false},
	} {
		if got := c.u.Transition(); got != c.want {
			t.Errorf("%s->%s Transition() = %v, want %v", c.u.Prev, c.u.Status, got, c.want)
		}
	}
}

func TestInputKindString(t *testing.T) {
	if got, want := InputSetAway.String(), "set_away"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := InputKind(0).String(), "input(?)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestNextInvariants drives Next with random inputs and a runner that keeps
// the timers as told, checking after every step what must always hold: the
// state is consistent, the armed timers are exactly the ones the state
// needs, and an Update is emitted exactly when something durable changed.
func TestNextInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	timings := []Timing{tt, DefaultTiming, {IdleAway: time.Minute}, {Grace: 90 * time.Second, IdleLogout: 2 * time.Minute}}
	for run := range 200 {
		timing := timings[run%len(timings)]
		s := State{Status: Offline}
		clock := t0
		armed := map[Timer]time.Time{}
		for step := range 200 {
			var in Input
			// Fire a due timer now and then, as a runner would.
			if rng.IntN(3) == 0 && len(armed) > 0 {
				tm, when := earliest(armed)
				clock = when
				delete(armed, tm)
				in.Kind = InputGraceTimer
				if tm == TimerIdle {
					in.Kind = InputIdleTimer
				}
			} else {
				clock = clock.Add(time.Duration(rng.IntN(120)) * time.Second)
				in.Kind = InputKind(1 + rng.IntN(int(InputRetime)))
				switch in.Kind {
				case InputSetAway:
					in.ManualAway = rng.IntN(2) == 0
				case InputRestore:
					in.Status = []Status{Online, Away, Offline}[rng.IntN(3)]
					in.ManualAway = rng.IntN(2) == 0
					in.GraceDeadline = clock.Add(time.Duration(rng.IntN(180)-60) * time.Second)
				case InputRetime:
					timing = timings[rng.IntN(len(timings))]
				case InputGraceTimer, InputIdleTimer:
					continue // only the runner fires timers
				}
			}
			// Never let a due timer go unfired: the runner would have.
			if tm, when := earliest(armed); len(armed) > 0 && when.Before(clock) {
				clock = when
				delete(armed, tm)
				in = Input{Kind: InputGraceTimer}
				if tm == TimerIdle {
					in.Kind = InputIdleTimer
				}
			}
			prev := s
			var fx []Effect
			s, fx = Next(s, in, clock, timing)
			where := fmt.Sprintf("run %d step %d %s from %s", run, step, in.Kind, fmtState(prev))
			checkState(t, where, s)
			emitted := 0
			for _, f := range fx {
				switch f.Kind {
				case EffectEmit:
					emitted++
					u := f.Update
					if u.Status != s.Status || u.ManualAway != s.ManualAway || !u.GraceDeadline.Equal(s.GraceDeadline) {
						t.Fatalf("%s: update %+v does not match state %s", where, u, fmtState(s))
					}
					if in.Kind != InputRestore && u.Prev != prev.Status {
						t.Fatalf("%s: got prev %s, want %s", where, u.Prev, prev.Status)
					}
				case EffectArm:
					armed[f.Timer] = f.At
				case EffectCancel:
					delete(armed, f.Timer)
				}
			}
			if emitted > 1 {
				t.Fatalf("%s: %d updates, want at most 1", where, emitted)
			}
			durable := s.Status != prev.Status || s.ManualAway != prev.ManualAway || !s.GraceDeadline.Equal(prev.GraceDeadline)
			// Restoring an offline agent installs what the store already has.
			fromStore := in.Kind == InputRestore && s.Status == Offline
			if durable && emitted == 0 && !fromStore {
				t.Fatalf("%s: to %s with no update", where, fmtState(s))
			}
			// A restore announces what it installs even when the tracker
			// held the same: the store's copy is the one that counts.
			if !durable && emitted > 0 && in.Kind != InputRestore {
				t.Fatalf("%s: update with nothing durable changed", where)
			}
			grace, idle := deadlines(s, timing.normal())
			if !armed[TimerGrace].Equal(grace) || !armed[TimerIdle].Equal(idle) {
				t.Fatalf("%s: to %s armed grace=%s idle=%s, want %s %s", where, fmtState(s),
					fmtTime(armed[TimerGrace]), fmtTime(armed[TimerIdle]), fmtTime(grace), fmtTime(idle))
			}
		}
	}
}

func earliest(armed map[Timer]time.Time) (Timer, time.Time) {
	var (
		tm   Timer
		when time.Time
	)
	for k, v := range armed {
		if when.IsZero() || v.Before(when) || (v.Equal(when) && k < tm) {
			tm, when = k, v
		}
	}
	return tm, when
}

func checkState(t *testing.T, where string, s State) {
	t.Helper()
	switch {
	case s.Conns < 0:
		t.Fatalf("%s: negative conns: %s", where, fmtState(s))
	case s.Status == Offline && (s.Conns != 0 || !s.GraceDeadline.IsZero()):
		t.Fatalf("%s: offline with conns or grace: %s", where, fmtState(s))
	case s.Status != Offline && s.Conns == 0 && s.GraceDeadline.IsZero():
		t.Fatalf("%s: no connection and no grace: %s", where, fmtState(s))
	case s.Conns > 0 && !s.GraceDeadline.IsZero():
		t.Fatalf("%s: connected with a grace: %s", where, fmtState(s))
	case s.ManualAway && s.Status == Online:
		t.Fatalf("%s: online while manually away: %s", where, fmtState(s))
	}
}
