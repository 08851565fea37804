package main

import (
	"bytes"
	"errors"
	"fmt"
)

// A client of 10,000 connections receiving 50,000+ events a second cannot
// afford encoding/json on every event: it allocates and reflects, and on two
// cores shared with the hub the load tool would become the bottleneck it is
// trying to measure. The scanner below walks one JSON object, picks out the
// handful of fields the load tool reads and skips the rest without
// allocating. It is a real JSON walker (strings with escapes, nested
// objects and arrays), not a substring search, so a customer name holding
// `"version":` cannot fool it, and field order does not matter.

// message is what the load tool reads of one hub message (docs/protocol.md).
// Byte slices point into the frame and are valid only until it is reused.
type message struct {
	Type []byte // hello, reply or event
	ID   []byte // reply: the request id as raw JSON (a number or a string)
	OK   bool   // reply: ok
	Seq  uint64 // event and hello: seq; reply: result.seq
	Kind []byte // event: conversation, presence, settings, ...

	ConvID  []byte // event: conv.id; reply: result.conv (an id or an object's id)
	Version uint64 // event: conv.version; reply: result.conv.version when an object
	Owner   []byte // event: conv.owner; reply: result.conv.owner when an object

	Agent  []byte // presence event: presence.agent
	From   []byte // presence event: presence.from
	To     []byte // presence event: presence.to
	Reason []byte // presence event: presence.reason

	ErrCode []byte // reply: error.code
}

func (m *message) reset() { *m = message{} }

// is reports whether field equals s, without converting either.
func is(field []byte, s string) bool { return string(field) == s }

// forEachLine calls fn for each non-empty line of a hub frame: the hub packs
// several messages into one frame, separated by '\n' (a newline inside a
// JSON string is always escaped, so a raw '\n' only ever separates). It
// stops at the first error fn returns.
func forEachLine(frame []byte, fn func(line []byte) error) error {
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		line = bytes.TrimRight(line, "\r\t ")
		if len(bytes.TrimLeft(line, "\t ")) == 0 {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

// parseMessage fills m from one JSON object. Fields it does not know are
// skipped.
func parseMessage(line []byte, m *message) error {
	m.reset()
	w := walker{b: line}
	return w.object(func(key []byte) error {
		switch string(key) {
		case "type":
			return w.strInto(&m.Type)
		case "id":
			return w.rawInto(&m.ID)
		case "ok":
			v, err := w.lit()
			m.OK = is(v, "true")
			return err
		case "seq":
			return w.uintInto(&m.Seq)
		case "kind":
			return w.strInto(&m.Kind)
		case "conv":
			return w.conv(m)
		case "presence":
			return w.object(func(key []byte) error {
				switch string(key) {
				case "agent":
					return w.strInto(&m.Agent)
				case "from":
					return w.strInto(&m.From)
				case "to":
					return w.strInto(&m.To)
				case "reason":
					return w.strInto(&m.Reason)
				}
				return w.skip()
			})
		case "result":
			if w.peek() != '{' {
				return w.skip()
			}
			return w.object(func(key []byte) error {
				switch string(key) {
				case "seq":
					return w.uintInto(&m.Seq)
				case "conv":
					return w.conv(m)
				}
				return w.skip()
			})
		case "error":
			if w.peek() != '{' {
				return w.skip()
			}
			return w.object(func(key []byte) error {
				if is(key, "code") {
					return w.strInto(&m.ErrCode)
				}
				return w.skip()
			})
		}
		return w.skip()
	})
}

// parseHead reads a message's type and seq and stops there, without
// walking the rest. It is for hellos: the load tool wants only those two,
// and a hello is the whole roster of its workspace (20 KB with a hundred
// agents), which parseMessage would walk on every connect.
func parseHead(line []byte, m *message) error {
	m.reset()
	w := walker{b: line}
	found := 0
	err := w.object(func(key []byte) error {
		switch string(key) {
		case "type":
			found++
			if err := w.strInto(&m.Type); err != nil {
				return err
			}
		case "seq":
			found++
			if err := w.uintInto(&m.Seq); err != nil {
				return err
			}
		default:
			return w.skip()
		}
		if found == 2 {
			return errHeadRead
		}
		return nil
	})
	if err == errHeadRead {
		return nil
	}
	return err
}

// errHeadRead ends parseHead's walk once it has what it wants.
var errHeadRead = errors.New("head read")

var errSyntax = errors.New("hub message: malformed JSON")

// walker reads JSON from b at i.
type walker struct {
	b []byte
	i int
}

func (w *walker) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", errSyntax, what, w.i)
}

func (w *walker) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (w *walker) peek() byte {
	w.space()
	if w.i >= len(w.b) {
		return 0
	}
	return w.b[w.i]
}

// object walks the members of an object; fn gets each key (raw, without
// quotes) and must consume its value.
func (w *walker) object(fn func(key []byte) error) error {
	if w.peek() != '{' {
		return w.fail("want an object")
	}
	w.i++
	if w.peek() == '}' {
		w.i++
		return nil
	}
	for {
		if w.peek() != '"' {
			return w.fail("want a key")
		}
		key, err := w.str()
		if err != nil {
			return err
		}
		if w.peek() != ':' {
			return w.fail("want ':'")
		}
		w.i++
		if err := fn(key); err != nil {
			return err
		}
		switch w.peek() {
		case ',':
			w.i++
		case '}':
			w.i++
			return nil
		default:
			return w.fail("want ',' or '}'")
		}
	}
}

// str reads a string and returns its raw contents (escapes left as they
// are: the fields the load tool compares never contain any).
func (w *walker) str() ([]byte, error) {
	if w.peek() != '"' {
		return nil, w.fail("want a string")
	}
	w.i++
	start := w.i
	for {
		k := bytes.IndexByte(w.b[w.i:], '"')
		if k < 0 {
			break
		}
		w.i += k
		// The quote ends the string unless an odd number of backslashes
		// escapes it.
		bs := 0
		for j := w.i - 1; j >= start && w.b[j] == '\\'; j-- {
			bs++
		}
		if bs%2 == 0 {
			s := w.b[start:w.i]
			w.i++
			return s, nil
		}
		w.i++
	}
	w.i = len(w.b)
	return nil, w.fail("unterminated string")
}

// strInto reads a string into *dst; null leaves it empty.
func (w *walker) strInto(dst *[]byte) error {
	if w.peek() == 'n' {
		_, err := w.lit()
		return err
	}
	s, err := w.str()
	*dst = s
	return err
}

// lit reads a number or literal (true, false, null).
func (w *walker) lit() ([]byte, error) {
	w.space()
	start := w.i
	for w.i < len(w.b) {
		c := w.b[w.i]
		if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			break
		}
		if c == '"' || c == '{' || c == '[' || c == ':' {
			return nil, w.fail("unexpected character")
		}
		w.i++
	}
	if w.i == start {
		return nil, w.fail("want a value")
	}
	return w.b[start:w.i], nil
}

// uintInto reads a non-negative integer; null leaves *dst as it is.
func (w *walker) uintInto(dst *uint64) error {
	v, err := w.lit()
	if err != nil {
		return err
	}
	if is(v, "null") {
		return nil
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' || n > (1<<64-1-9)/10 {
			return w.fail("want an unsigned integer")
		}
		n = n*10 + uint64(c-'0')
	}
	*dst = n
	return nil
}

// rawInto stores the raw bytes of the next value.
func (w *walker) rawInto(dst *[]byte) error {
	w.space()
	start := w.i
	if err := w.skip(); err != nil {
		return err
	}
	*dst = w.b[start:w.i]
	return nil
}

// conv reads a conversation: an object (events, and replies that carry the
// conversation) or a plain id (replies that name it).
func (w *walker) conv(m *message) error {
	switch w.peek() {
	case '"':
		return w.strInto(&m.ConvID)
	case '{':
		return w.object(func(key []byte) error {
			switch string(key) {
			case "id":
				return w.strInto(&m.ConvID)
			case "version":
				return w.uintInto(&m.Version)
			case "owner":
				return w.strInto(&m.Owner)
			}
			return w.skip()
		})
	}
	return w.skip()
}

// skip consumes one value of any kind.
func (w *walker) skip() error {
	switch w.peek() {
	case 0:
		return w.fail("want a value")
	case '"':
		_, err := w.str()
		return err
	case '{', '[':
		depth := 0
		for w.i < len(w.b) {
			switch w.b[w.i] {
			case '"':
				if _, err := w.str(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					w.i++
					return nil
				}
			}
			w.i++
		}
		return w.fail("unterminated object or array")
	}
	_, err := w.lit()
	return err
}
