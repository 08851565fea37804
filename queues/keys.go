package queues

import (
	"encoding/binary"
	"time"
)

// Key layout (docs/design.md). Every key but the timer index starts with a
// one-letter kind and the workspace, so a workspace's records are one prefix
// scan apart and nothing crosses workspaces. Ids never contain '/' (ValidID),
// which is what keeps "h/ws/conv/" from also matching "h/ws/conv-2/...".
// Sequence numbers and deadlines are 8-byte big-endian so keys sort by them.
const (
	kindWorkspace    = 'w'
	kindAgent        = 'a'
	kindConversation = 'c'
	kindHistory      = 'h'
	kindMessage      = 'm'
	kindNotification = 'n'
	kindAdminLog     = 'l'
	kindEvent        = 'e'
	kindTimer        = 't'
)

// Timer kinds inside the timer index.
const (
	timerBoomerang = 'b'
	timerGrace     = 'g'
)

// key joins a kind letter and string parts with '/'.
func key(kind byte, parts ...string) []byte {
	n := 1
	for _, p := range parts {
		n += 1 + len(p)
	}
	k := make([]byte, 0, n)
	k = append(k, kind)
	for _, p := range parts {
		k = append(k, '/')
		k = append(k, p...)
	}
	return k
}

// prefix is key with a trailing '/', for scans.
func prefix(kind byte, parts ...string) []byte {
	return append(key(kind, parts...), '/')
}

// seqKey is key(kind, parts...) + "/" + 8-byte big-endian seq.
func seqKey(seq uint64, kind byte, parts ...string) []byte {
	k := prefix(kind, parts...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// seqOf reads the trailing 8-byte sequence number of a seqKey.
func seqOf(k []byte) uint64 {
	if len(k) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

func workspaceKey(ws string) []byte          { return key(kindWorkspace, ws) }
func agentKey(ws, id string) []byte          { return key(kindAgent, ws, id) }
func convKey(ws, id string) []byte           { return key(kindConversation, ws, id) }
func messageKey(ws, conv, msg string) []byte { return key(kindMessage, ws, conv, msg) }
func historyKey(ws, conv string, seq uint64) []byte {
	return seqKey(seq, kindHistory, ws, conv)
}
func notificationKey(ws, agent string, seq uint64) []byte {
	return seqKey(seq, kindNotification, ws, agent)
}
func adminLogKey(ws string, seq uint64) []byte { return seqKey(seq, kindAdminLog, ws) }
func eventKey(ws string, seq uint64) []byte    { return seqKey(seq, kindEvent, ws) }

// timerKey is t/<deadline>/<ws>/<kind>/<id>: the deadline comes first so the
// whole index sorts by when things are due.
func timerKey(deadline time.Time, ws string, kind byte, id string) []byte {
	k := make([]byte, 0, 2+8+1+len(ws)+3+len(id))
	k = append(k, kindTimer, '/')
	k = binary.BigEndian.AppendUint64(k, uint64(deadline.UnixNano()))
	k = append(k, '/')
	k = append(k, ws...)
	k = append(k, '/', kind, '/')
	return append(k, id...)
}

// parseTimerKey undoes timerKey; ok is false for a malformed key.
func parseTimerKey(k []byte) (deadline time.Time, ws string, kind byte, id string, ok bool) {
	if len(k) < 2+8+1 || k[0] != kindTimer || k[1] != '/' || k[10] != '/' {
		return time.Time{}, "", 0, "", false
	}
	deadline = time.Unix(0, int64(binary.BigEndian.Uint64(k[2:10]))).UTC()
	rest := k[11:]
	// ws has no '/', so the first '/' ends it; then "<kind>/".
	for i, c := range rest {
		if c == '/' {
			if len(rest) < i+3 || rest[i+2] != '/' {
				return time.Time{}, "", 0, "", false
			}
			return deadline, string(rest[:i]), rest[i+1], string(rest[i+3:]), true
		}
	}
	return time.Time{}, "", 0, "", false
}

// lastPart is what follows the last '/' of a key: an agent or conversation id.
func lastPart(k []byte) string {
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] == '/' {
			return string(k[i+1:])
		}
	}
	return string(k)
}

// wsOf is the workspace of a w/, a/ or c/ key: the part after the kind.
func wsOf(k []byte) string {
	if len(k) < 2 {
		return ""
	}
	rest := k[2:]
	for i, c := range rest {
		if c == '/' {
			return string(rest[:i])
		}
	}
	return string(rest)
}

// ValidID checks an id taken from outside (token, URL, body): 1 to 128
// bytes of letters, digits and "-_.:@", and not "." or "..", which a URL
// path cannot carry as a segment. Keys use '/' as a separator, so it must
// never appear in an id. The error is an *InvalidError naming field.
func ValidID(field, s string) error {
	if s == "" || len(s) > 128 {
		return invalid(field, "must be 1 to 128 characters")
	}
	if s == "." || s == ".." {
		return invalid(field, "must not be . or ..")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '@':
		default:
			return invalid(field, "only letters, digits and -_.:@ are allowed")
		}
	}
	return nil
}

// validMessageID accepts any 1 to 256 bytes: a message id is always the last
// part of its key, so even '/' is harmless there, and helpdesks use e-mail
// Message-IDs.
func validMessageID(s string) error {
	if s == "" || len(s) > 256 {
		return invalid("message_id", "must be 1 to 256 bytes")
	}
	return nil
}
