package queues

import "time"

// Queue is one of the three queues a conversation sits in.
type Queue string

// The queues of DOMAIN.md.
const (
	QueueNew      Queue = "new"
	QueuePending  Queue = "pending"
	QueueResolved Queue = "resolved"
)

// Valid reports whether q names one of the three queues.
func (q Queue) Valid() bool {
	return q == QueueNew || q == QueuePending || q == QueueResolved
}

// Role is what a token holder may do. System is never in a token: it marks
// changes the hub makes by itself (timers, Remove Ownership).
type Role string

// Roles.
const (
	RoleAgent   Role = "agent"
	RoleAdmin   Role = "admin"
	RoleService Role = "service"
	RoleSystem  Role = "system"
)

// Status is an agent's presence: the green, orange and gray dots.
type Status string

// Statuses.
const (
	StatusOnline  Status = "online"
	StatusAway    Status = "away"
	StatusOffline Status = "offline"
)

// Reason says why something changed. Ownership changes use the reasons of
// DOMAIN.md's audit trail; queue moves reuse them where they fit and add
// ReasonMove for a manual move.
type Reason string

// Ownership and queue-move reasons.
const (
	ReasonManualAssign   Reason = "manual_assign"
	ReasonManualUnassign Reason = "manual_unassign"
	ReasonAutoOwnership  Reason = "auto_ownership"
	ReasonLogout         Reason = "logout"
	ReasonInbound        Reason = "inbound"
	ReasonBoomerang      Reason = "boomerang"
	ReasonResolved       Reason = "resolved"
	ReasonAdminRelease   Reason = "admin_release"
	ReasonMove           Reason = "move"
	ReasonCreated        Reason = "created"
)

// OwnershipReasons lists every reason an ownership change can carry, in a
// fixed order (metrics use it to pre-declare label values).
var OwnershipReasons = []Reason{
	ReasonManualAssign, ReasonManualUnassign, ReasonAutoOwnership, ReasonLogout,
	ReasonInbound, ReasonBoomerang, ReasonResolved, ReasonAdminRelease,
}

// Actor is who made a change: an agent, an admin, a service integration, or
// the hub itself (RoleSystem, empty ID).
type Actor struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
	Role Role   `json:"role"`
}

// System is the actor for changes the hub makes on its own.
var System = Actor{Role: RoleSystem}

// Agent is a support person (or an admin) of one workspace, with the
// presence the store last committed for them.
type Agent struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role Role   `json:"role"`

	Status Status `json:"status"`
	// StatusReason is the presence reason of the last transition
	// (connected, last_disconnect, grace_expired, manual_away, idle, ...).
	StatusReason string    `json:"status_reason,omitempty"`
	StatusSince  time.Time `json:"status_since"`
	// ManualAway is set while the agent has put themselves away; it survives
	// reconnects and restarts until they set themselves available.
	ManualAway bool `json:"manual_away,omitempty"`
	// OfflineSince is when the agent last became offline; zero while not
	// offline. Rule 5 of Remove Ownership compares it with a conversation's
	// OwnerSince.
	OfflineSince time.Time `json:"offline_since,omitzero"`
	// GraceDeadline is the stored end of the offline grace that started when
	// the agent's last connection ended; zero when no grace is running. It is
	// durable so a crash cannot lose the 2-minute promise.
	GraceDeadline time.Time `json:"grace_deadline,omitzero"`
}

// Conversation is one thread with one customer.
type Conversation struct {
	ID       string `json:"id"`
	Channel  string `json:"channel"`
	Customer string `json:"customer"`
	Subject  string `json:"subject,omitempty"`
	Queue    Queue  `json:"queue"`
	// Owner is the owning agent's id, "" when unowned.
	Owner string `json:"owner,omitempty"`
	// OwnerSince is when the current owner was set; zero when unowned.
	OwnerSince time.Time `json:"owner_since,omitzero"`
	// Version grows by one with every committed change to the conversation;
	// ownership changes are conditional on it.
	Version uint64 `json:"version"`
	// Boomerang is when the conversation moves back to new; zero for none.
	Boomerang    time.Time `json:"boomerang,omitzero"`
	CreatedAt    time.Time `json:"created_at"`
	LastActivity time.Time `json:"last_activity"`
	// Preview is the start of the last message, for queue lists.
	Preview string `json:"preview,omitempty"`
}

// Message is one customer inbound or agent reply on a conversation.
type Message struct {
	ID      string    `json:"id"`
	At      time.Time `json:"at"`
	From    Actor     `json:"from"` // RoleService for customer inbound
	Text    string    `json:"text"`
	Inbound bool      `json:"inbound"`
}

// AuditEntry is one line of a conversation's history: an ownership change
// (Kind "owner", From/To are agent ids, "" for unowned) or a queue move
// (Kind "queue", From/To are queue names). History is append-only.
type AuditEntry struct {
	Seq      uint64    `json:"seq"`
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"`
	From     string    `json:"from,omitempty"`
	FromName string    `json:"from_name,omitempty"`
	To       string    `json:"to,omitempty"`
	ToName   string    `json:"to_name,omitempty"`
	Actor    Actor     `json:"actor"`
	Reason   Reason    `json:"reason"`
}

// Audit entry kinds.
const (
	AuditOwner = "owner"
	AuditQueue = "queue"
)

// Settings are one workspace's settings. Durations are whole seconds so the
// JSON a client sends and reads is plain numbers.
type Settings struct {
	// RemoveOwnership: unown an agent's new conversations when they go
	// offline. Default false.
	RemoveOwnership bool `json:"remove_ownership"`
	// RemoveOwnershipSince is when RemoveOwnership was last switched on; agents
	// offline since before it are not swept (rule 6). Zero while off.
	RemoveOwnershipSince time.Time `json:"remove_ownership_since,omitzero"`
	// OfflineGrace in seconds: default 60, 0 to 90.
	OfflineGrace int `json:"offline_grace"`
	// IdleAway in seconds: default 600, 0 = never, at most 86400.
	IdleAway int `json:"idle_away"`
	// IdleLogout in seconds: default 0 = never, at most 86400.
	IdleLogout int `json:"idle_logout"`
	// AutoOwnership per channel name; a missing channel is off.
	AutoOwnership map[string]bool `json:"auto_ownership"`
	// DefaultBoomerang in seconds for conversations moved to pending:
	// default 0 = none, at most 30 days.
	DefaultBoomerang int `json:"default_boomerang"`
}

// Notification tells an agent that someone else assigned them a
// conversation. It is kept until the agent marks it read.
type Notification struct {
	Seq          uint64    `json:"seq"`
	At           time.Time `json:"at"`
	Agent        string    `json:"agent"`
	Conversation string    `json:"conversation"`
	Customer     string    `json:"customer,omitempty"`
	Subject      string    `json:"subject,omitempty"`
	By           Actor     `json:"by"`
}

// NotificationGroup is an agent's unread notifications as one grouped list:
// a count per assigner plus the items, newest first.
type NotificationGroup struct {
	Total int                 `json:"total"`
	ByWho []NotificationCount `json:"by_who"`
	Items []Notification      `json:"items"`
}

// NotificationCount is how many unread assignments one actor made.
type NotificationCount struct {
	By    Actor `json:"by"`
	Count int   `json:"count"`
}

// AdminLogEntry is one settings change in a workspace's admin log, or an
// admin action such as a release.
type AdminLogEntry struct {
	Seq   uint64    `json:"seq"`
	At    time.Time `json:"at"`
	Actor Actor     `json:"actor"`
	Field string    `json:"field"`
	Old   string    `json:"old"`
	New   string    `json:"new"`
}

// FilterKind selects conversations of a queue by owner.
type FilterKind string

// Filters of DOMAIN.md.
const (
	FilterAll     FilterKind = "all"
	FilterUnowned FilterKind = "unowned"
	FilterMine    FilterKind = "mine"
	FilterOthers  FilterKind = "others"
	FilterAgents  FilterKind = "agents"
)

// Filter is an ownership filter over new or pending. Me is the asking
// agent's id (for mine and others); Agents the chosen agents (for agents).
type Filter struct {
	Kind   FilterKind `json:"kind"`
	Agents []string   `json:"agents,omitempty"`
	Me     string     `json:"-"`
}

// EventKind says what an Event carries.
type EventKind string

// Event kinds.
const (
	EventConversation EventKind = "conversation"
	EventPresence     EventKind = "presence"
	EventSettings     EventKind = "settings"
	EventNotification EventKind = "notification"
	EventAgent        EventKind = "agent" // an agent joined or was renamed
)

// ConvState is the part of a conversation that views filter on.
type ConvState struct {
	Queue Queue  `json:"queue"`
	Owner string `json:"owner,omitempty"`
}

// PresenceChange is an agent's status transition.
type PresenceChange struct {
	Agent  string `json:"agent"`
	From   Status `json:"from"`
	To     Status `json:"to"`
	Reason string `json:"reason"`
	// LastSeen is when the agent's last connection ended (or the logout);
	// set on transitions to offline. Ownership removed in the same commit is
	// LastSeen + delay: the metric of the 2-minute promise.
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// Event is one committed change of one workspace. Seq is the workspace's
// sequence number: it grows by one per event, is assigned at commit, and is
// what clients resume from. Events leave the store only after commit, in
// Seq order per workspace.
type Event struct {
	Workspace string    `json:"-"`
	Seq       uint64    `json:"seq"`
	At        time.Time `json:"at"`
	Kind      EventKind `json:"kind"`
	Actor     Actor     `json:"actor"`
	Reason    Reason    `json:"reason,omitempty"`

	// Conversation events: the conversation after the change, and its queue
	// and owner before it (nil for a new conversation).
	Conv *Conversation `json:"conv,omitempty"`
	Prev *ConvState    `json:"prev,omitempty"`
	// Presence events.
	Presence *PresenceChange `json:"presence,omitempty"`
	// Agent events (and presence events carry the agent's new record too).
	Agent *Agent `json:"agent_record,omitempty"`
	// Settings events: the whole new settings.
	Settings *Settings `json:"settings,omitempty"`
	// Notification events: delivered only to Notification.Agent.
	Notification *Notification `json:"notification,omitempty"`

	// Wire is the event's JSON as sent to clients, encoded once at commit and
	// shared by every recipient; nil until the store fills it in.
	Wire []byte `json:"-"`
}

// Publisher receives committed events, in Seq order per workspace. Publish
// must not block: the store calls it from its commit loop. The hub is one
// implementation; a broker between hub nodes would be another.
type Publisher interface {
	Publish(workspace string, events []Event)
}
