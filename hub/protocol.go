package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// The wire types of docs/protocol.md. Events are encoded once by the store
// (queues.Event.Wire); everything else the hub encodes itself.

// Subprotocol is the WebSocket subprotocol the hub echoes when a client
// offers it.
const Subprotocol = "presencehub.v1"

// protocolVersion is hello.v.
const protocolVersion = 1

// Message types: the "type" of every hub message.
const (
	typeHello = "hello"
	typeReply = "reply"
	typeEvent = "event"
)

// helloMsg is the hub's first message on every connection: the workspace's
// state as of Seq.
type helloMsg struct {
	Type     string          `json:"type"`
	V        int             `json:"v"`
	Seq      uint64          `json:"seq"`
	Me       queues.Agent    `json:"me"`
	Settings queues.Settings `json:"settings"`
	helloTail
	// Agents is every agent of the workspace as the store keeps them
	// encoded (Backend.AppendAgentsJSON): the bulk of a hello, copied, not
	// encoded, on every connect.
	Agents json.RawMessage `json:"agents"`
}

// helloTail is the part of a hello that appendHello leaves to
// encoding/json: small, and not worth writing by hand. Embedded untagged,
// its fields encode as helloMsg's own.
type helloTail struct {
	Notifications queues.NotificationGroup `json:"notifications"`
	Channels      []string                 `json:"channels"`
	Limits        limitsMsg                `json:"limits"`
	Resumed       bool                     `json:"resumed"`
	Resync        bool                     `json:"resync"`
	// Missed holds the events' wire bytes as the store encoded them.
	Missed []json.RawMessage `json:"missed"`
}

// appendHello appends the bytes json.Marshal produces for m. The agents
// (every one of the workspace, the bulk of a hello) come encoded from the
// store, and me and the settings are written by the store's hand
// encoders: through reflection they were the largest single cost of a
// connect.
func appendHello(b []byte, m *helloMsg) ([]byte, error) {
	tail, err := json.Marshal(&m.helloTail)
	if err != nil {
		return nil, err
	}
	// Room for me and the settings up front: growing the buffer while it is
	// written allocated and copied the roster again.
	b = slices.Grow(b, 1024+len(m.Agents)+len(tail))
	b = append(b, `{"type":`...)
	b = strconv.AppendQuote(b, m.Type)
	b = append(b, `,"v":`...)
	b = strconv.AppendInt(b, int64(m.V), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, m.Seq, 10)
	b = append(b, `,"me":`...)
	b = queues.AppendAgentJSON(b, &m.Me)
	b = append(b, `,"settings":`...)
	b = queues.AppendSettingsJSON(b, &m.Settings)
	b = append(b, ',')
	b = append(b, tail[1:len(tail)-1]...)
	b = append(b, `,"agents":`...)
	if m.Agents == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, m.Agents...)
	}
	return append(b, '}'), nil
}

// limitsMsg tells a client the limits it must respect.
type limitsMsg struct {
	MaxFrame int64 `json:"max_frame"`
	PageMax  int   `json:"page_max"`
}

// replyMsg answers one request; ID is the request's id, verbatim (null when
// the request had none a reply could echo).
type replyMsg struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id"`
	OK     bool            `json:"ok"`
	Result any             `json:"result,omitempty"`
	Error  *replyError     `json:"error,omitempty"`
}

// replyError is the error of a failed request. Code is one of the code*
// constants; Field names the offending field of an invalid request.
type replyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *replyError) Error() string { return e.Code + ": " + e.Message }

// eventMsg is the wire shape of an event: the store's Event with its type.
// The hub never encodes events per recipient; this type is how an event is
// encoded when a Backend publishes one without Wire, and how tests and
// clients written in Go decode one.
type eventMsg struct {
	Type string `json:"type"`
	queues.Event
}

// Error codes of docs/protocol.md.
const (
	codeBadRequest  = "bad_request"
	codeInvalid     = "invalid"
	codeUnknownOp   = "unknown_op"
	codeNotFound    = "not_found"
	codeConflict    = "conflict"
	codeForbidden   = "forbidden"
	codeRateLimited = "rate_limited"
	codeUnavailable = "unavailable"
	codeInternal    = "internal"
)

func badRequest(format string, args ...any) *replyError {
	return &replyError{Code: codeBadRequest, Message: fmt.Sprintf(format, args...)}
}

func invalidField(field, format string, args ...any) *replyError {
	return &replyError{Code: codeInvalid, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// request is any client request: the fields of every operation, each read
// by the operations that use it and ignored by the others.
type request struct {
	// ID is kept as the client sent it (a string or a number) and echoed.
	ID json.RawMessage `json:"id"`
	Op string          `json:"op"`

	View   string         `json:"view"`
	Queue  queues.Queue   `json:"queue"`
	Filter *queues.Filter `json:"filter"`
	Limit  int            `json:"limit"`
	Since  *uint64        `json:"since"`
	Cursor string         `json:"cursor"`

	Conv      string `json:"conv"`
	Agent     string `json:"agent"`
	Version   uint64 `json:"version"`
	Text      string `json:"text"`
	MessageID string `json:"message_id"`

	Preset string     `json:"preset"`
	In     *int64     `json:"in"`
	At     *time.Time `json:"at"`

	Status   string                `json:"status"`
	UpTo     uint64                `json:"up_to"`
	Settings *queues.SettingsPatch `json:"settings"`
}

// maxIDBytes bounds a request id: it is echoed in the reply.
const maxIDBytes = 128

// nullID is the id of a reply to a request whose own id cannot be echoed.
var nullID = json.RawMessage("null")

// decodeRequest parses one client frame. On failure it still returns the
// id to answer with, when the frame had a usable one.
func decodeRequest(b []byte) (*request, json.RawMessage, *replyError) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		if !json.Valid(b) {
			return nil, nullID, badRequest("not JSON")
		}
		return nil, nullID, badRequest("not a JSON object")
	}
	var req request
	if !decodeFlat(b, &req) {
		req = request{}
		err := json.Unmarshal(b, &req)
		if err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return nil, usableID(req.ID), badRequest("%s: wrong type: %s, want %s", te.Field, te.Value, jsonKind(te.Type.Kind().String()))
			}
			return nil, nullID, badRequest("not JSON")
		}
	}
	id := usableID(req.ID)
	if len(req.ID) == 0 || bytes.Equal(req.ID, nullID) {
		return nil, nullID, badRequest("missing id")
	}
	if id == nil {
		return nil, nullID, badRequest("id: must be a string or a number of at most %d bytes", maxIDBytes)
	}
	if req.Op == "" {
		return nil, id, badRequest("missing op")
	}
	req.ID = id
	return &req, id, nil
}

// usableID returns raw if it is a string or a number short enough to echo,
// else nil.
func usableID(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || len(raw) > maxIDBytes {
		return nil
	}
	switch c := raw[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		// Copy: raw points into the frame, which is not kept.
		return bytes.Clone(raw)
	}
	return nil
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	case "slice", "array":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return goKind
}

// errorFor maps an error of the store (or of the hub's own checks) to the
// reply error a client sees. The second result is false for errors that
// are not the client's doing; their details stay in the log.
func errorFor(err error) (*replyError, bool) {
	var re *replyError
	if errors.As(err, &re) {
		return re, true
	}
	var inv *queues.InvalidError
	switch {
	case errors.As(err, &inv):
		return &replyError{Code: codeInvalid, Field: inv.Field, Message: inv.Error()}, true
	case errors.Is(err, queues.ErrNotFound):
		return &replyError{Code: codeNotFound, Message: err.Error()}, true
	case errors.Is(err, queues.ErrConflict):
		var stale *queues.StaleError
		if errors.As(err, &stale) {
			return &replyError{Code: codeConflict, Message: stale.Error()}, true
		}
		return &replyError{Code: codeConflict, Message: err.Error()}, true
	case errors.Is(err, queues.ErrForbidden):
		return &replyError{Code: codeForbidden, Message: err.Error()}, true
	case errors.Is(err, queues.ErrInvalid):
		return &replyError{Code: codeInvalid, Message: err.Error()}, true
	case errors.Is(err, queues.ErrUnavailable):
		return &replyError{Code: codeUnavailable, Message: "the store cannot take requests right now; retry later"}, false
	}
	return &replyError{Code: codeInternal, Message: "internal error"}, false
}

// Results of the operations (the "result" of an ok reply).

// subscribePage answers subscribe without since, or with since when the
// view must be reloaded (Resync).
type subscribePage struct {
	View   string                `json:"view"`
	Seq    uint64                `json:"seq"`
	Items  []queues.Conversation `json:"items"`
	Next   string                `json:"next,omitempty"`
	Counts queues.Counts         `json:"counts"`
	Resync bool                  `json:"resync,omitempty"`
}

// subscribeResumed answers subscribe with since: the view's events after
// since, up to Seq.
type subscribeResumed struct {
	View    string            `json:"view"`
	Seq     uint64            `json:"seq"`
	Resumed bool              `json:"resumed"`
	Events  []json.RawMessage `json:"events"`
}

// convResult answers a change of one conversation: the conversation after
// it and the sequence number of the change's last event.
type convResult struct {
	Conv queues.Conversation `json:"conv"`
	Seq  uint64              `json:"seq"`
}

// plainID reports whether a request id (a JSON string or number, as the
// request had it) goes into a reply unchanged: encoding/json would rewrite
// <, >, & and U+2028/U+2029 (whose UTF-8 starts with 0xE2) as escapes.
func plainID(id json.RawMessage) bool {
	for _, c := range id {
		if c == '<' || c == '>' || c == '&' || c == 0xe2 {
			return false
		}
	}
	return len(id) > 0
}

// appendConvReply appends the bytes json.Marshal produces for a successful
// reply carrying r, for an id that plainID accepts.
func appendConvReply(b []byte, id json.RawMessage, r *convResult) []byte {
	b = append(b, `{"type":"reply","id":`...)
	b = append(b, id...)
	b = append(b, `,"ok":true,"result":{"conv":`...)
	b = queues.AppendConversationJSON(b, &r.Conv)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	return append(b, "}}"...)
}

// appendPageReply appends the bytes json.Marshal produces for a successful
// reply carrying p, for an id that plainID accepts. Every connect's
// subscribe is answered with one.
func appendPageReply(b []byte, id json.RawMessage, p *subscribePage) []byte {
	b = slices.Grow(b, 160+len(id)+len(p.View)+len(p.Next)+384*len(p.Items))
	b = append(b, `{"type":"reply","id":`...)
	b = append(b, id...)
	b = append(b, `,"ok":true,"result":{"view":`...)
	b = queues.AppendJSONString(b, p.View)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, p.Seq, 10)
	b = append(b, `,"items":`...)
	if p.Items == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range p.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = queues.AppendConversationJSON(b, &p.Items[i])
		}
		b = append(b, ']')
	}
	if p.Next != "" {
		b = append(b, `,"next":`...)
		b = queues.AppendJSONString(b, p.Next)
	}
	c := &p.Counts
	b = append(b, `,"counts":{"total":`...)
	b = strconv.AppendInt(b, int64(c.Total), 10)
	b = append(b, `,"unowned":`...)
	b = strconv.AppendInt(b, int64(c.Unowned), 10)
	b = append(b, `,"mine":`...)
	b = strconv.AppendInt(b, int64(c.Mine), 10)
	b = append(b, `,"others":`...)
	b = strconv.AppendInt(b, int64(c.Others), 10)
	b = append(b, `,"matching":`...)
	b = strconv.AppendInt(b, int64(c.Matching), 10)
	b = append(b, '}')
	if p.Resync {
		b = append(b, `,"resync":true`...)
	}
	return append(b, "}}"...)
}

type conversationResult struct {
	Conv     queues.Conversation `json:"conv"`
	History  []queues.AuditEntry `json:"history"`
	Messages []queues.Message    `json:"messages"`
}

type historyResult struct {
	History []queues.AuditEntry `json:"history"`
}

type statusResult struct {
	Status string `json:"status"`
}

type readResult struct {
	Read int `json:"read"`
}

type settingsResult struct {
	Settings queues.Settings `json:"settings"`
}

type releasedResult struct {
	Released int `json:"released"`
}

type entriesResult struct {
	Entries []queues.AdminLogEntry `json:"entries"`
}

// emptyResult is the {} of operations that only succeed or fail.
type emptyResult struct{}

// nonNil makes a nil slice encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
