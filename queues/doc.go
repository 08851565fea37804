// Package queues owns presencehub's state: workspaces and their settings,
// agents with their committed presence, conversations in the new, pending
// and resolved queues, ownership and the Remove Ownership rules, the audit
// trail, the admin log, notifications, durable timers (boomerangs and
// offline-grace deadlines) and the event log clients resume from. It is
// stored in Badger and held in memory.
//
// # Concurrency
//
// A Store is safe for concurrent use. Every change goes through one
// committer goroutine (commit.go): it applies requests in order, writes each
// batch in one Badger transaction and only then installs the result in
// memory, publishes the events and answers the callers. Reads (List,
// Conversation, Agents, Settings, Notifications, Head, Stats) take a
// workspace's read lock and never touch Badger; History, Messages, AdminLog
// and EventsSince read Badger. A reader that runs after Publisher.Publish
// returned sees the change, and a Page's Seq matches its items.
//
// Methods that may block take a context first: the caller waits for its
// change's commit or for ctx. A change whose caller gave up may still
// commit; everyone learns of it through the events. After Close every change
// fails with ErrUnavailable; if a commit fails, that batch's callers get
// ErrUnavailable, memory is unchanged and Ready reports the failure until a
// later commit succeeds.
//
// Publisher.Publish is called from the committer goroutine, in Seq order per
// workspace, and must not block.
//
// Run fires durable timers and reconciles; it runs until its context ends or
// the store closes. Timers overdue at start-up fire inside Open, before it
// returns, so they are applied exactly once and before any reader looks.
//
// # Decisions
//
// A workspace is created by EnsureWorkspace, EnsureAgent or the first
// Inbound naming it. Ids (workspace, agent, conversation) are 1 to 128
// letters, digits or "-_.:@" and not "." or ".." (ValidID), because '/'
// separates the parts of keys.
// Assigning a resolved conversation is refused (ErrConflict): resolved
// conversations have no owner. Auto-Ownership likewise leaves a resolved
// conversation unowned. A boomerang must lie in the future and at most 365
// days ahead; setting one on a conversation in new is refused
// (ErrConflict), and entering new or resolved cancels it. A grace deadline
// fires in the store only GraceSlack after it passed: the presence tracker
// acts at the deadline itself, and the store steps in when it did not. A grace deadline alone (a reconnect inside
// the grace) is stored without an event, and marking notifications read
// emits none: neither is visible to anyone else.
package queues
