package hub

import (
	"context"
	"encoding/json"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/queues"
)

// Close codes of the hub's own (docs/protocol.md, Close codes).
const (
	// CloseLoggedOut: logout, idle logout, or forced offline by an admin.
	CloseLoggedOut websocket.StatusCode = 4001
	// CloseTokenExpired: the token's exp has passed.
	CloseTokenExpired websocket.StatusCode = 4002
	// CloseSlowConsumer: the client fell more than SendQueue messages
	// behind.
	CloseSlowConsumer websocket.StatusCode = 4008
	// CloseRateLimited: too many requests for too long.
	CloseRateLimited websocket.StatusCode = 4029
)

// pageMax is the largest page a client may ask for (queues' List limit).
const pageMax = 500

// Config configures a Hub. Backend, Presence and Verifier are required.
type Config struct {
	Backend  Backend
	Presence Presence
	Verifier *Verifier
	// Origins are browser origins allowed besides the request's own host:
	// host patterns matched with path.Match, as coder/websocket's
	// AcceptOptions.OriginPatterns ("console.example.com", "*.example.com",
	// or "https://host" to also match the scheme).
	Origins []string
	// Logger defaults to discarding everything.
	Logger *slog.Logger
	// Observer receives measurements; nil takes none.
	Observer Observer
	// Delivery, when events reach Publish through a Dispatcher, holds each
	// reply until the events it covers are queued ahead of it. Nil when
	// events are published synchronously.
	Delivery Delivery
	// PingInterval is how often the hub pings each connection. Default 15 s.
	PingInterval time.Duration
	// PongTimeout is how long a connection may answer nothing (no pong, no
	// message) before it is closed as dead. Default 30 s.
	PongTimeout time.Duration
	// WriteTimeout bounds every write to a socket. Default 10 s.
	WriteTimeout time.Duration
	// MaxFrame is the largest client frame, in bytes; a bigger one closes
	// the socket with 1009. Default 64 KiB.
	MaxFrame int64
	// SendQueue is how many messages may wait for one connection before it
	// is closed as a slow consumer (4008). Default 1024.
	SendQueue int
	// RequestRate is how many requests a second one connection may send,
	// in bursts of twice that; an agent's connections together get twice
	// the rate, in bursts of four times it. 0 means DefaultRequestRate (50);
	// a negative rate turns both limits off.
	RequestRate float64
}

// Defaults of Config.
const (
	DefaultPingInterval = 15 * time.Second
	DefaultPongTimeout  = 30 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultRequestRate  = 50
	DefaultMaxFrame     = 64 << 10
	DefaultSendQueue    = 1024
)

// Hub serves the WebSocket endpoint and fans committed events out to the
// connections that should see them. See the package documentation for its
// concurrency contract.
type Hub struct {
	cfg Config
	log *slog.Logger
	obs Observer

	// lifetime is the parent of the contexts of every connection's
	// requests. It is kept in the struct because a connection outlives the
	// request that opened it (ServeHTTP returns once the connection runs);
	// Shutdown cancels it when the sockets did not close in time.
	lifetime context.Context
	stop     context.CancelFunc
	// deadlines bounds requests' store calls; its contexts descend from
	// lifetime.
	deadlines requestDeadlines

	// workers answer requests (workers.go).
	workers *workers

	reg registry
	// agentLimits is the request budget each agent shares across all of
	// its sockets, so opening more sockets (or reconnecting) buys no more.
	agentLimits *limiter
	// wg counts connections (their reader goroutines). Add happens under
	// reg.mu while the registry is open, so it never races Shutdown's Wait.
	wg sync.WaitGroup

	shutdownOnce sync.Once
	drained      chan struct{} // closed once every connection has ended after Shutdown
}

var _ queues.Publisher = (*Hub)(nil)

// New returns a Hub. It panics if a required field of cfg is missing.
func New(cfg Config) *Hub {
	if cfg.Backend == nil || cfg.Presence == nil || cfg.Verifier == nil {
		panic("hub.New: Config needs Backend, Presence and Verifier")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = DefaultPongTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = DefaultSendQueue
	}
	if cfg.RequestRate == 0 {
		cfg.RequestRate = DefaultRequestRate
	}
	cfg.Origins = slices.Clone(cfg.Origins)
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Hub{
		cfg:         cfg,
		log:         cfg.Logger,
		obs:         obs,
		lifetime:    ctx,
		stop:        stop,
		deadlines:   requestDeadlines{parent: ctx},
		workers:     newWorkers(ctx.Done(), func(j reqJob) { j.c.answer(j.b) }),
		reg:         newRegistry(),
		agentLimits: agentLimiter(cfg.RequestRate),
		drained:     make(chan struct{}),
	}
}

// Connections is the number of open connections.
func (h *Hub) Connections() int {
	h.reg.mu.RLock()
	defer h.reg.mu.RUnlock()
	return h.reg.n
}

// connsPool recycles the recipient lists Publish copies out of the
// registry.
var connsPool = sync.Pool{New: func() any { s := make([]*conn, 0, 64); return &s }}

// Publish fans events of one workspace out to its connections. It
// implements queues.Publisher: it never blocks, and events arrive in
// sequence order. Each event's Wire is written as is to every recipient.
func (h *Hub) Publish(ws string, events []queues.Event) {
	if len(events) == 0 {
		return
	}
	start := time.Now()
	frames := newEventFrames(withWire(events))
	p := connsPool.Get().(*[]*conn)
	conns := h.reg.workspace(ws, (*p)[:0])
	fanOut(conns, frames)
	clear(conns)
	*p = conns[:0]
	connsPool.Put(p)
	h.obs.BroadcastDuration(time.Since(start))
}

// parallelMin is how many recipients each goroutine of a fan-out gets at
// least: below that, starting one costs more than it saves.
const parallelMin = 512

// eventFrames is what one Publish hands every recipient: the events, and
// each one's frame, built when a first recipient takes it. An event that
// no connection takes (a change in a queue nobody views, as most are when
// agents watch their own views) costs no frame: framing every event up
// front was about 5 % of the hub's allocation in a durable run, where no
// client subscribes.
type eventFrames struct {
	events []queues.Event
	frames []lazyFrame // frames[i] is events[i]'s
}

type lazyFrame struct {
	once sync.Once
	b    []byte
}

func newEventFrames(events []queues.Event) *eventFrames {
	return &eventFrames{events: events, frames: make([]lazyFrame, len(events))}
}

// frame is events[i] as a whole text frame; every caller gets the same
// bytes, from whichever goroutine of the fan-out asked first.
func (f *eventFrames) frame(i int) []byte {
	lf := &f.frames[i]
	lf.once.Do(func() { lf.b, _ = frameOf(f.events[i].Wire) })
	return lf.b
}

// fanOut delivers f's events to conns. Delivering is mostly writing: one
// system call per recipient (writeInline), so a big fan-out is split over
// as many goroutines as there are cores, and returns when all are done. A
// connection is in one part only, and the next fan-out starts after this
// one ends, so every connection still gets its events in order.
func fanOut(conns []*conn, f *eventFrames) {
	parts := min(runtime.GOMAXPROCS(0), len(conns)/parallelMin)
	if parts <= 1 {
		for _, c := range conns {
			c.deliver(f)
		}
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < parts; i++ {
		part := conns[i*len(conns)/parts : (i+1)*len(conns)/parts]
		wg.Go(func() { // ends when its part is delivered
			for _, c := range part {
				c.deliver(f)
			}
		})
	}
	for _, c := range conns[:len(conns)/parts] {
		c.deliver(f)
	}
	wg.Wait()
}

// withWire returns events with every Wire filled in. The store encodes each
// event once at commit; a Backend that does not gets them encoded here,
// still once per event rather than once per recipient.
func withWire(events []queues.Event) []queues.Event {
	var out []queues.Event
	for i := range events {
		if events[i].Wire != nil {
			continue
		}
		if out == nil {
			out = slices.Clone(events)
		}
		out[i].Wire = wireOf(&out[i])
	}
	if out == nil {
		return events
	}
	return out
}

// wireOf is ev's wire bytes, encoding them if the store did not.
func wireOf(ev *queues.Event) []byte {
	if ev.Wire != nil {
		return ev.Wire
	}
	b, err := json.Marshal(eventMsg{Type: typeEvent, Event: *ev})
	if err != nil {
		// Every field of an Event encodes; only a bug gets here.
		panic("hub: encode event: " + err.Error())
	}
	return b
}

// CloseAgent closes every socket of an agent with code, after what is
// already queued for them. It returns at once; the closes happen on each
// connection's writer.
func (h *Hub) CloseAgent(ws, agent string, code websocket.StatusCode, reason string) {
	for _, c := range h.reg.agent(ws, agent) {
		c.shut(code, reason, true)
	}
}

// Shutdown stops accepting connections, closes every socket with 1001
// going away, and waits for every connection to end, at most until ctx is
// done: then it aborts the sockets still open and returns ctx's error. It
// may be called more than once; every call waits.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.shutdownOnce.Do(func() {
		for _, c := range h.reg.close() {
			c.shut(websocket.StatusGoingAway, "server shutting down", false)
		}
		go func() { // ends when every connection has ended
			h.wg.Wait()
			h.stop()
			close(h.drained)
		}()
	})
	select {
	case <-h.drained:
		return nil
	case <-ctx.Done():
		h.stop() // aborts the requests in progress
		for _, c := range h.reg.all() {
			c.raw.Close() // aborts every read, write and ping
		}
		return ctx.Err()
	}
}

// channels lists the workspace's channels for hello: the Backend's, when it
// can tell (ChannelLister), else those named in the Auto-Ownership
// settings.
func (h *Hub) channels(ws string, s queues.Settings) []string {
	if cl, ok := h.cfg.Backend.(ChannelLister); ok {
		return nonNil(cl.Channels(ws))
	}
	out := make([]string, 0, len(s.AutoOwnership))
	for ch := range s.AutoOwnership {
		out = append(out, ch)
	}
	slices.Sort(out)
	return out
}

// registry is the hub's index of connections, by workspace and by agent.
// Its lock is held only to look up or copy: never while writing to a
// socket, calling the store or waiting.
type registry struct {
	mu      sync.RWMutex // guards the fields below and every conn's slot
	byWS    map[string][]*conn
	byAgent map[agentKey][]*conn
	n       int
	closed  bool // Shutdown has started: no more connections
}

type agentKey struct{ ws, agent string }

func newRegistry() registry {
	return registry{byWS: make(map[string][]*conn), byAgent: make(map[agentKey][]*conn)}
}

// add registers c and counts it in wg, unless the registry is closed.
func (r *registry) add(c *conn, wg *sync.WaitGroup) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	ws := c.id.Workspace
	c.slot = len(r.byWS[ws])
	r.byWS[ws] = append(r.byWS[ws], c)
	k := agentKey{ws, c.id.Agent}
	r.byAgent[k] = append(r.byAgent[k], c)
	r.n++
	wg.Add(1)
	return true
}

// remove unregisters c; it is a no-op for a connection not registered.
func (r *registry) remove(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := c.id.Workspace
	list := r.byWS[ws]
	if c.slot < 0 || c.slot >= len(list) || list[c.slot] != c {
		return
	}
	last := len(list) - 1
	list[c.slot] = list[last]
	list[c.slot].slot = c.slot
	list[last] = nil
	if last == 0 {
		delete(r.byWS, ws)
	} else {
		r.byWS[ws] = list[:last]
	}
	c.slot = -1
	k := agentKey{ws, c.id.Agent}
	if rest := slices.DeleteFunc(r.byAgent[k], func(x *conn) bool { return x == c }); len(rest) == 0 {
		delete(r.byAgent, k)
	} else {
		r.byAgent[k] = rest
	}
	r.n--
}

// workspace appends the connections of ws to dst.
func (r *registry) workspace(ws string, dst []*conn) []*conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append(dst, r.byWS[ws]...)
}

// agent returns a copy of the agent's connections.
func (r *registry) agent(ws, agent string) []*conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.byAgent[agentKey{ws, agent}])
}

// all returns a copy of every connection.
func (r *registry) all() []*conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*conn, 0, r.n)
	for _, list := range r.byWS {
		out = append(out, list...)
	}
	return out
}

// close refuses further connections and returns every connection.
func (r *registry) close() []*conn {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.all()
}

func (r *registry) isClosed() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.closed
}

// nopObserver is the Observer of a Config without one.
type nopObserver struct{}

func (nopObserver) ConnOpened()                     {}
func (nopObserver) ConnClosed()                     {}
func (nopObserver) Rejected(string)                 {}
func (nopObserver) Sent(int)                        {}
func (nopObserver) BroadcastDuration(time.Duration) {}
func (nopObserver) SlowConsumer()                   {}
