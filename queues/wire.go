package queues

import (
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The wire form of an event: `{"type":"event",` + the fields of the
// Event's JSON encoding, exactly the bytes encoding/json would produce for
// wireEvent (same field order, omitempty and omitzero, HTML-safe string
// escaping, RFC 3339 times). It is written by hand because encoding events
// is the committer's single largest cost after Badger, and the committer is
// the one goroutine every change waits for: reflection-driven encoding took
// about 40 % of its time. TestWireMatchesEncodingJSON holds the two
// encodings equal, so a tag changed in types.go fails a test instead of
// silently changing the protocol.

func appendEventWire(b []byte, ev *Event) []byte {
	b = append(b, `{"type":"event","seq":`...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	b = appendTimeField(b, `,"at":`, ev.At)
	b = appendStrField(b, `,"kind":`, string(ev.Kind))
	b = append(b, `,"actor":`...)
	b = appendActor(b, ev.Actor)
	if ev.Reason != "" {
		b = appendStrField(b, `,"reason":`, string(ev.Reason))
	}
	if ev.Conv != nil {
		b = append(b, `,"conv":`...)
		b = AppendConversationJSON(b, ev.Conv)
	}
	if ev.Prev != nil {
		b = appendStrField(b, `,"prev":{"queue":`, string(ev.Prev.Queue))
		if ev.Prev.Owner != "" {
			b = appendStrField(b, `,"owner":`, ev.Prev.Owner)
		}
		b = append(b, '}')
	}
	if p := ev.Presence; p != nil {
		b = appendStrField(b, `,"presence":{"agent":`, p.Agent)
		b = appendStrField(b, `,"from":`, string(p.From))
		b = appendStrField(b, `,"to":`, string(p.To))
		b = appendStrField(b, `,"reason":`, p.Reason)
		if !p.LastSeen.IsZero() {
			b = appendTimeField(b, `,"last_seen":`, p.LastSeen)
		}
		b = append(b, '}')
	}
	if ev.Agent != nil {
		b = append(b, `,"agent_record":`...)
		b = AppendAgentJSON(b, ev.Agent)
	}
	if ev.Settings != nil {
		b = append(b, `,"settings":`...)
		b = AppendSettingsJSON(b, ev.Settings)
	}
	if n := ev.Notification; n != nil {
		b = append(b, `,"notification":{"seq":`...)
		b = strconv.AppendUint(b, n.Seq, 10)
		b = appendTimeField(b, `,"at":`, n.At)
		b = appendStrField(b, `,"agent":`, n.Agent)
		b = appendStrField(b, `,"conversation":`, n.Conversation)
		if n.Customer != "" {
			b = appendStrField(b, `,"customer":`, n.Customer)
		}
		if n.Subject != "" {
			b = appendStrField(b, `,"subject":`, n.Subject)
		}
		b = append(b, `,"by":`...)
		b = appendActor(b, n.By)
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendActor(b []byte, a Actor) []byte {
	b = append(b, '{')
	if a.ID != "" {
		b = appendStrField(b, `"id":`, a.ID)
		b = append(b, ',')
	}
	if a.Name != "" {
		b = appendStrField(b, `"name":`, a.Name)
		b = append(b, ',')
	}
	b = appendStrField(b, `"role":`, string(a.Role))
	return append(b, '}')
}

// AppendConversationJSON, AppendAgentJSON and AppendSettingsJSON append
// the same bytes json.Marshal produces for the value. The hub builds its
// hello and its replies from them: a hello carries every agent of the
// workspace, and reflection was most of a connect's encoding cost.
func AppendConversationJSON(b []byte, c *Conversation) []byte {
	b = appendStrField(b, `{"id":`, c.ID)
	b = appendStrField(b, `,"channel":`, c.Channel)
	b = appendStrField(b, `,"customer":`, c.Customer)
	if c.Subject != "" {
		b = appendStrField(b, `,"subject":`, c.Subject)
	}
	b = appendStrField(b, `,"queue":`, string(c.Queue))
	if c.Owner != "" {
		b = appendStrField(b, `,"owner":`, c.Owner)
	}
	if !c.OwnerSince.IsZero() {
		b = appendTimeField(b, `,"owner_since":`, c.OwnerSince)
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, c.Version, 10)
	if !c.Boomerang.IsZero() {
		b = appendTimeField(b, `,"boomerang":`, c.Boomerang)
	}
	b = appendTimeField(b, `,"created_at":`, c.CreatedAt)
	b = appendTimeField(b, `,"last_activity":`, c.LastActivity)
	if c.Preview != "" {
		b = appendStrField(b, `,"preview":`, c.Preview)
	}
	return append(b, '}')
}

func AppendAgentJSON(b []byte, a *Agent) []byte {
	b = appendStrField(b, `{"id":`, a.ID)
	b = appendStrField(b, `,"name":`, a.Name)
	b = appendStrField(b, `,"role":`, string(a.Role))
	b = appendStrField(b, `,"status":`, string(a.Status))
	if a.StatusReason != "" {
		b = appendStrField(b, `,"status_reason":`, a.StatusReason)
	}
	b = appendTimeField(b, `,"status_since":`, a.StatusSince)
	if a.ManualAway {
		b = append(b, `,"manual_away":true`...)
	}
	if !a.OfflineSince.IsZero() {
		b = appendTimeField(b, `,"offline_since":`, a.OfflineSince)
	}
	if !a.GraceDeadline.IsZero() {
		b = appendTimeField(b, `,"grace_deadline":`, a.GraceDeadline)
	}
	return append(b, '}')
}

func AppendSettingsJSON(b []byte, s *Settings) []byte {
	b = append(b, `{"remove_ownership":`...)
	b = strconv.AppendBool(b, s.RemoveOwnership)
	if !s.RemoveOwnershipSince.IsZero() {
		b = appendTimeField(b, `,"remove_ownership_since":`, s.RemoveOwnershipSince)
	}
	b = appendIntField(b, `,"offline_grace":`, s.OfflineGrace)
	b = appendIntField(b, `,"idle_away":`, s.IdleAway)
	b = appendIntField(b, `,"idle_logout":`, s.IdleLogout)
	b = append(b, `,"auto_ownership":`...)
	if s.AutoOwnership == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		for i, c := range slices.Sorted(maps.Keys(s.AutoOwnership)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, c)
			b = append(b, ':')
			b = strconv.AppendBool(b, s.AutoOwnership[c])
		}
		b = append(b, '}')
	}
	b = appendIntField(b, `,"default_boomerang":`, s.DefaultBoomerang)
	return append(b, '}')
}

func appendStrField(b []byte, name, v string) []byte {
	return appendString(append(b, name...), v)
}

func appendIntField(b []byte, name string, v int) []byte {
	return strconv.AppendInt(append(b, name...), int64(v), 10)
}

// appendTimeField writes a time as time.Time.MarshalJSON does.
func appendTimeField(b []byte, name string, t time.Time) []byte {
	b = append(b, name...)
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as encoding/json writes a string.
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }

// appendString quotes s as encoding/json does with HTML escaping on:
// control characters, quote, backslash, <, > and & escaped; invalid UTF-8
// as \ufffd; U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
