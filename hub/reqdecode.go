package hub

import (
	"math"
	"unicode/utf8"

	"github.com/presencehub/presencehub/queues"
)

// decodeFlat is decodeRequest's fast path. It fills req from b when b is a
// flat JSON object whose members are all ones it knows, with string values
// that hold no escapes or control characters and number values that are
// plain non-negative integers; that is what clients send for nearly every
// request (docs/protocol.md), and a filter with only a kind. For anything
// else (escapes, an agents filter, a repeated filter, settings, null, a
// negative or fractional number, a key in another case, malformed JSON)
// it reports false, leaving req partly filled, and decodeRequest uses
// encoding/json instead.
//
// It accepts nothing encoding/json would refuse and reads nothing
// differently: FuzzDecodeFlat holds the two equal. It exists because
// encoding/json's reflection was 8 % of the hub's CPU in a durable run,
// more than the rules of a change.
func decodeFlat(b []byte, req *request) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		key, j, ok := flatString(b, i)
		if !ok {
			return false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return false
		}
		if p := req.stringField(key); p != nil {
			*p, j, ok = flatStringValue(b, i)
		} else {
			switch string(key) {
			case "id":
				if b[i] == '"' {
					_, j, ok = flatString(b, i)
				} else {
					_, j, ok = flatUint(b, i, math.MaxUint64)
				}
				if ok {
					req.ID = b[i:j]
				}
			case "limit":
				var n uint64
				n, j, ok = flatUint(b, i, math.MaxInt)
				req.Limit = int(n)
			case "version":
				req.Version, j, ok = flatUint(b, i, math.MaxUint64)
			case "up_to":
				req.UpTo, j, ok = flatUint(b, i, math.MaxUint64)
			case "since":
				var n uint64
				n, j, ok = flatUint(b, i, math.MaxUint64)
				req.Since = &n
			case "filter":
				if req.Filter != nil {
					// encoding/json decodes a repeated filter into the
					// first one, keeping what the second leaves out.
					return false
				}
				req.Filter, j, ok = flatFilter(b, i)
			default:
				return false
			}
		}
		if !ok {
			return false
		}
		i = skipSpace(b, j)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// flatFilter reads a subscribe's filter when it is an object with at most
// a kind, a flat string: {"kind":"mine"}, as every filter but the agents
// one is sent.
func flatFilter(b []byte, i int) (*queues.Filter, int, bool) {
	if b[i] != '{' {
		return nil, 0, false
	}
	f := &queues.Filter{}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return f, i + 1, true
	}
	key, j, ok := flatString(b, i)
	if !ok || string(key) != "kind" {
		return nil, 0, false
	}
	i = skipSpace(b, j)
	if i >= len(b) || b[i] != ':' {
		return nil, 0, false
	}
	kind, j, ok := flatStringValue(b, skipSpace(b, i+1))
	if !ok {
		return nil, 0, false
	}
	f.Kind = queues.FilterKind(kind)
	i = skipSpace(b, j)
	if i >= len(b) || b[i] != '}' {
		return nil, 0, false
	}
	return f, i + 1, true
}

// stringField is the member of req that a JSON key names when it is one
// of the plain string members, else nil.
func (req *request) stringField(key []byte) *string {
	switch string(key) {
	case "op":
		return &req.Op
	case "view":
		return &req.View
	case "queue":
		return (*string)(&req.Queue)
	case "cursor":
		return &req.Cursor
	case "conv":
		return &req.Conv
	case "agent":
		return &req.Agent
	case "text":
		return &req.Text
	case "message_id":
		return &req.MessageID
	case "preset":
		return &req.Preset
	case "status":
		return &req.Status
	}
	return nil
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// flatString reads the JSON string starting at b[i] (a '"') when it has no
// escapes and no control characters and is valid UTF-8: its content, then
// the index after its closing quote.
func flatString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, 0, false // encoding/json replaces the bad bytes
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

// flatStringValue is flatString as a Go string.
func flatStringValue(b []byte, i int) (string, int, bool) {
	s, j, ok := flatString(b, i)
	return string(s), j, ok
}

// flatUint reads the JSON number starting at b[i] when it is a plain
// integer from 0 to limit: no sign, fraction or exponent, no leading zero.
func flatUint(b []byte, i int, limit uint64) (uint64, int, bool) {
	j := i
	var n uint64
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		d := uint64(b[j] - '0')
		if n > (limit-d)/10 {
			return 0, 0, false
		}
		n = n*10 + d
		j++
	}
	switch {
	case j == i:
		return 0, 0, false
	case b[i] == '0' && j > i+1:
		return 0, 0, false
	case j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E'):
		return 0, 0, false
	}
	return n, j, true
}
