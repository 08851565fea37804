package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// A hello carries every agent of the workspace, so with thousands of agents
// it is megabytes: the read limit only guards against a runaway frame.
const readLimit = 256 << 20

// dialAgent opens one agent connection and reads its hello. It returns the
// hello's seq. The token goes in the Authorization header, as the protocol
// allows non-browser clients to do.
func (e *env) dialAgent(ctx context.Context, ws, sub, role string) (*websocket.Conn, uint64, error) {
	tok, err := e.mint.token(ws, sub, role)
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.setupTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, e.wsURL.String(), &websocket.DialOptions{
		HTTPClient:   e.wsHTTP,
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + tok}},
		Subprotocols: []string{"presencehub.v1"},
	})
	if err != nil {
		if resp != nil {
			return nil, 0, fmt.Errorf("connect %s/%s: HTTP %d: %w", ws, sub, resp.StatusCode, err)
		}
		return nil, 0, fmt.Errorf("connect %s/%s: %w", ws, sub, err)
	}
	c.SetReadLimit(readLimit)
	// The hello is read into a pooled buffer: with a hundred agents it is
	// 20 KB, which c.Read would grow into a dozen times over.
	bp := helloBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 1<<20 {
			helloBufs.Put(bp)
		}
	}()
	_, r, err := c.Reader(ctx)
	if err == nil {
		*bp, err = readAll((*bp)[:0], r)
	}
	if err != nil {
		c.CloseNow()
		return nil, 0, fmt.Errorf("connect %s/%s: read hello: %w", ws, sub, err)
	}
	// The hello is the frame's first message, and only its type and seq
	// are read; whatever the hub packed after it in the frame is skipped.
	line := *bp
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	var m message
	if len(bytes.TrimSpace(line)) == 0 {
		err = errors.New("empty first frame")
	} else if err = parseHead(line, &m); err == nil && !is(m.Type, "hello") {
		err = fmt.Errorf("first message is %q, want hello", m.Type)
	}
	if err != nil {
		c.CloseNow()
		return nil, 0, fmt.Errorf("connect %s/%s: %w", ws, sub, err)
	}
	return c, m.Seq, nil
}

// helloBufs holds dialAgent's buffers for hellos.
var helloBufs = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// request sends one request: {"id":id,"op":op, fields...}.
func request(ctx context.Context, c *websocket.Conn, id int64, op string, fields map[string]any) error {
	req := make(map[string]any, len(fields)+2)
	for k, v := range fields {
		req[k] = v
	}
	req["id"] = id
	req["op"] = op
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.Write(ctx, websocket.MessageText, b)
}

// replyError is an error reply: {"ok":false,"error":{"code",...}}.
type replyError struct{ Code string }

func (e *replyError) Error() string { return "error reply: " + e.Code }

// awaitReply reads until the reply to request id, handing every other
// message to other (which may be nil), and returns the reply. Its byte
// slices stay valid: every frame read here is a fresh buffer.
func awaitReply(ctx context.Context, c *websocket.Conn, id int64, other func(m *message)) (message, error) {
	want := strconv.FormatInt(id, 10)
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return message{}, err
		}
		if reply, done, err := findReply(b, want, other); done || err != nil {
			return reply, err
		}
	}
}

// awaitReplyIn is awaitReply, with no other, reading into buf (grown as
// needed and returned for the next call) instead of a fresh buffer: the
// reply's byte slices are good until buf is reused.
func awaitReplyIn(ctx context.Context, c *websocket.Conn, id int64, buf []byte) (message, []byte, error) {
	want := strconv.FormatInt(id, 10)
	for {
		_, r, err := c.Reader(ctx)
		if err != nil {
			return message{}, buf, err
		}
		if buf, err = readAll(buf[:0], r); err != nil {
			return message{}, buf, err
		}
		if reply, done, err := findReply(buf, want, nil); done || err != nil {
			return reply, buf, err
		}
	}
}

// findReply looks through frame b for the reply to the request whose id
// is want, handing every other message to other (which may be nil). done
// reports whether it was there; an error reply is returned with a
// *replyError.
func findReply(b []byte, want string, other func(m *message)) (reply message, done bool, err error) {
	var m message
	err = forEachLine(b, func(line []byte) error {
		if err := parseMessage(line, &m); err != nil {
			return err
		}
		if done || !is(m.Type, "reply") || string(m.ID) != want {
			if other != nil {
				other(&m)
			}
			return nil
		}
		done, reply = true, m
		return nil
	})
	switch {
	case err != nil:
		return message{}, false, err
	case done && !reply.OK:
		return reply, true, &replyError{Code: string(reply.ErrCode)}
	}
	return reply, done, nil
}

// subscribeFrame is subscribe's request, the same for every connection.
var subscribeFrame = []byte(`{"id":1,"op":"subscribe","view":"load","queue":"new","filter":{"kind":"all"},"limit":1}`)

// subscribe subscribes the connection to a view of the new queue with
// filter all: every conversation change of the queue reaches it. limit 1
// keeps the first page small; the load tool only wants the live events.
func subscribe(ctx context.Context, c *websocket.Conn, other func(m *message)) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, subscribeFrame); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if _, err := awaitReply(ctx, c, 1, other); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
}

// readLoop reads frames until the connection ends and hands each message to
// handle with the time the frame was read in full (monotonic, since the
// run's epoch). It returns the error that ended the connection. It reads
// with a context that is never done: coder/websocket then sets up no timer
// per read, and the loop ends when its owner closes the connection.
//
// Without parse, a message is only checked to be in braces and handle gets
// nil: a scenario that only counts messages (idle, during a login storm
// of a hundred presence events per connect) need not spend the cores it
// shares with the hub on reading them.
func readLoop(c *websocket.Conn, epoch time.Time, parse bool, handle func(m *message, at time.Duration), bad func(error)) error {
	buf := make([]byte, 0, 4<<10)
	var m message
	for {
		_, r, err := c.Reader(context.Background())
		if err != nil {
			return err
		}
		if buf, err = readAll(buf[:0], r); err != nil {
			return err
		}
		at := time.Since(epoch)
		if err := forEachLine(buf, func(line []byte) error {
			if !parse {
				line = bytes.Trim(line, " \t\r")
				if len(line) < 2 || line[0] != '{' || line[len(line)-1] != '}' {
					return fmt.Errorf("%w: not an object", errSyntax)
				}
				handle(nil, at)
				return nil
			}
			if err := parseMessage(line, &m); err != nil {
				return err
			}
			handle(&m, at)
			return nil
		}); err != nil && bad != nil {
			bad(err)
		}
		// A burst packed into one big frame must not pin megabytes per
		// connection for the rest of the run.
		if cap(buf) > 256<<10 {
			buf = make([]byte, 0, 4<<10)
		}
	}
}

// readAll appends everything r has to buf, growing it as needed.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// closeCode is the close status of an error that ended a connection, or -1.
func closeCode(err error) int {
	return int(websocket.CloseStatus(err))
}
