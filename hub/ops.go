package hub

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"slices"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// The operations of docs/protocol.md. Each runs on the connection's reader
// goroutine with a context bounded by reqTimeout, and returns the reply's
// result or an error that errorFor maps to a reply error.

type operation struct {
	fn func(c *conn, ctx context.Context, req *request) (any, error)
	// admin operations are refused (forbidden) to other roles before fn
	// runs.
	admin bool
	// after runs once the reply is queued.
	after func(c *conn, req *request)
	// notActivity: the request is not the agent doing something (a
	// client's heartbeat), so it must not end automatic away.
	notActivity bool
}

var operations = map[string]operation{
	"subscribe":          {fn: (*conn).subscribe},
	"unsubscribe":        {fn: (*conn).unsubscribe},
	"page":               {fn: (*conn).page},
	"conversation":       {fn: (*conn).conversation},
	"history":            {fn: (*conn).history},
	"assign":             {fn: (*conn).assign},
	"unassign":           {fn: (*conn).unassign},
	"reply":              {fn: (*conn).replyOp},
	"move":               {fn: (*conn).move},
	"boomerang":          {fn: (*conn).boomerang},
	"cancel_boomerang":   {fn: (*conn).cancelBoomerang},
	"status":             {fn: (*conn).status},
	"notifications_read": {fn: (*conn).notificationsRead},
	"activity":           {fn: (*conn).activity},
	"ping":               {fn: (*conn).activity, notActivity: true},
	"logout":             {fn: (*conn).logout, after: (*conn).afterLogout},
	"settings":           {fn: (*conn).settings},
	"update_settings":    {fn: (*conn).updateSettings, admin: true},
	"release_offline":    {fn: (*conn).releaseOffline, admin: true},
	"force_offline":      {fn: (*conn).forceOffline, admin: true, after: (*conn).afterForceOffline},
	"admin_log":          {fn: (*conn).adminLog, admin: true},
}

// boomerangPresets are the console's boomerang choices (DOMAIN.md).
var boomerangPresets = map[string]time.Duration{
	"15m": 15 * time.Minute,
	"1h":  time.Hour,
	"4h":  4 * time.Hour,
	"24h": 24 * time.Hour,
}

// Limits of the list operations.
const (
	defaultLimit    = 50
	defaultLogLimit = 50
	maxLogLimit     = 500
	// maxBoomerangIn is the longest relative boomerang, in seconds: the
	// store's bound, so the hub never accepts what the store refuses.
	maxBoomerangIn = int64(queues.MaxBoomerangAhead / time.Second)
)

func (c *conn) backend() Backend { return c.h.cfg.Backend }

// subscribe registers a view and answers with its first page, or with
// since, with the view's events after since.
//
// Why the view then sees every later event exactly once: the view is
// registered (pending) before the store is read, so every event committed
// after that read is published to a connection that already has the view,
// and is queued. The read gives the floor: the page's Seq (every event up
// to it is in the page), or the last event the resume returned. While the
// view is pending the writer is held; when the reply is queued, events
// queued only for this view at or below the floor are dropped, and the
// reply goes in before the first event above it. Events at or below the
// floor whose publication comes later still are refused by view.wants.
// So the client reads the reply, then exactly the view's events above its
// seq. (An event at or below the floor that another view of the same
// connection wants may still follow the reply; docs/protocol.md tells the
// client to apply an event to a view only above the view's seq.)
func (c *conn) subscribe(_ context.Context, req *request) (any, error) {
	if req.View == "" || len(req.View) > maxViewIDLen {
		return nil, invalidField("view", "must be 1 to %d characters", maxViewIDLen)
	}
	if req.Queue != queues.QueueNew && req.Queue != queues.QueuePending {
		return nil, invalidField("queue", "must be new or pending")
	}
	f, err := checkFilter(req.Filter, c.id.Agent)
	if err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Limit)
	if err != nil {
		return nil, err
	}

	v := &view{id: req.View, queue: req.Queue, filter: f, pending: true}
	c.mu.Lock()
	if i := slices.IndexFunc(c.views, func(x *view) bool { return x.id == v.id }); i >= 0 {
		c.views[i] = v
	} else if len(c.views) >= maxViews {
		c.mu.Unlock()
		return nil, invalidField("view", "at most %d views per connection", maxViews)
	} else {
		c.views = append(c.views, v)
	}
	c.held = true
	c.mu.Unlock()

	res, floor, err := c.viewState(v, req, limit)
	if err != nil {
		c.dropView(v)
		return nil, err
	}
	c.rd.activate = &activation{view: v, floor: floor}
	return res, nil
}

// viewState reads what a subscribe answers and the floor of the view.
func (c *conn) viewState(v *view, req *request, limit int) (any, uint64, error) {
	b, ws := c.backend(), c.id.Workspace
	if req.Since != nil && *req.Since <= b.Head(ws) {
		since := *req.Since
		events, complete, err := b.EventsSince(ws, since, maxResume)
		if err != nil {
			return nil, 0, err
		}
		if complete {
			res := subscribeResumed{View: v.id, Seq: since, Resumed: true, Events: []json.RawMessage{}}
			for i := range events {
				ev := &events[i]
				res.Seq = ev.Seq
				if ev.Kind == queues.EventConversation && v.wants(ev) {
					res.Events = append(res.Events, wireOf(ev))
				}
			}
			return res, res.Seq, nil
		}
	}
	page, err := b.List(ws, queues.ListQuery{Queue: v.queue, Filter: v.filter, Limit: limit})
	if err != nil {
		return nil, 0, err
	}
	return subscribePage{
		View: v.id, Seq: page.Seq, Items: nonNil(page.Items), Next: page.Next, Counts: page.Counts,
		Resync: req.Since != nil,
	}, page.Seq, nil
}

func (c *conn) unsubscribe(_ context.Context, req *request) (any, error) {
	if req.View == "" {
		return nil, invalidField("view", "required")
	}
	c.mu.Lock()
	c.views = slices.DeleteFunc(c.views, func(v *view) bool { return v.id == req.View })
	c.mu.Unlock()
	return emptyResult{}, nil
}

func (c *conn) page(_ context.Context, req *request) (any, error) {
	if !req.Queue.Valid() {
		return nil, invalidField("queue", "must be new, pending or resolved")
	}
	f, err := checkFilter(req.Filter, c.id.Agent)
	if err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	p, err := c.backend().List(c.id.Workspace, queues.ListQuery{Queue: req.Queue, Filter: f, Limit: limit, Cursor: req.Cursor})
	if err != nil {
		return nil, err
	}
	p.Items = nonNil(p.Items)
	return p, nil
}

func (c *conn) conversation(_ context.Context, req *request) (any, error) {
	if err := needConv(req); err != nil {
		return nil, err
	}
	b, ws := c.backend(), c.id.Workspace
	conv, err := b.Conversation(ws, req.Conv)
	if err != nil {
		return nil, err
	}
	hist, err := b.History(ws, req.Conv)
	if err != nil {
		return nil, err
	}
	msgs, err := b.Messages(ws, req.Conv, messagesShown)
	if err != nil {
		return nil, err
	}
	return conversationResult{Conv: conv, History: nonNil(hist), Messages: nonNil(msgs)}, nil
}

func (c *conn) history(_ context.Context, req *request) (any, error) {
	if err := needConv(req); err != nil {
		return nil, err
	}
	b, ws := c.backend(), c.id.Workspace
	if _, err := b.Conversation(ws, req.Conv); err != nil {
		return nil, err
	}
	hist, err := b.History(ws, req.Conv)
	if err != nil {
		return nil, err
	}
	return historyResult{History: nonNil(hist)}, nil
}

func (c *conn) assign(ctx context.Context, req *request) (any, error) {
	if err := needConv(req); err != nil {
		return nil, err
	}
	if req.Agent == "" {
		return nil, invalidField("agent", "required (use unassign to clear the owner)")
	}
	if err := needVersion(req); err != nil {
		return nil, err
	}
	return convReply(c.backend().Assign(ctx, c.id.Workspace, c.id.Actor(), req.Conv, req.Agent, req.Version))
}

func (c *conn) unassign(ctx context.Context, req *request) (any, error) {
	if err := needConv(req); err != nil {
		return nil, err
	}
	if err := needVersion(req); err != nil {
		return nil, err
	}
	return convReply(c.backend().Assign(ctx, c.id.Workspace, c.id.Actor(), req.Conv, "", req.Version))
}

func (c *conn) replyOp(ctx context.Context, req *request) (any, error) {
	if err := needConv(req); err != nil {
		return nil, err
	}
	msgID := req.MessageID
	if msgID == "" {
		// The id is the store's dedupe key; a client that retries a reply
		// sends its own.
		msgID = "reply-" + rand.Text()
	}
	return convReply(c.backend().Reply(ctx, c.id.Workspace, c.id.Actor(), req.Conv, msgID, req.Text))
}

func (c *conn) move(ctx context.Context, req *request) (any, error) {
	if err := needConv(req); err != nil {
		return nil, err
	}
	if !req.Queue.Valid() {
		return nil, invalidField("queue", "must be new, pending or resolved")
	}
	return convReply(c.backend().Move(ctx, c.id.Workspace, c.id.Actor(), req.Conv, req.Queue, req.Version))
}

func (c *conn) boomerang(ctx context.Context, req *request) (any, error) {
	if err := needConv(req); err != nil {
		return nil, err
	}
	given := 0
	var at time.Time
	if req.Preset != "" {
		given++
		d, ok := boomerangPresets[req.Preset]
		if !ok {
			return nil, invalidField("preset", "must be 15m, 1h, 4h or 24h")
		}
		at = time.Now().Add(d)
	}
	if req.In != nil {
		given++
		if *req.In <= 0 || *req.In > maxBoomerangIn {
			return nil, invalidField("in", "must be 1 to %d seconds", maxBoomerangIn)
		}
		at = time.Now().Add(time.Duration(*req.In) * time.Second)
	}
	if req.At != nil {
		given++
		at = *req.At
	}
	if given != 1 {
		return nil, invalidField("preset", "give exactly one of preset, in and at")
	}
	return convReply(c.backend().SetBoomerang(ctx, c.id.Workspace, c.id.Actor(), req.Conv, at, req.Version))
}

func (c *conn) cancelBoomerang(ctx context.Context, req *request) (any, error) {
	if err := needConv(req); err != nil {
		return nil, err
	}
	return convReply(c.backend().SetBoomerang(ctx, c.id.Workspace, c.id.Actor(), req.Conv, time.Time{}, req.Version))
}

func (c *conn) status(_ context.Context, req *request) (any, error) {
	switch req.Status {
	case "available":
		c.h.cfg.Presence.SetAway(c.id.Workspace, c.id.Agent, false)
	case "away":
		c.h.cfg.Presence.SetAway(c.id.Workspace, c.id.Agent, true)
	default:
		return nil, invalidField("status", "must be available or away")
	}
	return statusResult{Status: req.Status}, nil
}

func (c *conn) notificationsRead(ctx context.Context, req *request) (any, error) {
	n, err := c.backend().MarkNotificationsRead(ctx, c.id.Workspace, c.id.Agent, req.UpTo)
	if err != nil {
		return nil, err
	}
	return readResult{Read: n}, nil
}

// activity only exists to be counted as activity, which every request is.
func (c *conn) activity(context.Context, *request) (any, error) { return emptyResult{}, nil }

func (c *conn) logout(context.Context, *request) (any, error) {
	c.h.cfg.Presence.Logout(c.id.Workspace, c.id.Agent)
	return emptyResult{}, nil
}

// afterLogout closes every socket of the agent, this one after its reply:
// logging out is per agent, like presence.
func (c *conn) afterLogout(*request) {
	c.h.CloseAgent(c.id.Workspace, c.id.Agent, CloseLoggedOut, "logged out")
}

func (c *conn) settings(context.Context, *request) (any, error) {
	s, err := c.backend().Settings(c.id.Workspace)
	if err != nil {
		return nil, err
	}
	return settingsResult{Settings: s}, nil
}

func (c *conn) updateSettings(ctx context.Context, req *request) (any, error) {
	if req.Settings == nil {
		return nil, invalidField("settings", "required")
	}
	s, err := c.backend().UpdateSettings(ctx, c.id.Workspace, c.id.Actor(), *req.Settings)
	if err != nil {
		return nil, err
	}
	return settingsResult{Settings: s}, nil
}

func (c *conn) releaseOffline(ctx context.Context, _ *request) (any, error) {
	n, err := c.backend().ReleaseOffline(ctx, c.id.Workspace, c.id.Actor())
	if err != nil {
		return nil, err
	}
	return releasedResult{Released: n}, nil
}

func (c *conn) forceOffline(_ context.Context, req *request) (any, error) {
	if req.Agent == "" {
		return nil, invalidField("agent", "required")
	}
	if _, err := c.backend().Agent(c.id.Workspace, req.Agent); err != nil {
		return nil, err
	}
	c.h.cfg.Presence.ForceOffline(c.id.Workspace, req.Agent)
	return emptyResult{}, nil
}

// afterForceOffline closes the agent's sockets once the admin has the
// reply (the admin may be forcing themselves).
func (c *conn) afterForceOffline(req *request) {
	c.h.CloseAgent(c.id.Workspace, req.Agent, CloseLoggedOut, "forced offline")
}

func (c *conn) adminLog(_ context.Context, req *request) (any, error) {
	limit := req.Limit
	if limit == 0 {
		limit = defaultLogLimit
	}
	if limit < 0 || limit > maxLogLimit {
		return nil, invalidField("limit", "must be 1 to %d", maxLogLimit)
	}
	entries, err := c.backend().AdminLog(c.id.Workspace, limit)
	if err != nil {
		return nil, err
	}
	return entriesResult{Entries: nonNil(entries)}, nil
}

func needConv(req *request) error {
	if req.Conv == "" {
		return invalidField("conv", "required")
	}
	return nil
}

// needVersion: an ownership change must say which version its sender saw
// (versions start at 1), so two agents racing cannot both win silently.
func needVersion(req *request) error {
	if req.Version == 0 {
		return invalidField("version", "required: the conversation version you saw")
	}
	return nil
}

func pageLimit(n int) (int, error) {
	if n == 0 {
		return defaultLimit, nil
	}
	if n < 0 || n > pageMax {
		return 0, invalidField("limit", "must be 1 to %d", pageMax)
	}
	return n, nil
}

func convReply(r queues.Result, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return convResult{Conv: r.Conv, Seq: r.Seq}, nil
}
