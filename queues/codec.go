package queues

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Records are stored in a compact binary form rather than JSON: start-up
// decodes every agent and conversation, and a varint-and-bytes record decodes
// several times faster than reflection-driven JSON. Each record starts with a
// format byte so the layout can change without guessing.
//
// Times are UnixNano varints, 0 for the zero time; everything the store keeps
// in memory is normalised the same way (UTC, no monotonic reading, see
// normTime) so a record read back equals the one written.
const recordV1 = 1

var errCorrupt = errors.New("corrupt record")

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.varint(0)
		return
	}
	e.varint(t.UnixNano())
}
func (e *encoder) actor(a Actor) { e.str(a.ID); e.str(a.Name); e.str(string(a.Role)) }

// decoder reads what encoder wrote; the first error sticks and every later
// read returns a zero value, so decode functions check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) bool() bool {
	if len(d.b) < 1 {
		d.fail()
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

func (d *decoder) time() time.Time {
	n := d.varint()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (d *decoder) actor() Actor {
	return Actor{ID: d.str(), Name: d.str(), Role: Role(d.str())}
}

func (d *decoder) header() {
	if len(d.b) < 1 || d.b[0] != recordV1 {
		d.fail()
		return
	}
	d.b = d.b[1:]
}

func (d *decoder) done(what string) error {
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	return nil
}

// wsRecord is the stored part of a workspace: its settings and counters.
type wsRecord struct {
	Settings Settings
	Head     uint64 // last event sequence number
	AuditSeq uint64 // last audit entry sequence number
	NotifSeq uint64 // last notification sequence number
	AdminSeq uint64 // last admin log sequence number
}

func encodeWorkspace(r *wsRecord) []byte {
	e := encoder{b: make([]byte, 0, 64)}
	e.b = append(e.b, recordV1)
	e.uvarint(r.Head)
	e.uvarint(r.AuditSeq)
	e.uvarint(r.NotifSeq)
	e.uvarint(r.AdminSeq)
	s := &r.Settings
	e.bool(s.RemoveOwnership)
	e.time(s.RemoveOwnershipSince)
	e.varint(int64(s.OfflineGrace))
	e.varint(int64(s.IdleAway))
	e.varint(int64(s.IdleLogout))
	e.varint(int64(s.DefaultBoomerang))
	chans := make([]string, 0, len(s.AutoOwnership))
	for c := range s.AutoOwnership {
		chans = append(chans, c)
	}
	slices.Sort(chans)
	e.uvarint(uint64(len(chans)))
	for _, c := range chans {
		e.str(c)
		e.bool(s.AutoOwnership[c])
	}
	return e.b
}

func decodeWorkspace(b []byte) (wsRecord, error) {
	d := decoder{b: b}
	d.header()
	var r wsRecord
	r.Head = d.uvarint()
	r.AuditSeq = d.uvarint()
	r.NotifSeq = d.uvarint()
	r.AdminSeq = d.uvarint()
	s := &r.Settings
	s.RemoveOwnership = d.bool()
	s.RemoveOwnershipSince = d.time()
	s.OfflineGrace = int(d.varint())
	s.IdleAway = int(d.varint())
	s.IdleLogout = int(d.varint())
	s.DefaultBoomerang = int(d.varint())
	n := d.uvarint()
	// A channel takes at least two bytes (a length and a flag): refuse a
	// count the record cannot hold before sizing a map or looping by it.
	if n > uint64(len(d.b))/2 {
		d.fail()
		n = 0
	}
	s.AutoOwnership = make(map[string]bool, n)
	for range n {
		c := d.str()
		s.AutoOwnership[c] = d.bool()
	}
	return r, d.done("workspace")
}

func encodeAgent(a *Agent) []byte {
	e := encoder{b: make([]byte, 0, 96)}
	e.b = append(e.b, recordV1)
	e.str(a.ID)
	e.str(a.Name)
	e.str(string(a.Role))
	e.str(string(a.Status))
	e.str(a.StatusReason)
	e.time(a.StatusSince)
	e.bool(a.ManualAway)
	e.time(a.OfflineSince)
	e.time(a.GraceDeadline)
	return e.b
}

func decodeAgent(b []byte) (Agent, error) {
	d := decoder{b: b}
	d.header()
	a := Agent{
		ID:           d.str(),
		Name:         d.str(),
		Role:         Role(d.str()),
		Status:       Status(d.str()),
		StatusReason: d.str(),
		StatusSince:  d.time(),
		ManualAway:   d.bool(),
	}
	a.OfflineSince = d.time()
	a.GraceDeadline = d.time()
	return a, d.done("agent")
}

func encodeConv(c *convRec) []byte {
	e := encoder{b: make([]byte, 0, 64+len(c.ID)+len(c.Customer)+len(c.Subject)+len(c.Preview))}
	e.b = append(e.b, recordV1)
	e.str(c.ID)
	e.str(c.Channel)
	e.str(c.Customer)
	e.str(c.Subject)
	e.str(string(c.Queue))
	e.str(c.Owner)
	e.time(c.OwnerSince)
	e.uvarint(c.Version)
	e.time(c.Boomerang)
	e.time(c.CreatedAt)
	e.time(c.LastActivity)
	e.str(c.Preview)
	e.time(c.enteredNew)
	e.uvarint(c.messages)
	return e.b
}

func decodeConv(b []byte, c *convRec) error {
	d := decoder{b: b}
	d.header()
	c.ID = d.str()
	c.Channel = d.str()
	c.Customer = d.str()
	c.Subject = d.str()
	c.Queue = Queue(d.str())
	c.Owner = d.str()
	c.OwnerSince = d.time()
	c.Version = d.uvarint()
	c.Boomerang = d.time()
	c.CreatedAt = d.time()
	c.LastActivity = d.time()
	c.Preview = d.str()
	c.enteredNew = d.time()
	c.messages = d.uvarint()
	if d.err == nil && !c.Queue.Valid() {
		d.fail()
	}
	return d.done("conversation")
}

func encodeAudit(a *AuditEntry) []byte {
	e := encoder{b: make([]byte, 0, 96)}
	e.b = append(e.b, recordV1)
	e.uvarint(a.Seq)
	e.time(a.At)
	e.str(a.Kind)
	e.str(a.From)
	e.str(a.FromName)
	e.str(a.To)
	e.str(a.ToName)
	e.actor(a.Actor)
	e.str(string(a.Reason))
	return e.b
}

func decodeAudit(b []byte) (AuditEntry, error) {
	d := decoder{b: b}
	d.header()
	a := AuditEntry{Seq: d.uvarint(), At: d.time(), Kind: d.str(), From: d.str(), FromName: d.str(),
		To: d.str(), ToName: d.str(), Actor: d.actor()}
	a.Reason = Reason(d.str())
	return a, d.done("audit entry")
}

// A stored message carries its ordinal in the conversation, so Messages can
// order them even though the key (the dedupe id) does not.
func encodeMessage(m *Message, ordinal uint64) []byte {
	e := encoder{b: make([]byte, 0, 48+len(m.ID)+len(m.Text))}
	e.b = append(e.b, recordV1)
	e.uvarint(ordinal)
	e.str(m.ID)
	e.time(m.At)
	e.actor(m.From)
	e.str(m.Text)
	e.bool(m.Inbound)
	return e.b
}

func decodeMessage(b []byte) (Message, uint64, error) {
	d := decoder{b: b}
	d.header()
	ord := d.uvarint()
	m := Message{ID: d.str(), At: d.time(), From: d.actor(), Text: d.str()}
	m.Inbound = d.bool()
	return m, ord, d.done("message")
}

func encodeNotification(n *Notification) []byte {
	e := encoder{b: make([]byte, 0, 96)}
	e.b = append(e.b, recordV1)
	e.uvarint(n.Seq)
	e.time(n.At)
	e.str(n.Agent)
	e.str(n.Conversation)
	e.str(n.Customer)
	e.str(n.Subject)
	e.actor(n.By)
	return e.b
}

func decodeNotification(b []byte) (Notification, error) {
	d := decoder{b: b}
	d.header()
	n := Notification{Seq: d.uvarint(), At: d.time(), Agent: d.str(), Conversation: d.str(),
		Customer: d.str(), Subject: d.str()}
	n.By = d.actor()
	return n, d.done("notification")
}

func encodeAdminLog(l *AdminLogEntry) []byte {
	e := encoder{b: make([]byte, 0, 64)}
	e.b = append(e.b, recordV1)
	e.uvarint(l.Seq)
	e.time(l.At)
	e.actor(l.Actor)
	e.str(l.Field)
	e.str(l.Old)
	e.str(l.New)
	return e.b
}

func decodeAdminLog(b []byte) (AdminLogEntry, error) {
	d := decoder{b: b}
	d.header()
	l := AdminLogEntry{Seq: d.uvarint(), At: d.time(), Actor: d.actor()}
	l.Field = d.str()
	l.Old = d.str()
	l.New = d.str()
	return l, d.done("admin log entry")
}
