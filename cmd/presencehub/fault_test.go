package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/queues"
)

// The fault tests: each puts the real binary in one kind of trouble and
// checks what clients see and what survives.

// rawHandshake opens a TCP connection and does the WebSocket opening
// handshake by hand (RFC 6455, 4.1), reading exactly the response headers
// and nothing more. What the caller then does with the connection is up to
// it: never read or write again (a client whose network went silent), or
// close it at once.
func rawHandshake(addr, token string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(c, "GET /ws?access_token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", token, addr, base64.StdEncoding.EncodeToString(key))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var head []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := c.Read(one); err != nil {
			c.Close()
			return nil, fmt.Errorf("handshake: %w (read %q)", err, head)
		}
		if head = append(head, one[0]); len(head) > 8192 {
			c.Close()
			return nil, fmt.Errorf("handshake: response headers over 8 KiB")
		}
	}
	c.SetReadDeadline(time.Time{})
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
		c.Close()
		return nil, fmt.Errorf("handshake: got %q, want 101", bytes.SplitN(head, []byte("\r\n"), 2)[0])
	}
	return c, nil
}

// TestSilentClientGoesOfflineWithinGracePlus30s: an agent's only connection
// goes silent (no close frame; it never reads again, so it answers no ping).
// The hub must notice by itself, with its production ping/pong settings
// (ping every 15 s, dead after 30 s without an answer: serve has no flag for
// them, and the real binary runs here), and the agent must be offline within
// offline grace + 30 s.
func TestSilentClientGoesOfflineWithinGracePlus30s(t *testing.T) {
	bin := needBinary(t)
	t.Parallel() // half a minute of waiting: it runs beside the burst test
	addr := freeAddr(t)
	p := startHub(t, bin, addr, t.TempDir(), hubOptions{durable: true})
	a := newAPI(t, p.base)
	const ws, grace = "silent", 2 * time.Second
	admin := mintFor(t, ws, "admin", queues.RoleAdmin)
	a.must(t, http.MethodPatch, "/api/v1/settings", admin, map[string]any{"offline_grace": int(grace / time.Second)}, nil)

	// A watcher reads every presence event of the workspace.
	type seen struct {
		ch queues.PresenceChange
		at time.Time
	}
	events := make(chan seen, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watcher, _, err := dialWS(ctx, &http.Client{Transport: newTransport(t)}, p.base, mintFor(t, ws, "watcher", queues.RoleAgent), nil,
		func(m *wsMsg) {
			if m.Type == "event" && m.Presence != nil && m.Presence.Agent == "quiet" {
				select {
				case events <- seen{*m.Presence, time.Now()}:
				default:
				}
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.close()

	conn, err := rawHandshake(addr, mintFor(t, ws, "quiet", queues.RoleAgent))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	silentSince := time.Now() // from here on the client neither reads nor writes

	wait := func(to queues.Status, limit time.Duration) (seen, bool) {
		deadline := time.After(limit)
		for {
			select {
			case ev := <-events:
				if ev.ch.To == to {
					return ev, true
				}
			case <-deadline:
				return seen{}, false
			}
		}
	}
	if _, ok := wait(queues.StatusOnline, 5*time.Second); !ok {
		t.Fatal("quiet did not come online within 5s of its handshake")
	}
	bound := grace + hub.DefaultPongTimeout
	off, ok := wait(queues.StatusOffline, bound+10*time.Second)
	if !ok {
		t.Fatalf("quiet was not offline %v after going silent, want within grace + PongTimeout = %v", bound+10*time.Second, bound)
	}
	took := off.at.Sub(silentSince)
	t.Logf("silent client: offline %v after going silent (grace %v + PongTimeout %v = %v; ping every %v), reason %s",
		took.Round(10*time.Millisecond), grace, hub.DefaultPongTimeout, bound, hub.DefaultPingInterval, off.ch.Reason)
	// The watcher's receipt includes the commit and the fan-out: a second
	// of slack for them.
	if took > bound+time.Second {
		t.Errorf("quiet went offline %v after going silent, want at most grace + PongTimeout = %v", took, bound)
	}
	if off.ch.Reason != "grace_expired" {
		t.Errorf("got reason %q, want grace_expired (the dead connection starts the grace)", off.ch.Reason)
	}
	// The hub closed the silent connection: the client's read ends.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := drainConn(conn); err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the hub did not close the silent TCP connection: %v", err)
	}
}

// drainConn reads the connection to its end (or its read deadline).
func drainConn(c net.Conn) (int64, error) {
	var n int64
	buf := make([]byte, 32<<10)
	for {
		m, err := c.Read(buf)
		n += int64(m)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n, err
			}
			return n, nil
		}
	}
}

// percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// TestFloodIsRateLimited: clients that flood requests get rate_limited
// replies and then a 4029 close, while another agent's requests keep a low
// latency. The flood persists for seconds: each flooder reconnects after its
// close and floods again.
func TestFloodIsRateLimited(t *testing.T) {
	bin := needBinary(t)
	p := startHub(t, bin, freeAddr(t), t.TempDir(), hubOptions{durable: true})
	a := newAPI(t, p.base)
	hc := &http.Client{Transport: newTransport(t)}
	const ws = "flood"
	svc := mintFor(t, ws, "helpdesk", queues.RoleService)
	for i := range 30 {
		a.must(t, http.MethodPost, fmt.Sprintf("/api/v1/conversations/c%d/inbound", i), svc,
			map[string]any{"message_id": "m1", "channel": "email", "customer": "C"}, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The steady agent assigns and unassigns its conversation, one
	// request every 20 ms, measuring each round trip.
	steady, _, err := dialWS(ctx, hc, p.base, mintFor(t, ws, "steady", queues.RoleAgent), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer steady.close()
	type sample struct {
		at  time.Time
		d   time.Duration
		err string
	}
	var (
		samples []sample
		stopMu  sync.Mutex
		stopped bool
	)
	steadyDone := make(chan struct{})
	go func() { // ends when stopped, or at the first failure
		defer close(steadyDone)
		var ver uint64 = 1
		for i := 0; ; i++ {
			stopMu.Lock()
			s := stopped
			stopMu.Unlock()
			if s {
				return
			}
			req := map[string]any{"op": "assign", "conv": "c0", "agent": "steady", "version": ver}
			if i%2 == 1 {
				req = map[string]any{"op": "unassign", "conv": "c0", "version": ver}
			}
			start := time.Now()
			r, err := steady.do(ctx, req, nil)
			smp := sample{at: start, d: time.Since(start)}
			var res convResult
			switch {
			case err != nil:
				smp.err = err.Error()
			case !r.OK:
				smp.err = r.code()
			case json.Unmarshal(r.Result, &res) != nil:
				smp.err = "bad result"
			default:
				ver = res.Conv.Version
			}
			samples = append(samples, smp)
			if smp.err != "" {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second) // the steady agent's latency before the flood

	// Four flooders, each writing requests as fast as it can, without
	// waiting for replies, reconnecting after every close, for 4 s.
	type floodConn struct {
		ok, limited, other int64
		code               websocket.StatusCode
	}
	var (
		fmu       sync.Mutex
		floods    []*floodConn
		fwg       sync.WaitGroup
		dialFails atomic.Int64
	)
	floodFrame := []byte(`{"id":0,"op":"page","queue":"new","limit":1}`) // small replies: the test process reads them all
	floodStart := time.Now()
	floodEnd := floodStart.Add(4 * time.Second)
	for f := range 4 {
		tok := mintFor(t, ws, fmt.Sprintf("flooder%d", f), queues.RoleAgent)
		fwg.Add(1)
		go func() { // ends at floodEnd
			defer fwg.Done()
			for time.Now().Before(floodEnd) {
				fc := &floodConn{}
				var cmu sync.Mutex
				conn, _, err := dialWS(ctx, hc, p.base, tok, nil, func(m *wsMsg) {
					if m.Type != "reply" {
						return
					}
					cmu.Lock()
					defer cmu.Unlock()
					switch {
					case m.OK:
						fc.ok++
					case m.Error != nil && m.Error.Code == "rate_limited":
						fc.limited++
					default:
						fc.other++
					}
				})
				if err != nil {
					dialFails.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				// A socket floods until the hub closes it (the write
				// fails), 5,000 requests at most.
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				for i := 0; i < 5000; i++ {
					if conn.sendRaw(wctx, floodFrame) != nil {
						break
					}
				}
				wcancel()
				select {
				case <-conn.done:
				case <-time.After(5 * time.Second):
				}
				conn.drop()
				cmu.Lock()
				fc.code = conn.closeCode()
				cmu.Unlock()
				fmu.Lock()
				floods = append(floods, fc)
				fmu.Unlock()
			}
		}()
	}
	fwg.Wait()
	time.Sleep(500 * time.Millisecond)
	stopMu.Lock()
	stopped = true
	stopMu.Unlock()
	<-steadyDone

	var before, during []time.Duration
	for _, s := range samples {
		if s.err != "" {
			t.Errorf("the steady agent's request at +%v failed: %s", s.at.Sub(floodStart).Round(time.Millisecond), s.err)
			continue
		}
		switch {
		case s.at.Before(floodStart):
			before = append(before, s.d)
		case s.at.Before(floodEnd):
			during = append(during, s.d)
		}
	}
	slices.Sort(before)
	slices.Sort(during)
	var ok, limited, other int64
	closes := map[websocket.StatusCode]int{}
	for _, fc := range floods {
		ok, limited, other = ok+fc.ok, limited+fc.limited, other+fc.other
		closes[fc.code]++
		// The bucket: 100 at once, 50 a second after that.
		if maxOK := int64(100 + 50*5 + 5); fc.ok > maxOK {
			t.Errorf("a flooder's socket got %d requests through, want at most %d (burst 100, 50/s)", fc.ok, maxOK)
		}
	}
	t.Logf("flood: %d flooder sockets, %d requests answered ok, %d rate_limited, %d other; closes %v; %d failed dials",
		len(floods), ok, limited, other, closes, dialFails.Load())
	t.Logf("steady agent (assign/unassign, durable): before the flood p50 %v p99 %v (%d requests); during it p50 %v p99 %v max %v (%d requests)",
		percentile(before, .5), percentile(before, .99), len(before),
		percentile(during, .5), percentile(during, .99), percentile(during, 1), len(during))
	if limited == 0 {
		t.Errorf("got no rate_limited reply, want the flood refused")
	}
	if n := closes[hub.CloseRateLimited]; n == 0 || n != len(floods) {
		t.Errorf("got closes %v, want every flooder socket closed with %d", closes, hub.CloseRateLimited)
	}
	if len(during) < 20 {
		t.Errorf("the steady agent made only %d requests during the flood, want a steady stream", len(during))
	}
	if p99 := percentile(during, .99); p99 > 2*time.Second {
		t.Errorf("the steady agent's p99 during the flood is %v, want under 2s", p99)
	}
}

// TestBurstConnectsLeaveNothingBehind: thousands of connects and
// disconnects, in batches, some polite, some dropped without a close frame,
// some abandoned right after the handshake, in two halves. Once the hub has
// settled after each half, its goroutines are back to where they were.
// RSS and heap are reported, not asserted: Badger's preallocated memtable
// pages are touched once as presence changes commit, so RSS grows once and
// then holds; the second half shows whether it keeps growing.
func TestBurstConnectsLeaveNothingBehind(t *testing.T) {
	bin := needBinary(t)
	t.Parallel() // runs beside the silent-client test, which mostly waits
	addr := freeAddr(t)
	p := startHub(t, bin, addr, t.TempDir(), hubOptions{durable: true})
	hc := &http.Client{Transport: newTransport(t)}
	const ws, agents, total, batch = "burst", 60, 3000, 100
	toks := make([]string, agents)
	for i := range toks {
		toks[i] = mintFor(t, ws, fmt.Sprintf("b%d", i), queues.RoleAgent)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// settle polls until the goroutine count has not moved by more than 2
	// over three scrapes 500 ms apart.
	settle := func(limit time.Duration) (int, bool) {
		var last []int
		ok := pollUntil(limit, 500*time.Millisecond, func() bool {
			n, err := goroutines(p.base)
			if err != nil {
				return false
			}
			last = append(last, n)
			if len(last) < 3 {
				return false
			}
			w := last[len(last)-3:]
			return slices.Max(w)-slices.Min(w) <= 2
		})
		if len(last) == 0 {
			return 0, false
		}
		return last[len(last)-1], ok
	}
	type figures struct {
		goroutines int
		rssKiB     int64
		heapMiB    float64
	}
	measure := func(g int) figures {
		f := figures{goroutines: g}
		f.rssKiB, _ = p.rssKiB()
		h, _ := metric(p.base, "go_memstats_heap_inuse_bytes")
		f.heapMiB = h / (1 << 20)
		return f
	}
	// Every agent connects once first, so what stays for good (the agents,
	// a workspace's first use) is in the baseline.
	for i := range agents {
		c, _, err := dialWS(ctx, hc, p.base, toks[i], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.close()
	}
	g0, ok := settle(20 * time.Second)
	if !ok {
		t.Fatalf("goroutines did not settle before the burst (last %d)", g0)
	}
	before := measure(g0)

	var failed atomic.Int64
	peak, peakRSS := g0, before.rssKiB
	began := time.Now()
	var halves []figures
	for done := 0; done < total; done += batch {
		bctx, bcancel := context.WithTimeout(ctx, 20*time.Second)
		conns := make([]*wsConn, batch)
		raws := make([]net.Conn, batch)
		var wg sync.WaitGroup
		for j := range batch {
			wg.Add(1)
			go func() { // ends when this connect has succeeded or failed
				defer wg.Done()
				n := done + j
				tok := toks[n%agents]
				if n%3 == 2 {
					// Abandoned right after the handshake: hello is never read.
					c, err := rawHandshake(addr, tok)
					if err != nil {
						failed.Add(1)
						return
					}
					raws[j] = c
					return
				}
				c, _, err := dialWS(bctx, hc, p.base, tok, nil, nil)
				if err != nil {
					failed.Add(1)
					return
				}
				conns[j] = c
			}()
		}
		wg.Wait()
		bcancel()
		if n, err := goroutines(p.base); err == nil {
			peak = max(peak, n)
		}
		if r, err := p.rssKiB(); err == nil {
			peakRSS = max(peakRSS, r)
		}
		for j := range batch {
			switch {
			case raws[j] != nil:
				raws[j].Close()
			case conns[j] != nil && (done+j)%3 == 0:
				wg.Add(1)
				go func() { defer wg.Done(); conns[j].close() }() // ends after the close handshake (at most 5 s)
			case conns[j] != nil:
				conns[j].drop() // no close frame
			}
		}
		wg.Wait()
		if half := done + batch; half == total/2 || half == total {
			g, ok := settle(30 * time.Second)
			if !ok {
				t.Errorf("goroutines did not settle within 30s after %d connects (last %d)", half, g)
			}
			if g > g0+5 {
				t.Errorf("got %d goroutines after %d connects, want at most %d (the baseline %d + 5)", g, half, g0+5, g0)
			}
			halves = append(halves, measure(g))
		}
	}
	t.Logf("burst: %d connects and disconnects (1/3 polite close, 1/3 dropped without a close frame, 1/3 abandoned after the handshake), batches of %d, %v, %d failed",
		total, batch, time.Since(began).Round(time.Millisecond), failed.Load())
	t.Logf("goroutines: %d before, %d peak, %d after half, %d after all", g0, peak, halves[0].goroutines, halves[1].goroutines)
	t.Logf("RSS: %d KiB before, %d KiB peak, %d KiB after half, %d KiB after all; Go heap in use: %.0f, %.0f, %.0f MiB",
		before.rssKiB, peakRSS, halves[0].rssKiB, halves[1].rssKiB, before.heapMiB, halves[0].heapMiB, halves[1].heapMiB)
	if failed.Load() != 0 {
		t.Errorf("got %d failed connects, want 0", failed.Load())
	}
}

// TestRepliesComeAfterTheirEvents: protocol.md's Resuming tells a client to
// keep the highest seq it has seen, replies included, and to resume from
// it. That is safe only if every event up to a reply's seq reaches the
// socket before the reply; otherwise a socket that drops between the two
// resumes past events it never got. An agent with a view of everything in
// new changes its own conversation up to 120 times (an unassign, or an
// assignment to itself, which notifies nobody: the change's seq is its
// conversation event's) while a second agent's changes add events of their
// own: on the first agent's socket, no event may come after a reply with a
// higher seq.
func TestRepliesComeAfterTheirEvents(t *testing.T) {
	bin := needBinary(t)
	p := startHub(t, bin, freeAddr(t), t.TempDir(), hubOptions{durable: true})
	a := newAPI(t, p.base)
	hc := &http.Client{Transport: newTransport(t)}
	const ws = "order"
	svc := mintFor(t, ws, "helpdesk", queues.RoleService)
	for _, c := range []string{"mine", "theirs"} {
		a.must(t, http.MethodPost, "/api/v1/conversations/"+c+"/inbound", svc, map[string]any{"message_id": "m1", "channel": "email", "customer": "C"}, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var (
		mu         sync.Mutex
		lastReply  uint64
		inversions []string
		events     int
	)
	me, _, err := dialWS(ctx, hc, p.base, mintFor(t, ws, "bea", queues.RoleAgent), nil, func(m *wsMsg) {
		if m.Type != "event" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		events++
		if m.Seq < lastReply {
			inversions = append(inversions, fmt.Sprintf("event seq %d after reply seq %d", m.Seq, lastReply))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer me.close()
	if r, err := me.do(ctx, map[string]any{"op": "subscribe", "view": "all", "queue": "new", "filter": map[string]any{"kind": "all"}}, nil); err != nil || !r.OK {
		t.Fatalf("subscribe: %+v %v", r, err)
	}
	other, _, err := dialWS(ctx, hc, p.base, mintFor(t, ws, "al", queues.RoleAgent), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.close()

	// Al changes his conversation meanwhile, as fast as his answers come.
	otherDone := make(chan struct{})
	stop := make(chan struct{})
	go func() { // ends at stop, or at Al's first failure
		defer close(otherDone)
		var ver uint64 = 1
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			req := map[string]any{"op": "assign", "conv": "theirs", "agent": "al", "version": ver}
			if i%2 == 1 {
				req = map[string]any{"op": "unassign", "conv": "theirs", "version": ver}
			}
			r, err := other.do(ctx, req, nil)
			var res convResult
			if err != nil || !r.OK || json.Unmarshal(r.Result, &res) != nil {
				return
			}
			ver = res.Conv.Version
			time.Sleep(25 * time.Millisecond) // under the 50 a second each agent may send
		}
	}()

	hook := func(m *wsMsg) { // on the reader, in the socket's order
		var r convResult
		if m.OK && json.Unmarshal(m.Result, &r) == nil {
			mu.Lock()
			lastReply = max(lastReply, r.Seq)
			mu.Unlock()
		}
	}
	var ver uint64 = 1
	for i := range 120 {
		req := map[string]any{"op": "assign", "conv": "mine", "agent": "bea", "version": ver}
		if i%2 == 1 {
			req = map[string]any{"op": "unassign", "conv": "mine", "version": ver}
		}
		r, err := me.do(ctx, req, hook)
		if err == nil && r.code() == "rate_limited" {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var res convResult
		if err != nil || !r.OK || json.Unmarshal(r.Result, &res) != nil {
			t.Fatalf("change %d: got %+v %v", i, r.Error, err)
		}
		ver = res.Conv.Version
		time.Sleep(25 * time.Millisecond) // under the 50 a second each agent may send
	}
	close(stop)
	<-otherDone
	// The last events may still be on their way.
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d events on the socket, %d came after a reply with a higher seq", events, len(inversions))
	if len(inversions) > 0 {
		t.Errorf("got %d events after a reply with a higher seq on the same socket (first: %s), want none: a client that resumes from the reply's seq, as protocol.md says, never gets them",
			len(inversions), inversions[0])
	}
}

// TestStoreWriteFailureTurnsIntoErrors: the disk under the store fills up.
// Writes must fail for their callers (HTTP 503, WebSocket unavailable),
// /readyz must fail, the process must keep running, and once space is freed
// and the hub restarted, nothing it acknowledged is lost. Two ways to fill
// it: another file takes the space at once, or the hub's own writes fill it
// slowly (then Badger flushes a full memtable on the way, with the disk
// nearly full).
func TestStoreWriteFailureTurnsIntoErrors(t *testing.T) {
	bin := needBinary(t)
	t.Run("another file fills the disk", func(t *testing.T) {
		d := newDiskRun(t, bin, 32)
		d.warmUp(t)
		filler := filepath.Join(d.mnt, "filler")
		f, err := os.Create(filler)
		if err != nil {
			t.Fatal(err)
		}
		chunk := make([]byte, 256<<10)
		for i := 0; i < 256; i++ {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling the disk: %v", err)
				}
				break
			}
		}
		f.Close()
		for i := 0; i < 300 && d.p.alive() && (d.http503 < 5 || d.wsUnavailable < 3); i++ {
			d.inbound(fmt.Sprintf("c%d", i%10), strings.Repeat("x", 2048))
			d.flip(t)
		}
		d.checkRefusing(t)
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		d.recoverAndRestart(t)
	})
	t.Run("the hub's own writes fill the disk", func(t *testing.T) {
		// 96 MiB: Badger's 16 MiB memtables fill and flush several times, each
		// flush needing about as much again; the store keeps that room.
		d := newDiskRun(t, bin, 96)
		d.warmUp(t)
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Add(1)
			go func() { // ends after 5 refusals in a row, a dead hub, or 200 messages
				defer wg.Done()
				refused := 0
				for i := 0; i < 200 && refused < 5 && d.p.alive(); i++ {
					raw := make([]byte, 36<<10)
					rand.Read(raw) // incompressible: the table is as big as the log
					if d.inbound(fmt.Sprintf("w%d-%d", w, i%3), base64.StdEncoding.EncodeToString(raw)) {
						refused = 0
					} else {
						refused++
					}
				}
			}()
		}
		wg.Wait()
		for i := 0; i < 20 && d.p.alive() && d.wsUnavailable < 3; i++ {
			d.flip(t)
		}
		d.checkRefusing(t)
		if out, err := exec.Command("mount", "-o", "remount,size=256m", d.mnt).CombinedOutput(); err != nil {
			t.Fatalf("growing the disk: %v %s", err, out)
		}
		d.recoverAndRestart(t)
	})
}

// diskRun is a hub whose data directory is on a small tmpfs, with a
// ledger of what it acknowledged.
type diskRun struct {
	bin, addr, mnt, data string
	p                    *hubProc
	a                    *api
	svcs                 []string
	ctx                  context.Context

	mu            sync.Mutex          // guards what follows: inbound runs on several goroutines
	acked         map[string][]string // conversation -> acknowledged message ids
	n             int
	http503       int
	wsUnavailable int
	okAfterFull   int
	other         []string

	bea        *wsConn
	ver        uint64
	owner      string
	readyWhile int // /readyz status while the disk was full
}

func newDiskRun(t *testing.T, bin string, sizeMiB int) *diskRun {
	mnt := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMiB), "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("needs a small filesystem to fill: mount -t tmpfs is not permitted here: %v %s", err, bytes.TrimSpace(out))
	}
	// Registered before the hub starts, so it runs after the hub is killed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	d := &diskRun{bin: bin, addr: freeAddr(t), mnt: mnt, data: filepath.Join(mnt, "data"), ctx: ctx, acked: map[string][]string{}}
	d.p = startHub(t, bin, d.addr, d.data, hubOptions{durable: true})
	d.a = newAPI(t, d.p.base)
	for i := range 16 {
		d.svcs = append(d.svcs, mintFor(t, "disk", fmt.Sprintf("helpdesk%d", i), queues.RoleService))
	}
	return d
}

// inbound delivers one message and counts the answer; it reports whether
// the message was acknowledged. It runs on several goroutines: an
// unexpected answer is kept for checkRefusing to report.
func (d *diskRun) inbound(conv, text string) bool {
	d.mu.Lock()
	d.n++
	id := fmt.Sprintf("m%d", d.n)
	svc := d.svcs[d.n%len(d.svcs)]
	d.mu.Unlock()
	r, err := d.a.do(d.ctx, http.MethodPost, "/api/v1/conversations/"+conv+"/inbound", svc,
		map[string]any{"message_id": id, "channel": "email", "customer": "C", "text": text})
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err != nil:
		return false // the hub is gone: checkRefusing says so
	case r.status == http.StatusOK:
		d.acked[conv] = append(d.acked[conv], id)
		d.okAfterFull++
		return true
	case r.status == http.StatusServiceUnavailable && r.code == "unavailable":
		d.http503++
	case r.status == http.StatusTooManyRequests:
	default:
		d.other = append(d.other, fmt.Sprintf("inbound: got %d %.200s, want 200 or 503 unavailable", r.status, r.body))
	}
	return false
}

// warmUp: acknowledged changes before the disk fills, over HTTP and over a
// WebSocket.
func (d *diskRun) warmUp(t *testing.T) {
	t.Helper()
	for i := range 40 {
		if !d.inbound(fmt.Sprintf("c%d", i%10), strings.Repeat("x", 2048)) {
			t.Fatalf("inbound before the disk filled was not acknowledged: %v", d.other)
		}
	}
	var err error
	d.bea, _, err = dialWS(d.ctx, &http.Client{Transport: newTransport(t)}, d.p.base, mintFor(t, "disk", "bea", queues.RoleAgent), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.bea.drop)
	var conv convDetail
	d.a.must(t, http.MethodGet, "/api/v1/conversations/c1", d.svcs[0], nil, &conv)
	d.ver = conv.Conversation.Version
	for range 5 {
		if ok, code := d.flip(t); !ok {
			t.Fatalf("assign before the disk filled: got %s", code)
		}
	}
	d.okAfterFull = 0
}

// flip assigns c1 to bea or takes it back, with the version last
// acknowledged.
func (d *diskRun) flip(t *testing.T) (bool, string) {
	req := map[string]any{"op": "assign", "conv": "c1", "agent": "bea", "version": d.ver}
	if d.owner == "bea" {
		req = map[string]any{"op": "unassign", "conv": "c1", "version": d.ver}
	}
	r, err := d.bea.do(d.ctx, req, nil)
	if err != nil {
		return false, err.Error()
	}
	var res convResult
	switch {
	case r.OK && json.Unmarshal(r.Result, &res) == nil:
		d.ver, d.owner = res.Conv.Version, res.Conv.Owner
		d.okAfterFull++
		return true, ""
	case r.code() == "unavailable":
		d.wsUnavailable++
	case r.code() == "rate_limited":
	default:
		d.mu.Lock()
		d.other = append(d.other, "assign: got "+r.code()+", want ok or unavailable")
		d.mu.Unlock()
	}
	return false, r.code()
}

// checkRefusing: with the disk full, the hub runs, refuses writes with
// unavailable, and /readyz fails.
func (d *diskRun) checkRefusing(t *testing.T) {
	t.Helper()
	if d.p.alive() {
		if r, err := d.a.do(d.ctx, http.MethodGet, "/readyz", d.svcs[0], nil); err == nil {
			d.readyWhile = r.status
		}
	}
	state := "running"
	if !d.p.alive() {
		state = "exited: " + d.p.exitStatus()
	}
	t.Logf("full disk: %d HTTP 503, %d WebSocket unavailable, %d writes acknowledged while filling, /readyz %d, hub %s",
		d.http503, d.wsUnavailable, d.okAfterFull, d.readyWhile, state)
	for _, o := range d.other[:min(len(d.other), 3)] {
		t.Error(o)
	}
	if !d.p.alive() {
		t.Errorf("the hub died when its disk filled (%s: %s), want it running and refusing writes", d.p.exitStatus(), d.p.crashSummary())
		return
	}
	if d.http503 == 0 || d.wsUnavailable == 0 {
		t.Errorf("got %d HTTP 503 and %d WebSocket unavailable on a full disk, want both", d.http503, d.wsUnavailable)
	}
	if d.readyWhile != http.StatusServiceUnavailable {
		t.Errorf("/readyz on a full disk: got %d, want 503", d.readyWhile)
	}
}

// recoverAndRestart: with space back, a running hub takes writes again and
// is ready; then, restarted on the same data, it has every acknowledged
// message exactly once and the agent's last acknowledged assignment.
func (d *diskRun) recoverAndRestart(t *testing.T) {
	t.Helper()
	if d.p.alive() {
		if !pollUntil(10*time.Second, 100*time.Millisecond, func() bool { return d.inbound("c0", "after") }) {
			t.Errorf("no inbound succeeded within 10s of space coming back")
		}
		if r, err := d.a.do(d.ctx, http.MethodGet, "/readyz", d.svcs[0], nil); err != nil || r.status != http.StatusOK {
			t.Errorf("/readyz with space back: got %d %v, want 200", r.status, err)
		}
		if took, ok := d.p.term(15 * time.Second); !ok || d.p.exitStatus() != "exit status 0" {
			t.Errorf("SIGTERM with space back: got %s after %v, want exit status 0", d.p.exitStatus(), took)
		}
	}
	d.bea.drop()

	d.p = startHub(t, d.bin, d.addr, d.data, hubOptions{durable: true})
	d.a = newAPI(t, d.p.base)
	total := 0
	for c, ids := range d.acked {
		var det convDetail
		d.a.must(t, http.MethodGet, "/api/v1/conversations/"+c, d.svcs[0], nil, &det)
		if len(det.Messages) >= 100 {
			t.Errorf("%s has %d messages: the API shows only the latest 100", c, len(det.Messages))
		}
		seen := map[string]int{}
		for _, m := range det.Messages {
			seen[m.ID]++
		}
		for _, id := range ids {
			total++
			if seen[id] != 1 {
				t.Errorf("LOSS or DUPLICATE %s: acknowledged message %s is there %d times, want once", c, id, seen[id])
			}
		}
	}
	var c1 convDetail
	d.a.must(t, http.MethodGet, "/api/v1/conversations/c1", d.svcs[0], nil, &c1)
	if c1.Conversation.Version < d.ver || (c1.Conversation.Version == d.ver && c1.Conversation.Owner != d.owner) {
		t.Errorf("c1 after the restart: got v%d owner %q, want the acknowledged v%d owner %q (or a later inbound)",
			c1.Conversation.Version, c1.Conversation.Owner, d.ver, d.owner)
	}
	t.Logf("after the restart: %d acknowledged messages checked, each there once", total)
}

// TestShutdownDuringLoadLosesNothing: SIGTERM in the middle of the load.
// The hub must exit 0 within its drain time and, after the restart, every
// acknowledged change is there. The presence changes the hub had already
// decided must survive too: a crowd of agents leaves just before the
// SIGTERM, in a workspace with Remove Ownership on and a 2 s grace, and the
// hub stays down past that grace. Their graces started before the shutdown
// and ran out during it, so they are offline, and their conversations
// released, at start-up; not a fresh grace later, as if they had been
// online when the hub stopped.
func TestShutdownDuringLoadLosesNothing(t *testing.T) {
	bin := needBinary(t)
	addr, dir := freeAddr(t), t.TempDir()
	// The production default. Shutdown closes the sockets within it, then
	// commits the presence changes already decided, one commit each.
	const drain = 10 * time.Second
	opts := hubOptions{durable: true, drain: drain}
	p := startHub(t, bin, addr, dir, opts)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newLoad(t, p.base, loadConfig{
		ws:           "shutdown",
		agents:       16,
		convsPer:     4,
		churners:     4,
		inboundConvs: 24,
		inboundEvery: 50 * time.Millisecond,
		opPause:      [2]time.Duration{50 * time.Millisecond, 200 * time.Millisecond},
		session:      [2]time.Duration{2 * time.Second, 6 * time.Second},
		away:         [2]time.Duration{50 * time.Millisecond, 500 * time.Millisecond},
	}, seed)
	l.setup(t)

	// The leavers: each online, owning a conversation in new.
	const lws, leavers, grace = "leavers", 60, 2 * time.Second
	a := newAPI(t, p.base)
	ladmin, lsvc := mintFor(t, lws, "admin", queues.RoleAdmin), mintFor(t, lws, "helpdesk", queues.RoleService)
	a.must(t, http.MethodPatch, "/api/v1/settings", ladmin, map[string]any{"remove_ownership": true, "offline_grace": int(grace / time.Second)}, nil)
	hc := &http.Client{Transport: newTransport(t)}
	var crowd []*wsConn
	for i := range leavers {
		c, _, err := dialWS(ctx, hc, p.base, mintFor(t, lws, fmt.Sprintf("leaver%d", i), queues.RoleAgent), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		crowd = append(crowd, c)
		var ans inboundAnswer
		a.must(t, http.MethodPost, fmt.Sprintf("/api/v1/conversations/l%d/inbound", i), lsvc,
			map[string]any{"message_id": "m1", "channel": "chat", "customer": "C"}, &ans)
		a.must(t, http.MethodPost, fmt.Sprintf("/api/v1/conversations/l%d/assign", i), ladmin,
			map[string]any{"agent": fmt.Sprintf("leaver%d", i), "version": ans.Conversation.Version}, nil)
	}

	t.Cleanup(func() { cancel(); l.stop(30 * time.Second) })
	l.start(t, ctx)
	rng := mrand.New(mrand.NewPCG(seed, 3))
	time.Sleep(between(rng, [2]time.Duration{2 * time.Second, 4 * time.Second}))

	// The crowd leaves; 20 ms later, when the hub has seen them go, it is
	// told to stop.
	for _, c := range crowd {
		c.drop()
	}
	left := time.Now()
	time.Sleep(20 * time.Millisecond)
	acked := l.stats.ackedTotal()
	took, inTime := p.term(drain + 10*time.Second)
	status := p.exitStatus()
	t.Logf("SIGTERM after %d acknowledged changes, 20 ms after %d agents left: %s after %v (drain %v)",
		acked, leavers, status, took.Round(time.Millisecond), drain)
	if !inTime || status != "exit status 0" || took > drain {
		t.Errorf("SIGTERM: got %s after %v, want exit status 0 within the drain time %v", status, took, drain)
	}
	var dropped []string
	for line := range strings.SplitSeq(p.logTail(1<<22), "\n") {
		if strings.Contains(line, "presence update not committed") {
			dropped = append(dropped, line)
		}
	}
	if len(dropped) > 0 {
		t.Errorf("the shutdown dropped %d presence update(s) the tracker had made, e.g.:\n%s", len(dropped), dropped[0])
	}

	// Down past the leavers' grace.
	time.Sleep(time.Until(left.Add(grace + 500*time.Millisecond)))
	l.epoch.Add(1)
	p = startHub(t, bin, addr, dir, opts)
	listening := time.Now()
	a = newAPI(t, p.base)

	// The leavers: released at start-up.
	if !pollUntil(10*time.Second, 100*time.Millisecond, func() bool {
		var r struct {
			Agents []queues.Agent `json:"agents"`
		}
		a.must(t, http.MethodGet, "/api/v1/agents", ladmin, nil, &r)
		for _, ag := range r.Agents {
			if strings.HasPrefix(ag.ID, "leaver") && ag.Status != queues.StatusOffline {
				return false
			}
		}
		return true
	}) {
		t.Errorf("the leavers were not all offline 10s after the restart")
	}
	late := 0
	var worst time.Duration
	for i := range leavers {
		var d convDetail
		a.must(t, http.MethodGet, fmt.Sprintf("/api/v1/conversations/l%d", i), ladmin, nil, &d)
		last := d.History[len(d.History)-1]
		if d.Conversation.Owner != "" || last.Kind != queues.AuditOwner || last.Reason != queues.ReasonLogout {
			t.Errorf("l%d: got owner %q, last history entry %s %s, want unowned by logout", i, d.Conversation.Owner, last.Kind, last.Reason)
			continue
		}
		if after := last.At.Sub(listening); after > time.Second {
			late++
			worst = max(worst, after)
		}
	}
	if late > 0 {
		t.Errorf("%d of %d leavers' conversations were released up to %v after start-up, want at start-up: their grace ran out while the hub was down, but it was lost at the shutdown and a fresh one was counted from the restart",
			late, leavers, worst.Round(10*time.Millisecond))
	}

	// The load: everything acknowledged is there.
	if late := l.waitVerified(1, 30*time.Second); len(late) > 0 {
		t.Errorf("after the restart, %d agents never verified their conversations: %v", len(late), late)
	}
	time.Sleep(time.Second)
	if !l.stop(30 * time.Second) {
		t.Fatal("the clients did not finish within 30s of being asked")
	}
	l.probs.report(t)
	fin := l.checkFinal(t)
	cov := l.checkCoverage(t, ctx)
	st := l.stats
	t.Logf("after the restart: %d acknowledged (%s); %d sockets closed with 1001 going away; losses %d, duplicates %d, resume gaps %d; %d re-sent ids were no-ops; %d of %d leavers released at start-up",
		st.ackedTotal(), st.ackedString(), st.goingAway.Load(), st.losses.Load()+int64(fin.losses),
		st.duplicates.Load()+int64(fin.duplicates)+int64(cov.dupView+cov.stale), cov.gaps, st.retriedNoop.Load(), leavers-late, leavers)
	if st.goingAway.Load() == 0 {
		t.Errorf("no socket was closed with 1001 going away, want the shutdown to close them so")
	}
	if n := st.losses.Load() + int64(fin.losses); n != 0 {
		t.Errorf("got %d losses, want 0", n)
	}
	if n := st.duplicates.Load() + int64(fin.duplicates) + int64(cov.dupView+cov.stale); n != 0 {
		t.Errorf("got %d duplicates, want 0", n)
	}
}
