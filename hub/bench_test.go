package hub

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// benchHub is a hub with n connections that have no socket: they stay
// held (as before their hello), so Publish queues to them and no writer
// starts. It measures the fan-out path alone.
func benchHub(b *testing.B, n int, views bool) (*Hub, []*conn) {
	b.Helper()
	h := &Hub{
		cfg: Config{SendQueue: 1 << 30, WriteTimeout: time.Second},
		log: slog.New(slog.DiscardHandler),
		obs: nopObserver{},
		reg: newRegistry(),
	}
	conns := make([]*conn, n)
	var wg sync.WaitGroup
	for i := range conns {
		c := &conn{h: h, id: Identity{Workspace: "acme", Agent: "a" + strconv.Itoa(i%500)}, held: true}
		if views {
			c.views = []*view{
				{id: "new", queue: queues.QueueNew, filter: queues.Filter{Kind: queues.FilterAll, Me: c.id.Agent}},
				{id: "mine", queue: queues.QueuePending, filter: queues.Filter{Kind: queues.FilterMine, Me: c.id.Agent}},
			}
		}
		if !h.reg.add(c, &wg) {
			b.Fatal("registry closed")
		}
		conns[i] = c
	}
	return h, conns
}

// drain empties every connection's queue, as their writers would.
func drain(conns []*conn) {
	for _, c := range conns {
		c.mu.Lock()
		c.q.drop()
		c.mu.Unlock()
	}
}

// BenchmarkPublishFanout10k publishes one event to a workspace of 10,000
// connections: the registry copy, the routing decision and the enqueue of
// the shared bytes per connection.
func BenchmarkPublishFanout10k(b *testing.B) {
	const n = 10000
	events := map[string]queues.Event{
		"presence": {Kind: queues.EventPresence, Presence: &queues.PresenceChange{Agent: "a1", From: queues.StatusOnline, To: queues.StatusAway}},
		"conversation": {Kind: queues.EventConversation, Prev: &queues.ConvState{Queue: queues.QueueNew},
			Conv: &queues.Conversation{ID: "c7", Queue: queues.QueueNew, Owner: "a1"}},
	}
	for _, name := range []string{"presence", "conversation"} {
		b.Run(name, func(b *testing.B) {
			_, conns := benchHub(b, n, name == "conversation")
			h := conns[0].h
			ev := events[name]
			ev.Wire = bytes.Repeat([]byte("x"), 400)
			batch := []queues.Event{ev}
			b.ReportAllocs()
			seq := uint64(0)
			for b.Loop() {
				seq++
				batch[0].Seq = seq
				h.Publish("acme", batch)
				if seq%64 == 0 {
					b.StopTimer()
					drain(conns)
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(n)*float64(seq)/b.Elapsed().Seconds(), "deliveries/s")
			drain(conns)
		})
	}
}

// TestIdleConnMemory opens idle, subscribed connections and reports what
// each costs the process: Go heap and stacks, and resident memory. The
// clients are raw TCP sockets that did the handshake and sent one
// subscribe, and then never read, so the process holds almost nothing for
// them (a socket each). PRESENCEHUB_IDLE_CONNS sets how many (default
// 2000; two file descriptors each).
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures memory: not in -short, not under the race detector")
	}
	n := 2000
	if s := os.Getenv("PRESENCEHUB_IDLE_CONNS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, func(c *Config) { c.PingInterval = time.Hour; c.PongTimeout = 2 * time.Hour })
	e.workspace("acme", queues.SettingsPatch{})
	addr := e.srv.Listener.Addr().String()
	tokens := make([]string, 10) // ten agents, many tabs each: presence stays quiet
	for i := range tokens {
		tokens[i] = token(t, "acme", "agent"+strconv.Itoa(i), queues.RoleAgent, time.Hour)
	}
	var socks []net.Conn
	t.Cleanup(func() {
		for _, s := range socks {
			s.Close()
		}
	})
	open := func(k int) {
		for i := range k {
			s, err := idleClient(addr, tokens[i%len(tokens)])
			if err != nil {
				t.Fatalf("client %d: %v", len(socks), err)
			}
			socks = append(socks, s)
		}
		want := len(socks)
		eventually(t, 30*time.Second, func() bool {
			// hello and the subscribe reply written to each, writers gone
			return e.hub.Connections() == want && e.obs.sent.Load() >= int64(2*want) && e.hub.writers() == 0
		}, "%d connections not settled: %d open, %d messages sent", want, e.hub.Connections(), e.obs.sent.Load())
	}

	open(100) // warm up pools and maps
	before := memNow()
	open(n)
	after := memNow()

	per := func(a, b uint64) float64 { return float64(int64(b)-int64(a)) / float64(n) / 1024 }
	t.Logf("%d idle subscribed connections: %.1f KiB resident each (Go heap %.1f KiB, stacks %.1f KiB, goroutines %d)",
		n, per(before.rss, after.rss), per(before.heap, after.heap), per(before.stack, after.stack),
		after.goroutines-before.goroutines)
	if kib := per(before.rss, after.rss); kib > 16 {
		t.Errorf("resident memory per idle connection: got %.1f KiB, want at most 16", kib)
	}
}

type memSample struct {
	rss, heap, stack uint64
	goroutines       int
}

// memNow collects garbage, returns freed memory to the OS, and samples.
func memNow() memSample {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{rss: rss(), heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// rss is the process's resident set size from /proc/self/status.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// idleClient opens a socket to the hub by hand, subscribes one view and
// keeps nothing but the TCP connection: it never reads again.
func idleClient(addr, tok string) (net.Conn, error) {
	s, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s, "GET /ws?access_token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", tok, addr)
	resp, err := http.ReadResponse(bufio.NewReaderSize(s, 256), nil)
	if err != nil {
		s.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		s.Close()
		return nil, fmt.Errorf("handshake: HTTP %d", resp.StatusCode)
	}
	if _, err := s.Write(maskedText(`{"id":1,"op":"subscribe","view":"v","queue":"new"}`)); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// maskedText frames a short text message as a client must (masked).
func maskedText(payload string) []byte {
	var key [4]byte
	rand.Read(key[:])
	f := []byte{0x81, 0x80 | byte(len(payload))}
	f = append(f, key[:]...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i%4])
	}
	return f
}

// writers counts the connections with a writer goroutine running.
func (h *Hub) writers() int {
	n := 0
	for _, c := range h.reg.all() {
		c.mu.Lock()
		if c.writing {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

// BenchmarkBroadcastLoopback measures whole fan-out over real sockets:
// events published in batches of 10 (as the store's group commit hands
// them over) to 1,000 connections on loopback, written by the hub's
// writers, read and counted by raw clients in the same process (which
// compete for the same CPUs, so this is a floor). deliveries/s counts
// messages that reached a client.
func BenchmarkBroadcastLoopback(b *testing.B) {
	const conns, batch = 1000, 10
	e := newEnv(b, func(c *Config) { c.PingInterval = time.Hour; c.PongTimeout = 2 * time.Hour })
	e.workspace("acme", queues.SettingsPatch{})
	addr := e.srv.Listener.Addr().String()
	tok := token(b, "acme", "bench", queues.RoleAgent, time.Hour)
	var received atomic.Int64
	var wg sync.WaitGroup
	var socks []net.Conn
	for range conns {
		s, br, err := dialRaw(addr, tok)
		if err != nil {
			b.Fatal(err)
		}
		socks = append(socks, s)
		wg.Go(func() { // ends when the socket closes
			for {
				p, err := readFrame(br)
				if err != nil {
					return
				}
				received.Add(int64(bytes.Count(p, benchMark)))
			}
		})
	}
	defer func() {
		for _, s := range socks {
			s.Close()
		}
		wg.Wait()
	}()
	eventually(b, 30*time.Second, func() bool { return e.hub.Connections() == conns }, "not connected")

	seq := e.store.Head("acme") + 1
	wire := append(bytes.Repeat([]byte("x"), 400), benchMark...)
	events := make([]queues.Event, batch)
	published := int64(0)
	start := time.Now()
	for b.Loop() {
		for i := range events {
			events[i] = queues.Event{Seq: seq, Kind: queues.EventAgent, Wire: wire}
			seq++
		}
		e.hub.Publish("acme", events)
		published += conns * batch
		// Stay within the send queues: a benchmark of slow consumers is
		// not the point.
		for published-received.Load() > conns*200 {
			runtime.Gosched()
		}
	}
	eventually(b, 2*time.Minute, func() bool { return received.Load() == published }, "not everything arrived: %d of %d, %d slow consumers, %d sent, %d connections", received.Load(), published, e.obs.slow.Load(), e.obs.sent.Load(), e.hub.Connections())
	b.ReportMetric(float64(published)/time.Since(start).Seconds(), "deliveries/s")
	if n := e.obs.slow.Load(); n > 0 {
		b.Errorf("%d slow consumers", n)
	}
}

// benchMark marks the benchmark's own events, so the count leaves out
// hello and the presence events of connecting.
var benchMark = []byte(`"fan-out benchmark"`)

// dialRaw opens a socket by hand and returns it with the reader that has
// consumed the handshake's response.
func dialRaw(addr, tok string) (net.Conn, *bufio.Reader, error) {
	s, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(s, "GET /ws?access_token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", tok, addr)
	br := bufio.NewReaderSize(s, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
		err = fmt.Errorf("handshake: HTTP %d", resp.StatusCode)
	}
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, br, nil
}

// BenchmarkAppendHello100: encoding the hello of a workspace of 100
// online agents, which every connect does. The roster comes encoded from
// the store (queues' BenchmarkAgents100/json).
func BenchmarkAppendHello100(b *testing.B) {
	now := time.Now()
	m := helloMsg{Type: typeHello, V: 1, Seq: 12345}
	var agents []queues.Agent
	for i := range 100 {
		id := fmt.Sprintf("a%d", i)
		agents = append(agents, queues.Agent{ID: id, Name: id, Role: queues.RoleAgent, Status: queues.StatusOnline,
			StatusReason: "connected", StatusSince: now, GraceDeadline: now.Add(time.Minute)})
	}
	roster, err := json.Marshal(agents)
	if err != nil {
		b.Fatal(err)
	}
	m.Agents = roster
	m.Me = agents[0]
	m.Settings = queues.DefaultSettings()
	m.Notifications.ByWho, m.Notifications.Items = []queues.NotificationCount{}, []queues.Notification{}
	m.Missed = nil
	b.ReportAllocs()
	for b.Loop() {
		w, err := appendHello(nil, &m)
		if err != nil || len(w) == 0 {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyToken: checking a token the Verifier has not seen, as every
// first connect does (HS256 and the claims).
func BenchmarkVerifyToken(b *testing.B) {
	v, err := NewVerifier(testSecret)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := Mint(testSecret, Identity{Workspace: "acme", Agent: "al", Name: "Al", Role: queues.RoleAgent}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
