package queues

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Fuzz tests of what the store reads from outside: the records, keys,
// cursors and logged events it decodes from disk (corrupt data must be an
// error, never a crash or a hang), and the settings patches admins send.
// `go test` runs their seeds; `go test -fuzz` explores (docs/security.md).

// Record kinds FuzzDecodeRecord decodes its bytes as.
const (
	fuzzWorkspace = iota
	fuzzAgent
	fuzzConv
	fuzzAudit
	fuzzMessage
	fuzzNotification
	fuzzAdminLog
	fuzzCursor
	fuzzTimerKey
	fuzzWire
	fuzzKinds
)

func FuzzDecodeRecord(f *testing.F) {
	at := time.Date(2026, 3, 2, 9, 0, 0, 123, time.UTC)
	set := DefaultSettings()
	set.RemoveOwnership, set.RemoveOwnershipSince = true, at
	set.AutoOwnership = map[string]bool{"chat": true, "email": false}
	conv := convRec{Conversation: Conversation{ID: "c7", Channel: "email", Customer: "Dana", Subject: "Refund",
		Queue: QueuePending, Owner: "bea", OwnerSince: at, Version: 6, Boomerang: at.Add(time.Hour),
		CreatedAt: at, LastActivity: at, Preview: "Where is my order?"}, enteredNew: at, messages: 3}
	records := [fuzzKinds][]byte{
		fuzzWorkspace: encodeWorkspace(&wsRecord{Settings: set, Head: 42, AuditSeq: 7, NotifSeq: 3, AdminSeq: 2}),
		fuzzAgent: encodeAgent(&Agent{ID: "bea", Name: "Bea", Role: RoleAgent, Status: StatusAway,
			StatusReason: "manual_away", StatusSince: at, ManualAway: true, GraceDeadline: at.Add(time.Minute)}),
		fuzzConv:  encodeConv(&conv),
		fuzzAudit: encodeAudit(&AuditEntry{Seq: 9, At: at, Kind: AuditOwner, From: "al", FromName: "Al", To: "bea", ToName: "Bea", Actor: alice, Reason: ReasonManualAssign}),
		fuzzMessage: encodeMessage(&Message{ID: "<m1@example.com>", At: at, From: service, Text: "Where is my refund?",
			Inbound: true}, 4),
		fuzzNotification: encodeNotification(&Notification{Seq: 3, At: at, Agent: "bea", Conversation: "c7", Customer: "Dana", By: alice}),
		fuzzAdminLog:     encodeAdminLog(&AdminLogEntry{Seq: 2, At: at, Actor: admin, Field: "offline_grace", Old: "60", New: "45"}),
		fuzzCursor:       []byte(encodeCursor(ientry{at: at.UnixNano(), id: "c7"})),
		fuzzTimerKey:     timerKey(at, "acme", timerBoomerang, "c7"),
		fuzzWire:         []byte(`{"type":"event","seq":43,"at":"2026-11-21T10:01:00Z","kind":"conversation","actor":{"id":"al","name":"Al","role":"agent"},"reason":"manual_assign","conv":{"id":"c7","channel":"email","customer":"Dana","queue":"new","owner":"bea","version":6,"created_at":"2026-11-21T09:12:00Z","last_activity":"2026-11-21T09:40:00Z"},"prev":{"queue":"new"}}`),
	}
	for kind, rec := range records {
		f.Add(byte(kind), rec)
		f.Add(byte(kind), rec[:len(rec)/2]) // cut short
		f.Add(byte(kind), []byte{})
		bad := append([]byte{9}, rec[1:]...) // an unknown format byte
		f.Add(byte(kind), bad)
	}

	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		switch kind % fuzzKinds {
		case fuzzWorkspace:
			r, err := decodeWorkspace(b)
			if err != nil {
				wantCorrupt(t, err)
				return
			}
			again, err := decodeWorkspace(encodeWorkspace(&r))
			if err != nil || !reflect.DeepEqual(again, r) {
				t.Fatalf("workspace round trip: got %+v %v, want %+v", again, err, r)
			}
		case fuzzAgent:
			roundTrip(t, "agent", b, decodeAgent, encodeAgent)
		case fuzzConv:
			var c convRec
			if err := decodeConv(b, &c); err != nil {
				wantCorrupt(t, err)
				return
			}
			var again convRec
			if err := decodeConv(encodeConv(&c), &again); err != nil || again != c {
				t.Fatalf("conversation round trip: got %+v %v, want %+v", again, err, c)
			}
		case fuzzAudit:
			roundTrip(t, "audit", b, decodeAudit, encodeAudit)
		case fuzzMessage:
			m, ord, err := decodeMessage(b)
			if err != nil {
				wantCorrupt(t, err)
				return
			}
			if again, ord2, err := decodeMessage(encodeMessage(&m, ord)); err != nil || again != m || ord2 != ord {
				t.Fatalf("message round trip: got %+v %d %v, want %+v %d", again, ord2, err, m, ord)
			}
		case fuzzNotification:
			roundTrip(t, "notification", b, decodeNotification, encodeNotification)
		case fuzzAdminLog:
			roundTrip(t, "admin log", b, decodeAdminLog, encodeAdminLog)
		case fuzzCursor:
			// A cursor comes from a client, as a string.
			e, err := decodeCursor(string(b))
			if err != nil {
				var inv *InvalidError
				if !errors.As(err, &inv) || inv.Field != "cursor" {
					t.Fatalf("cursor %q: got %v, want an InvalidError naming cursor", b, err)
				}
				return
			}
			if again, err := decodeCursor(encodeCursor(e)); err != nil || again != e {
				t.Fatalf("cursor round trip: got %+v %v, want %+v", again, err, e)
			}
		case fuzzTimerKey:
			deadline, wsName, k, id, ok := parseTimerKey(b)
			if !ok {
				return
			}
			if strings.Contains(wsName, "/") {
				t.Fatalf("timer key %q: workspace %q holds '/'", b, wsName)
			}
			d2, ws2, k2, id2, ok := parseTimerKey(timerKey(deadline, wsName, k, id))
			if !ok || !d2.Equal(deadline) || ws2 != wsName || k2 != k || id2 != id {
				t.Fatalf("timer key %q round trip: got %v %q %c %q %v", b, d2, ws2, k2, id2, ok)
			}
		case fuzzWire:
			ev, err := decodeWire("acme", b)
			if err == nil && (ev.Workspace != "acme" || string(ev.Wire) != string(b)) {
				t.Fatalf("wire: got workspace %q and %d bytes, want acme and the %d bytes read", ev.Workspace, len(ev.Wire), len(b))
			}
		}
	})
}

// TestDecodeWorkspaceOverstatedChannelCount: a workspace record that claims
// more Auto-Ownership channels than its bytes hold is refused without
// costing memory in proportion to the claim. The count is a uvarint read
// from disk; sized and looped over as read, a corrupt count of 2^28 ended
// start-up with "fatal error: out of memory" and one of 2^44 or more never
// ended (FuzzDecodeRecord found it; testdata/fuzz keeps its input).
func TestDecodeWorkspaceOverstatedChannelCount(t *testing.T) {
	rec := overstatedWorkspace(1 << 20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decodeWorkspace(rec)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errCorrupt) {
		t.Errorf("decode: got %v, want errCorrupt", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("decoding a %d-byte record allocated %d bytes, want at most 1 MiB", len(rec), got)
	}
}

// overstatedWorkspace is a workspace record with default fields that claims
// n channels and holds none.
func overstatedWorkspace(n uint64) []byte {
	b := encodeWorkspace(&wsRecord{Settings: DefaultSettings()})
	b = b[:len(b)-1] // the count of the empty channel list
	return binary.AppendUvarint(b, n)
}

func wantCorrupt(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, errCorrupt) {
		t.Fatalf("got error %v, want errCorrupt", err)
	}
}

// Bounds of the settings, as docs/http-api.md states them.
var settingBounds = []struct {
	field string
	max   int
}{
	{"offline_grace", 90},
	{"idle_away", 86400},
	{"idle_logout", 86400},
	{"default_boomerang", 30 * 86400},
}

// FuzzUpdateSettings sends admins' patches, in and out of range, to a real
// store: an out-of-range value refuses the whole patch with an InvalidError
// naming the field and changes nothing; an in-range patch is applied as
// given; only admins may change settings.
func FuzzUpdateSettings(f *testing.F) {
	// set says which of remove, grace, away, logout and boomerang the patch
	// carries (bits 0 to 4); channels is a comma-separated list of
	// Auto-Ownership channels, switched on (odd positions) or off.
	f.Add(true, uint8(0b11111), true, int64(45), int64(600), int64(0), int64(3600), "email,chat", false)
	f.Add(true, uint8(0b00010), false, int64(90), int64(0), int64(0), int64(0), "", false)
	f.Add(true, uint8(0b00010), false, int64(91), int64(0), int64(0), int64(0), "", false)
	f.Add(true, uint8(0b00010), false, int64(-1), int64(0), int64(0), int64(0), "", false)
	f.Add(true, uint8(0b00100), false, int64(0), int64(86401), int64(0), int64(0), "", false)
	f.Add(true, uint8(0b01000), false, int64(0), int64(0), int64(86400), int64(0), "", false)
	f.Add(true, uint8(0b10000), false, int64(0), int64(0), int64(0), int64(30*86400+1), "", false)
	f.Add(true, uint8(0b11110), false, int64(1<<62), int64(-1<<63), int64(1<<63-1), int64(-5), "", false)
	f.Add(true, uint8(0), false, int64(0), int64(0), int64(0), int64(0), "Email", false)
	f.Add(true, uint8(0), false, int64(0), int64(0), int64(0), int64(0), ","+strings.Repeat("x", 65), false)
	f.Add(true, uint8(0), false, int64(0), int64(0), int64(0), int64(0), "e/mail,chat", true)
	f.Add(false, uint8(0b00010), false, int64(30), int64(0), int64(0), int64(0), "", false)

	clk := newClock()
	ctx := context.Background()
	s, err := Open(Options{InMemory: true, Now: clk.Now})
	if err != nil {
		f.Fatalf("Open: %v", err)
	}
	f.Cleanup(func() { s.Close() })
	if err := s.EnsureWorkspace(ctx, ws); err != nil {
		f.Fatalf("EnsureWorkspace: %v", err)
	}

	f.Fuzz(func(t *testing.T, isAdmin bool, set uint8, remove bool, grace, away, logout, boomerang int64, channels string, firstOn bool) {
		var p SettingsPatch
		ints := []*int64{&grace, &away, &logout, &boomerang}
		targets := []**int{&p.OfflineGrace, &p.IdleAway, &p.IdleLogout, &p.DefaultBoomerang}
		if set&1 != 0 {
			p.RemoveOwnership = &remove
		}
		for i, v := range ints {
			if set&(2<<i) != 0 {
				n := int(*v)
				*targets[i] = &n
			}
		}
		if channels != "" {
			p.AutoOwnership = map[string]bool{}
			for i, c := range strings.Split(channels, ",") {
				p.AutoOwnership[c] = (i%2 == 0) == firstOn
			}
		}
		by := admin
		if !isAdmin {
			by = alice
		}
		old, err := s.Settings(ws)
		if err != nil {
			t.Fatalf("Settings: %v", err)
		}
		clk.Advance(time.Second)
		got, err := s.UpdateSettings(ctx, ws, by, p)
		now, rerr := s.Settings(ws)
		if rerr != nil {
			t.Fatalf("Settings: %v", rerr)
		}

		// The model: the first refusal in the order the store checks.
		wantField := ""
		for i, b := range settingBounds {
			if v := *targets[i]; v != nil && (*v < 0 || *v > b.max) {
				wantField = b.field
				break
			}
		}
		if wantField == "" {
			for c := range p.AutoOwnership {
				if validChannel("auto_ownership", c) != nil {
					wantField = "auto_ownership"
				}
			}
		}
		switch {
		case !isAdmin:
			if !errors.Is(err, ErrForbidden) {
				t.Fatalf("agent's patch %+v: got %v, want ErrForbidden", p, err)
			}
		case wantField != "":
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Field != wantField {
				t.Fatalf("patch %s: got %v, want an InvalidError naming %s", describePatch(p), err, wantField)
			}
		case err != nil:
			t.Fatalf("in-range patch %s: got %v, want it applied", describePatch(p), err)
		}
		if err != nil {
			if !reflect.DeepEqual(now, old) {
				t.Fatalf("a refused patch changed the settings: got %+v, want %+v", now, old)
			}
			return
		}

		want := old
		want.AutoOwnership = maps.Clone(old.AutoOwnership)
		if p.RemoveOwnership != nil && *p.RemoveOwnership != old.RemoveOwnership {
			want.RemoveOwnership = *p.RemoveOwnership
			want.RemoveOwnershipSince = time.Time{}
			if want.RemoveOwnership {
				want.RemoveOwnershipSince = clk.Now()
			}
		}
		for i, dst := range []*int{&want.OfflineGrace, &want.IdleAway, &want.IdleLogout, &want.DefaultBoomerang} {
			if v := *targets[i]; v != nil {
				*dst = *v
			}
		}
		for c, on := range p.AutoOwnership {
			if on {
				want.AutoOwnership[c] = true
			} else {
				delete(want.AutoOwnership, c)
			}
		}
		if !settingsEqual(got, want) || !settingsEqual(now, want) {
			t.Fatalf("patch %s on %+v: got %+v, stored %+v, want %+v", describePatch(p), old, got, now, want)
		}
	})
}

func settingsEqual(a, b Settings) bool {
	return a.RemoveOwnership == b.RemoveOwnership && a.RemoveOwnershipSince.Equal(b.RemoveOwnershipSince) &&
		a.OfflineGrace == b.OfflineGrace && a.IdleAway == b.IdleAway && a.IdleLogout == b.IdleLogout &&
		a.DefaultBoomerang == b.DefaultBoomerang && maps.Equal(a.AutoOwnership, b.AutoOwnership)
}

func describePatch(p SettingsPatch) string {
	var b strings.Builder
	b.WriteString("{")
	add := func(name string, v *int) {
		if v != nil {
			b.WriteString(" " + name + ":" + itoaSigned(*v))
		}
	}
	if p.RemoveOwnership != nil {
		b.WriteString(" remove_ownership:" + map[bool]string{true: "true", false: "false"}[*p.RemoveOwnership])
	}
	add("offline_grace", p.OfflineGrace)
	add("idle_away", p.IdleAway)
	add("idle_logout", p.IdleLogout)
	add("default_boomerang", p.DefaultBoomerang)
	if p.AutoOwnership != nil {
		b.WriteString(" auto_ownership:")
		for c, on := range p.AutoOwnership {
			b.WriteString(" " + c + "=" + map[bool]string{true: "on", false: "off"}[on])
		}
	}
	b.WriteString(" }")
	return b.String()
}

func itoaSigned(n int) string {
	if n < 0 {
		return "-" + itoa(-n)
	}
	return itoa(n)
}

// FuzzBoomerangSurvivesRestart: a boomerang time the store accepts is the
// one it reads back after a restart. The conversation record and the timer
// index keep times as UnixNano, which only spans 1678 to 2262; a boomerang
// accepted beyond that was stored as some other time, and the conversation
// came back to new at the next start-up instead of when its owner chose
// (the fuzzer's input is kept in testdata/fuzz).
func FuzzBoomerangSurvivesRestart(f *testing.F) {
	// An RFC 3339 time's parts: year, month, day, seconds into the day and
	// nanoseconds (time.Date normalises those out of range).
	f.Add(int16(2026), uint8(3), uint8(2), int32(10*3600), int32(0)) // an hour after the test clock's now
	f.Add(int16(2027), uint8(3), uint8(2), int32(9*3600), int32(0))  // a year on
	f.Add(int16(2262), uint8(1), uint8(1), int32(0), int32(0))       // UnixNano holds times up to April 2262
	f.Add(int16(2026), uint8(3), uint8(2), int32(8*3600), int32(0))  // the past: refused
	f.Add(int16(2026), uint8(3), uint8(2), int32(9*3600), int32(1))  // a nanosecond after now

	clk := newClock()
	ctx := context.Background()
	s, err := Open(Options{InMemory: true, Now: clk.Now})
	if err != nil {
		f.Fatalf("Open: %v", err)
	}
	f.Cleanup(func() { s.Close() })
	if _, err := s.EnsureAgent(ctx, ws, Agent{ID: admin.ID, Name: admin.Name, Role: admin.Role}); err != nil {
		f.Fatalf("EnsureAgent: %v", err)
	}
	if _, err := s.Inbound(ctx, ws, Inbound{Conversation: "c1", MessageID: "m1", Channel: "email", Customer: "Dana"}); err != nil {
		f.Fatalf("Inbound: %v", err)
	}
	if _, err := s.Move(ctx, ws, admin, "c1", QueuePending, 0); err != nil {
		f.Fatalf("Move: %v", err)
	}

	f.Fuzz(func(t *testing.T, year int16, month, day uint8, secs, nanos int32) {
		at := time.Date(int(year), time.Month(month), int(day), 0, 0, int(secs), int(nanos), time.UTC)
		if at.Year() < 1 || at.Year() > 9999 {
			t.Skip("not a time JSON can carry")
		}
		res, err := s.SetBoomerang(ctx, ws, admin, "c1", at, 0)
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Field != "at" {
				t.Fatalf("boomerang at %v: got %v, want success or an InvalidError naming at", at, err)
			}
			return
		}
		c := convRec{Conversation: res.Conv}
		var back convRec
		if err := decodeConv(encodeConv(&c), &back); err != nil || !back.Boomerang.Equal(res.Conv.Boomerang) {
			t.Fatalf("boomerang accepted for %v is read back from disk as %v (%v)", res.Conv.Boomerang, back.Boomerang, err)
		}
		deadline, _, _, _, ok := parseTimerKey(timerKey(res.Conv.Boomerang, ws, timerBoomerang, "c1"))
		if !ok || !deadline.Equal(res.Conv.Boomerang) {
			t.Fatalf("boomerang accepted for %v has its timer stored for %v", res.Conv.Boomerang, deadline)
		}
	})
}

// roundTrip decodes b: a record that does not decode must be refused as
// corrupt, and one that does must encode back to itself.
func roundTrip[T comparable](t *testing.T, what string, b []byte, decode func([]byte) (T, error), encode func(*T) []byte) {
	t.Helper()
	v, err := decode(b)
	if err != nil {
		wantCorrupt(t, err)
		return
	}
	if again, err := decode(encode(&v)); err != nil || again != v {
		t.Fatalf("%s round trip: got %+v %v, want %+v", what, again, err, v)
	}
}
