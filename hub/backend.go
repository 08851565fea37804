package hub

import (
	"context"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// Backend is what the hub needs of the store. *queues.Store implements it;
// cmd/presencehub passes it in.
type Backend interface {
	EnsureAgent(ctx context.Context, ws string, a queues.Agent) (queues.Agent, error)
	// ConnectAgent is EnsureAgent for a connection that is opening: an
	// agent it creates is online already (see queues.Store.ConnectAgent).
	ConnectAgent(ctx context.Context, ws string, a queues.Agent) (got queues.Agent, created bool, err error)
	Inbound(ctx context.Context, ws string, in queues.Inbound) (queues.Result, error)
	Reply(ctx context.Context, ws string, by queues.Actor, conv, messageID, text string) (queues.Result, error)
	Assign(ctx context.Context, ws string, by queues.Actor, conv, owner string, version uint64) (queues.Result, error)
	Move(ctx context.Context, ws string, by queues.Actor, conv string, to queues.Queue, version uint64) (queues.Result, error)
	SetBoomerang(ctx context.Context, ws string, by queues.Actor, conv string, at time.Time, version uint64) (queues.Result, error)
	ReleaseOffline(ctx context.Context, ws string, by queues.Actor) (int, error)
	UpdateSettings(ctx context.Context, ws string, by queues.Actor, patch queues.SettingsPatch) (queues.Settings, error)
	MarkNotificationsRead(ctx context.Context, ws, agent string, upTo uint64) (int, error)

	Settings(ws string) (queues.Settings, error)
	Agents(ws string) ([]queues.Agent, error)
	// AppendAgentsJSON appends the JSON array json.Marshal writes for what
	// Agents returns.
	AppendAgentsJSON(dst []byte, ws string) ([]byte, error)
	Agent(ws, id string) (queues.Agent, error)
	Conversation(ws, id string) (queues.Conversation, error)
	History(ws, conv string) ([]queues.AuditEntry, error)
	Messages(ws, conv string, limit int) ([]queues.Message, error)
	List(ws string, q queues.ListQuery) (queues.Page, error)
	Notifications(ws, agent string) (queues.NotificationGroup, error)
	AdminLog(ws string, limit int) ([]queues.AdminLogEntry, error)
	Head(ws string) uint64
	EventsSince(ws string, since uint64, max int) (events []queues.Event, complete bool, err error)
	Ready() error
}

// ChannelLister is implemented by a Backend that can list every channel a
// workspace has seen, for hello.channels. Without it, hello lists the
// channels named in the workspace's Auto-Ownership settings.
type ChannelLister interface {
	Channels(ws string) []string
}

// Presence is what the hub tells the presence tracker. Calls must return
// quickly; the tracker applies them on its own goroutine.
type Presence interface {
	Connect(ws, agent string)
	Disconnect(ws, agent string)
	Activity(ws, agent string)
	SetAway(ws, agent string, away bool)
	Logout(ws, agent string)
	ForceOffline(ws, agent string)
}

// Delivery tells when a workspace's events up to a sequence number have
// reached the sockets, for a hub whose events arrive through a Dispatcher
// (which implements it). Without one (events published synchronously)
// replies need no waiting.
type Delivery interface {
	WaitDelivered(ws string, seq uint64, max time.Duration) bool
}

// Observer receives the hub's measurements. metrics.Metrics implements it;
// a nil Observer in Config means none are taken. Calls must be cheap and
// must not block: they sit on the broadcast and connection paths.
type Observer interface {
	ConnOpened()
	ConnClosed()
	// Rejected counts a refused connection or request; reason is one of the
	// Reject* constants, never a client-supplied value.
	Rejected(reason string)
	// Sent counts messages handed to sockets (one per event per recipient).
	Sent(n int)
	BroadcastDuration(d time.Duration)
	SlowConsumer()
}

// Reasons a connection or request is rejected, for Observer.Rejected.
const (
	RejectNoToken     = "no_token"
	RejectBadToken    = "bad_token"
	RejectExpired     = "expired"
	RejectOrigin      = "origin"
	RejectRole        = "role"
	RejectRateLimited = "rate_limited"
	RejectTooBig      = "too_big"
	RejectShutdown    = "shutdown"
)
