package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/queues"
)

// wsMsg is any message the hub sends (docs/protocol.md): hello, reply or
// event, with the fields the tests read.
type wsMsg struct {
	Type string `json:"type"`

	// reply
	ID     json.RawMessage `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  *wsError        `json:"error"`

	// event (and hello's seq)
	Seq          uint64                 `json:"seq"`
	At           time.Time              `json:"at"`
	Kind         string                 `json:"kind"`
	Reason       string                 `json:"reason"`
	Conv         *queues.Conversation   `json:"conv"`
	Prev         *queues.ConvState      `json:"prev"`
	Presence     *queues.PresenceChange `json:"presence"`
	AgentRecord  *queues.Agent          `json:"agent_record"`
	Notification *queues.Notification   `json:"notification"`

	// hello
	Me            *queues.Agent             `json:"me"`
	Notifications *queues.NotificationGroup `json:"notifications"`
	Resumed       bool                      `json:"resumed"`
	Resync        bool                      `json:"resync"`
	Missed        []json.RawMessage         `json:"missed"`
}

type wsError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// wsReply is the answer to one request.
type wsReply struct {
	OK     bool
	Result json.RawMessage
	Error  *wsError
}

func (r wsReply) code() string {
	if r.Error == nil {
		return ""
	}
	return r.Error.Code
}

// errConnLost: the socket ended before the reply came; the request may or
// may not have reached the hub. errNotSent: it ended before the request
// was written, so the hub cannot have seen it.
var (
	errConnLost = errors.New("connection lost before the reply")
	errNotSent  = errors.New("connection lost before the request was sent")
)

// wsConn is a protocol client on one socket. One reader goroutine reads
// every frame, splits it on '\n' and handles each message in order: hello
// and events go to onMsg, replies to their waiting request (after the
// request's hook, if any, ran on the reader: a subscribe's hook must see
// its reply before the events that follow it), and replies to requests
// written with send to onMsg.
type wsConn struct {
	c     *websocket.Conn
	onMsg func(*wsMsg) // called on the reader goroutine, in order

	next atomic.Int64

	mu      sync.Mutex // guards waiting and ended
	waiting map[string]*pending
	ended   bool

	done      chan struct{} // closed when the reader has ended
	readErr   error         // why it ended; read after done
	helloSeen chan *wsMsg   // capacity 1: the hello
}

type pending struct {
	ch   chan wsReply // capacity 1
	hook func(*wsMsg) // runs on the reader before the reply is handed over
}

// dialWS connects with token (and ?since= when since is not nil) and
// returns once hello is in. onMsg may be nil.
func dialWS(ctx context.Context, hc *http.Client, base, token string, since *uint64, onMsg func(*wsMsg)) (*wsConn, *wsMsg, error) {
	u := strings.Replace(base, "http", "ws", 1) + "/ws?access_token=" + token
	if since != nil {
		u += "&since=" + strconv.FormatUint(*since, 10)
	}
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return nil, nil, err
	}
	c.SetReadLimit(64 << 20) // the hub's frames are not capped (protocol.md)
	if onMsg == nil {
		onMsg = func(*wsMsg) {}
	}
	w := &wsConn{c: c, onMsg: onMsg, waiting: map[string]*pending{}, done: make(chan struct{}),
		helloSeen: make(chan *wsMsg, 1)}
	go w.read() // ends when the socket closes
	select {
	case h := <-w.helloSeen:
		return w, h, nil
	case <-w.done:
		return nil, nil, fmt.Errorf("socket ended before hello: %w", w.readErr)
	case <-ctx.Done():
		w.c.CloseNow()
		<-w.done
		return nil, nil, ctx.Err()
	}
}

func (w *wsConn) read() {
	defer close(w.done)
	for {
		_, data, err := w.c.Read(context.Background())
		if err != nil {
			w.readErr = err
			w.mu.Lock()
			w.ended = true
			w.mu.Unlock()
			return
		}
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			m := new(wsMsg)
			if err := json.Unmarshal(line, m); err != nil {
				w.readErr = fmt.Errorf("bad message %.200q: %w", line, err)
				w.c.CloseNow()
				continue
			}
			switch m.Type {
			case "reply":
				w.mu.Lock()
				p := w.waiting[string(m.ID)]
				delete(w.waiting, string(m.ID))
				w.mu.Unlock()
				if p == nil {
					w.onMsg(m) // a reply nobody waits for: sent with send
					continue
				}
				if p.hook != nil {
					p.hook(m)
				}
				p.ch <- wsReply{OK: m.OK, Result: m.Result, Error: m.Error}
			case "hello":
				w.onMsg(m)
				select {
				case w.helloSeen <- m:
				default:
				}
			default:
				w.onMsg(m)
			}
		}
	}
}

// closeCode is the close code the hub sent, or -1.
func (w *wsConn) closeCode() websocket.StatusCode {
	<-w.done
	return websocket.CloseStatus(w.readErr)
}

// do sends one request and waits for its reply. A reply that arrived is
// returned even when the socket ended right after it.
func (w *wsConn) do(ctx context.Context, req map[string]any, hook func(*wsMsg)) (wsReply, error) {
	n := w.next.Add(1)
	id := strconv.FormatInt(n, 10) // the raw JSON of the echoed id
	req["id"] = n
	p := &pending{ch: make(chan wsReply, 1), hook: hook}
	w.mu.Lock()
	if w.ended {
		w.mu.Unlock()
		return wsReply{}, errNotSent
	}
	w.waiting[id] = p
	w.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return wsReply{}, err
	}
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		select {
		case r := <-p.ch:
			return r, nil
		default:
		}
		return wsReply{}, fmt.Errorf("%w: write: %v", errConnLost, err)
	}
	select {
	case r := <-p.ch:
		return r, nil
	case <-w.done:
		select {
		case r := <-p.ch:
			return r, nil
		default:
			return wsReply{}, errConnLost
		}
	case <-ctx.Done():
		return wsReply{}, ctx.Err()
	}
}

// sendRaw writes an encoded request without waiting for its reply (the
// flood); its reply goes to onMsg.
func (w *wsConn) sendRaw(ctx context.Context, frame []byte) error {
	return w.c.Write(ctx, websocket.MessageText, frame)
}

// close closes politely (bounded by the library: 5 s for the handshake)
// and waits for the reader.
func (w *wsConn) close() {
	w.c.Close(websocket.StatusNormalClosure, "")
	<-w.done
}

// drop closes the TCP connection without a close frame and waits for the
// reader.
func (w *wsConn) drop() {
	w.c.CloseNow()
	<-w.done
}

// convResult is the result of assign, unassign, move, reply and boomerang.
type convResult struct {
	Conv queues.Conversation `json:"conv"`
	Seq  uint64              `json:"seq"`
}

// conversationResult is the result of the conversation op.
type conversationResult struct {
	Conv     queues.Conversation `json:"conv"`
	History  []queues.AuditEntry `json:"history"`
	Messages []queues.Message    `json:"messages"`
}

// subscribeResult is either a page or a resumed list of events.
type subscribeResult struct {
	View    string                `json:"view"`
	Seq     uint64                `json:"seq"`
	Resumed bool                  `json:"resumed"`
	Resync  bool                  `json:"resync"`
	Events  []json.RawMessage     `json:"events"`
	Items   []queues.Conversation `json:"items"`
}
