package queues

import "time"

// Inbound is a customer message pushed in by the helpdesk backend. The
// conversation is created on its first inbound. MessageID makes delivery
// idempotent: a repeated id changes nothing.
type Inbound struct {
	Conversation string
	MessageID    string
	Channel      string // required when the conversation is new
	Customer     string // required when the conversation is new
	Subject      string
	Text         string
}

// Result is what a conversation change returns: the conversation after it,
// whether anything changed (false for a repeated inbound), and the workspace
// sequence number of the last event the change committed (0 if none).
type Result struct {
	Conv    Conversation
	Changed bool
	Seq     uint64
}

// PresenceUpdate is a presence state to commit for one agent: the status it
// should now have and why, the sticky manual-away flag, the running grace
// deadline (zero for none) and, for a transition to offline, when the last
// connection ended. ApplyPresence is level-based: committing the status the
// agent already has emits no transition.
type PresenceUpdate struct {
	Agent         string
	Status        Status
	Reason        string
	ManualAway    bool
	GraceDeadline time.Time
	LastSeen      time.Time
}

// SettingsPatch changes some settings; nil fields stay as they are.
// AutoOwnership entries are merged per channel.
type SettingsPatch struct {
	RemoveOwnership  *bool           `json:"remove_ownership,omitempty"`
	OfflineGrace     *int            `json:"offline_grace,omitempty"`
	IdleAway         *int            `json:"idle_away,omitempty"`
	IdleLogout       *int            `json:"idle_logout,omitempty"`
	DefaultBoomerang *int            `json:"default_boomerang,omitempty"`
	AutoOwnership    map[string]bool `json:"auto_ownership,omitempty"`
}

// ListQuery asks for one page of a queue. Limit defaults to 50 and is at most
// 500. Cursor is the Next of the previous page ("" for the first).
type ListQuery struct {
	Queue  Queue
	Filter Filter
	Limit  int
	Cursor string
}

// Page is one page of a queue, newest activity first, with the queue's
// counts and the workspace sequence number the page reflects: every event
// up to Seq is in it, none after.
type Page struct {
	Items  []Conversation `json:"items"`
	Next   string         `json:"next,omitempty"`
	Counts Counts         `json:"counts"`
	Seq    uint64         `json:"seq"`
}

// Counts of one queue by ownership, for the asking agent. Matching is how
// many conversations the page's filter selects.
type Counts struct {
	Total    int `json:"total"`
	Unowned  int `json:"unowned"`
	Mine     int `json:"mine"`
	Others   int `json:"others"`
	Matching int `json:"matching"`
}
