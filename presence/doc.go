// Package presence decides every agent's status (online, away, offline) and
// runs the timers that change it. It does no I/O and imports nothing of
// presencehub: the hub reports connections and activity to a Tracker, and
// every durable change leaves as an Update for the caller to commit and
// broadcast.
//
// # What it owns
//
// Next is the whole state machine: a pure function of one agent's State, an
// Input, the time and the workspace's Timing, returning the new State and
// the Effects to carry out (an Update to emit, timers to arm or cancel).
// Tracker applies it: one goroutine, Run, owns every agent's State, every
// workspace's Timing and every timer.
//
// Presence is per agent, never per connection. The rules:
//
//   - Connecting makes an offline agent online (reason connected), or away
//     if they had put themselves away: manual away is sticky across
//     reconnects, grace expiry and restarts until the agent sets themselves
//     available. Connecting counts as activity.
//   - The last connection ending starts the grace: the status stays, and an
//     Update with reason last_disconnect carries the deadline so the store
//     can keep it durable. A connection coming back inside the grace cancels
//     it (reason reconnected, same status): nobody else sees anything. When
//     the grace runs out the agent goes offline (grace_expired). A grace of
//     0 makes them offline as soon as the last connection ends.
//   - A second tab opening or closing while others remain changes nothing
//     and emits nothing; neither does activity that changes nothing.
//   - After the workspace's IdleAway with no activity on any connection, a
//     connected online agent becomes away (idle); any activity, a new
//     connection or setting available makes them online again (activity,
//     available). Activity never ends a manual away. Idle timeouts count
//     only while connected: without a connection the grace decides.
//   - After IdleLogout with no activity the agent is logged out
//     (idle_logout), manual away or not.
//   - Logout and ForceOffline are immediate, even with connections open: the
//     hub closes them, and their Disconnects, arriving while the agent is
//     offline, are ignored. A connection opened after that starts a new
//     session from one connection.
//   - Logging out (explicitly, idle or forced) ends the session and clears
//     manual away: the next login starts available. Losing the connection
//     (grace expiry) is not a logout and keeps it.
//   - SetAway for an offline agent is ignored: there is no session to set
//     it in. Activity with no connection counted is ignored: it cannot have
//     happened on one.
//   - A restored agent (after a restart) has no connection: their grace runs
//     until the stored deadline, or a full grace from start-up; an overdue
//     one makes them offline at once (grace_expired). Restoring an agent who
//     has already connected only adds a stored manual away (reason restored).
//   - Configure re-counts running timers: a running grace runs for the new
//     length from when the last connection ended (shorter or longer; one
//     that has already run out ends now, and a moved deadline is announced
//     again with reason last_disconnect), and idle timeouts run from the
//     last activity (one that has already run out applies now). Turning
//     IdleAway off leaves an automatically away agent away until their next
//     activity.
//
// The connection count cannot tell connections apart: a Disconnect of a
// connection the logout closed that arrives after the agent has logged in
// again is counted against the new session. The hub closes those sockets
// at once, well before a person can log in again.
//
// # Concurrency
//
// Next is a pure function and safe anywhere. A Tracker's input methods
// (Connect, Disconnect, Activity, SetAway, Logout, ForceOffline, Configure,
// Restore) are safe from any goroutine and return quickly: they queue the
// input on a buffered channel (1024 inputs) and return. Inputs are applied
// in the order they were queued; the time of an input is when Run applies
// it. When the buffer is full, an input method blocks until Run takes one:
// an input is never lost while Run runs. Inputs sent before Run starts wait
// in the buffer (a full buffer waits for Run). Once Run has returned, inputs
// are dropped and the methods return at once. Snapshot waits for Run to
// answer, after every input queued before it.
//
// The onUpdate callback is called from the Run goroutine, in order, and
// must not block or call back into the Tracker. Updates of one agent are
// never reordered.
//
// Run returns when its context is done, stopping every timer. The Tracker
// keeps the state of every agent it has seen; it starts no goroutine of its
// own.
package presence
