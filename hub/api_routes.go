package hub

import (
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// The endpoints of docs/http-api.md. Each checks what the request names,
// calls the store with the token's workspace and identity, and answers.

// apiConvResult is the answer of every conversation change.
type apiConvResult struct {
	Conversation queues.Conversation `json:"conversation"`
	Seq          uint64              `json:"seq"`
}

// apiBoomerangPresets are the boomerang choices of the console (DOMAIN.md).
var apiBoomerangPresets = map[string]time.Duration{
	"15m": 15 * time.Minute,
	"1h":  time.Hour,
	"4h":  4 * time.Hour,
	"24h": 24 * time.Hour,
}

func (a *API) inbound(w http.ResponseWriter, r *http.Request, id Identity) error {
	conv, err := apiPathID(r)
	if err != nil {
		return err
	}
	var body struct {
		apiScope
		MessageID string `json:"message_id"`
		Channel   string `json:"channel"`
		Customer  string `json:"customer"`
		Subject   string `json:"subject"`
		Text      string `json:"text"`
	}
	if err := a.readBody(w, r, id, &body, false); err != nil {
		return err
	}
	// message_id and channel are checked by the store, which owns their
	// rules: a message id may be any e-mail Message-ID, a channel becomes
	// an Auto-Ownership key.
	res, err := a.backend.Inbound(r.Context(), id.Workspace, queues.Inbound{
		Conversation: conv,
		MessageID:    body.MessageID,
		Channel:      body.Channel,
		Customer:     body.Customer,
		Subject:      body.Subject,
		Text:         body.Text,
	})
	if err != nil {
		return err
	}
	a.writeJSON(w, http.StatusOK, struct {
		Conversation queues.Conversation `json:"conversation"`
		Duplicate    bool                `json:"duplicate"`
		Seq          uint64              `json:"seq"`
	}{res.Conv, !res.Changed, res.Seq})
	return nil
}

func (a *API) reply(w http.ResponseWriter, r *http.Request, id Identity) error {
	conv, err := apiPathID(r)
	if err != nil {
		return err
	}
	var body struct {
		apiScope
		Text      string `json:"text"`
		MessageID string `json:"message_id"`
	}
	if err := a.readBody(w, r, id, &body, false); err != nil {
		return err
	}
	if body.MessageID == "" {
		// The store keys messages by id. Without one from the client the
		// reply gets a fresh id, so a retried request is a second reply:
		// clients that retry send their own message_id.
		body.MessageID = "reply-" + rand.Text()
	}
	res, err := a.backend.Reply(r.Context(), id.Workspace, id.Actor(), conv, body.MessageID, body.Text)
	return a.convResult(w, res, err)
}

func (a *API) assign(w http.ResponseWriter, r *http.Request, id Identity) error {
	conv, err := apiPathID(r)
	if err != nil {
		return err
	}
	var body struct {
		apiScope
		Agent   string  `json:"agent"`
		Version *uint64 `json:"version"`
	}
	if err := a.readBody(w, r, id, &body, false); err != nil {
		return err
	}
	if err := apiValidID("agent", body.Agent); err != nil {
		return err
	}
	if body.Version == nil {
		return apiInvalid("version", "required: the conversation's version you last saw")
	}
	res, err := a.backend.Assign(r.Context(), id.Workspace, id.Actor(), conv, body.Agent, *body.Version)
	return a.convResult(w, res, err)
}

func (a *API) unassign(w http.ResponseWriter, r *http.Request, id Identity) error {
	conv, err := apiPathID(r)
	if err != nil {
		return err
	}
	var body struct {
		apiScope
		Version *uint64 `json:"version"`
	}
	if err := a.readBody(w, r, id, &body, false); err != nil {
		return err
	}
	if body.Version == nil {
		return apiInvalid("version", "required: the conversation's version you last saw")
	}
	res, err := a.backend.Assign(r.Context(), id.Workspace, id.Actor(), conv, "", *body.Version)
	return a.convResult(w, res, err)
}

func (a *API) move(w http.ResponseWriter, r *http.Request, id Identity) error {
	conv, err := apiPathID(r)
	if err != nil {
		return err
	}
	var body struct {
		apiScope
		Queue   queues.Queue `json:"queue"`
		Version uint64       `json:"version"`
	}
	if err := a.readBody(w, r, id, &body, false); err != nil {
		return err
	}
	if !body.Queue.Valid() {
		return apiInvalid("queue", "want new, pending or resolved")
	}
	res, err := a.backend.Move(r.Context(), id.Workspace, id.Actor(), conv, body.Queue, body.Version)
	return a.convResult(w, res, err)
}

func (a *API) setBoomerang(w http.ResponseWriter, r *http.Request, id Identity) error {
	conv, err := apiPathID(r)
	if err != nil {
		return err
	}
	var body struct {
		apiScope
		At      string `json:"at"`
		In      *int64 `json:"in"`
		Preset  string `json:"preset"`
		Version uint64 `json:"version"`
	}
	if err := a.readBody(w, r, id, &body, false); err != nil {
		return err
	}
	given := 0
	for _, set := range []bool{body.At != "", body.In != nil, body.Preset != ""} {
		if set {
			given++
		}
	}
	if given != 1 {
		return apiInvalid("preset", "give exactly one of preset, in and at")
	}
	var at time.Time
	switch {
	case body.At != "":
		if at, err = time.Parse(time.RFC3339, body.At); err != nil {
			return apiInvalid("at", "want an RFC 3339 time such as 2026-11-21T10:00:00Z")
		}
	case body.In != nil:
		// The store's bound (a year) also keeps the multiplication below
		// from overflowing; the WebSocket checks the same one.
		if *body.In < 1 || *body.In > maxBoomerangIn {
			return apiInvalid("in", "want a number of seconds from 1 to a year")
		}
		at = time.Now().Add(time.Duration(*body.In) * time.Second)
	default:
		d, ok := apiBoomerangPresets[body.Preset]
		if !ok {
			return apiInvalid("preset", "want 15m, 1h, 4h or 24h")
		}
		at = time.Now().Add(d)
	}
	res, err := a.backend.SetBoomerang(r.Context(), id.Workspace, id.Actor(), conv, at, body.Version)
	return a.convResult(w, res, err)
}

func (a *API) cancelBoomerang(w http.ResponseWriter, r *http.Request, id Identity) error {
	conv, err := apiPathID(r)
	if err != nil {
		return err
	}
	var body struct{ apiScope }
	if err := a.readBody(w, r, id, &body, true); err != nil {
		return err
	}
	// The zero time is the store's "no boomerang".
	res, err := a.backend.SetBoomerang(r.Context(), id.Workspace, id.Actor(), conv, time.Time{}, 0)
	return a.convResult(w, res, err)
}

func (a *API) convResult(w http.ResponseWriter, res queues.Result, err error) error {
	if err != nil {
		return err
	}
	a.writeJSON(w, http.StatusOK, apiConvResult{res.Conv, res.Seq})
	return nil
}

// apiPageMax is the largest page, as the WebSocket hello's limits.page_max.
const apiPageMax = 500

func (a *API) list(w http.ResponseWriter, r *http.Request, id Identity) error {
	q, err := apiQuery(r, id, "queue", "filter", "agents", "limit", "cursor")
	if err != nil {
		return err
	}
	lq := queues.ListQuery{Queue: queues.QueueNew, Cursor: q["cursor"],
		Filter: queues.Filter{Kind: queues.FilterAll, Me: id.Agent}}
	if s := q["queue"]; s != "" {
		lq.Queue = queues.Queue(s)
		if !lq.Queue.Valid() {
			return apiInvalid("queue", "want new, pending or resolved")
		}
	}
	if s := q["filter"]; s != "" {
		lq.Filter.Kind = queues.FilterKind(s)
	}
	switch lq.Filter.Kind {
	case queues.FilterAll, queues.FilterUnowned, queues.FilterMine, queues.FilterOthers:
		if q["agents"] != "" {
			return apiInvalid("agents", "only with filter=agents")
		}
	case queues.FilterAgents:
		if q["agents"] == "" {
			return apiInvalid("agents", "filter=agents needs agents=ID,ID,...")
		}
		for ag := range strings.SplitSeq(q["agents"], ",") {
			if err := apiValidID("agents", ag); err != nil {
				return err
			}
			lq.Filter.Agents = append(lq.Filter.Agents, ag)
		}
	default:
		return apiInvalid("filter", "want all, unowned, mine, others or agents")
	}
	if lq.Limit, err = apiQueryInt(q, "limit", apiPageMax); err != nil {
		return err
	}
	page, err := a.backend.List(id.Workspace, lq)
	if errors.Is(err, queues.ErrNotFound) {
		// The only thing List cannot find is the workspace: nothing has
		// happened in it yet, which is an empty queue, not an error.
		page, err = queues.Page{}, nil
	}
	if err != nil {
		return err
	}
	if page.Items == nil {
		page.Items = []queues.Conversation{}
	}
	a.writeJSON(w, http.StatusOK, page)
	return nil
}

func (a *API) conversation(w http.ResponseWriter, r *http.Request, id Identity) error {
	conv, err := apiPathID(r)
	if err != nil {
		return err
	}
	if _, err := apiQuery(r, id); err != nil {
		return err
	}
	c, err := a.backend.Conversation(id.Workspace, conv)
	if err != nil {
		return err
	}
	hist, err := a.backend.History(id.Workspace, conv)
	if err != nil {
		return err
	}
	msgs, err := a.backend.Messages(id.Workspace, conv, apiMessages)
	if err != nil {
		return err
	}
	a.writeJSON(w, http.StatusOK, struct {
		Conversation queues.Conversation `json:"conversation"`
		History      []queues.AuditEntry `json:"history"`
		Messages     []queues.Message    `json:"messages"`
	}{c, apiNonNil(hist), apiNonNil(msgs)})
	return nil
}

func (a *API) agents(w http.ResponseWriter, r *http.Request, id Identity) error {
	if _, err := apiQuery(r, id); err != nil {
		return err
	}
	list, err := a.backend.Agents(id.Workspace)
	if errors.Is(err, queues.ErrNotFound) {
		// A workspace no agent has used yet (only service tokens so far).
		list, err = nil, nil
	}
	if err != nil {
		return err
	}
	a.writeJSON(w, http.StatusOK, struct {
		Agents []queues.Agent `json:"agents"`
	}{apiNonNil(list)})
	return nil
}

func (a *API) settings(w http.ResponseWriter, r *http.Request, id Identity) error {
	if _, err := apiQuery(r, id); err != nil {
		return err
	}
	s, err := a.backend.Settings(id.Workspace)
	if errors.Is(err, queues.ErrNotFound) {
		// A workspace the store has not seen yet has the defaults.
		s, err = queues.DefaultSettings(), nil
	}
	if err != nil {
		return err
	}
	return a.settingsResult(w, s)
}

func (a *API) updateSettings(w http.ResponseWriter, r *http.Request, id Identity) error {
	var body struct {
		apiScope
		queues.SettingsPatch
	}
	if err := a.readBody(w, r, id, &body, false); err != nil {
		return err
	}
	s, err := a.backend.UpdateSettings(r.Context(), id.Workspace, id.Actor(), body.SettingsPatch)
	if err != nil {
		return err
	}
	return a.settingsResult(w, s)
}

func (a *API) settingsResult(w http.ResponseWriter, s queues.Settings) error {
	if s.AutoOwnership == nil {
		s.AutoOwnership = map[string]bool{}
	}
	a.writeJSON(w, http.StatusOK, struct {
		Settings queues.Settings `json:"settings"`
	}{s})
	return nil
}

func (a *API) releaseOffline(w http.ResponseWriter, r *http.Request, id Identity) error {
	var body struct{ apiScope }
	if err := a.readBody(w, r, id, &body, true); err != nil {
		return err
	}
	n, err := a.backend.ReleaseOffline(r.Context(), id.Workspace, id.Actor())
	if err != nil {
		return err
	}
	a.writeJSON(w, http.StatusOK, struct {
		Released int `json:"released"`
	}{n})
	return nil
}

// One admin log read: the same bounds as the WebSocket's admin_log.
const (
	apiLogDefault = 50
	apiLogMax     = 500
)

func (a *API) adminLog(w http.ResponseWriter, r *http.Request, id Identity) error {
	q, err := apiQuery(r, id, "limit")
	if err != nil {
		return err
	}
	limit, err := apiQueryInt(q, "limit", apiLogMax)
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = apiLogDefault
	}
	entries, err := a.backend.AdminLog(id.Workspace, limit)
	if err != nil {
		return err
	}
	a.writeJSON(w, http.StatusOK, struct {
		Entries []queues.AdminLogEntry `json:"entries"`
	}{apiNonNil(entries)})
	return nil
}

// apiValidID is ValidID as a 400 naming the field.
func apiValidID(field, s string) error {
	if err := ValidID(field, s); err != nil {
		return apiInvalid(field, "%s", strings.TrimPrefix(err.Error(), field+": "))
	}
	return nil
}

// apiNonNil makes an empty list encode as [] rather than null, so clients can
// iterate without a check.
func apiNonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
