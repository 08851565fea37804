package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// stampRing is how many versions of one conversation keep their send time.
// A delivery older than that (a client more than 64 changes of that
// conversation behind) is counted as unmatched rather than timed wrongly.
const stampRing = 64

// stamp is the driver's send time of one change: the version the change
// will give the conversation, which is known before sending because the
// driver is the only writer of its conversations and sends one change per
// conversation at a time. Deliveries often arrive before the driver reads
// the HTTP answer, so the stamp must be in place before the request leaves.
type stamp struct {
	ver atomic.Uint64 // the version this slot times; written last
	at  atomic.Int64  // send time, ns since the run's epoch
	k   atomic.Int64  // burst mode: which burst
}

// convState is one conversation as the driver sees it. Only its worker
// touches version and owned.
type convState struct {
	ws, j   int
	id      string
	token   string
	version uint64
	owned   bool
	stamps  [stampRing]stamp
	jobs    chan int64 // change numbers; one may wait while one is in flight
}

// fanState is shared by the driver and every client's reader.
type fanState struct {
	e       *env
	convs   [][]*convState // [workspace][conversation]
	clients []fanClient    // per connection; touched only by its reader
	burst   bool

	lat        *hist
	delivered  atomic.Int64
	duplicates atomic.Int64
	unmatched  atomic.Int64
	received   atomic.Int64 // every message, for quiet()
	lastAt     atomic.Int64 // latest delivery, ns since epoch

	bursts []*burstStat
}

type fanClient struct {
	lastSeq uint64
}

type burstStat struct {
	h    *hist
	last atomic.Int64 // latest delivery of this burst, ns after its send
}

// handle is every client's message handler: the hot path of the scenario.
func (s *fanState) handle(i int, m *message, at time.Duration) {
	s.received.Add(1)
	if !is(m.Type, "event") {
		return
	}
	cl := &s.clients[i]
	if m.Seq <= cl.lastSeq {
		// One sequence per workspace, each event sent once: a seq seen
		// again is a duplicate (or the hub reordered events).
		s.duplicates.Add(1)
		return
	}
	cl.lastSeq = m.Seq
	if !is(m.Kind, "conversation") {
		return
	}
	ws := s.e.memberWS(i)
	j, ok := convIndex(m.ConvID)
	// Version 0 would match a slot never stamped; no change produces it.
	if !ok || j >= len(s.convs[ws]) || m.Version == 0 {
		s.unmatched.Add(1)
		return
	}
	st := &s.convs[ws][j].stamps[m.Version%stampRing]
	if st.ver.Load() != m.Version {
		s.unmatched.Add(1)
		return
	}
	sent, k := st.at.Load(), st.k.Load()
	if st.ver.Load() != m.Version {
		s.unmatched.Add(1)
		return
	}
	d := at - time.Duration(sent)
	s.lat.record(d)
	s.delivered.Add(1)
	atomicMax(&s.lastAt, int64(at))
	if s.burst && k >= 0 && int(k) < len(s.bursts) {
		b := s.bursts[k]
		b.h.record(d)
		atomicMax(&b.last, int64(d))
	}
}

func atomicMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// convIndex parses the load tool's conversation ids: "c<j>".
func convIndex(id []byte) (int, bool) {
	if len(id) < 2 || id[0] != 'c' || len(id) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range id[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// memberWS is the workspace of connection i: connections are dealt to
// workspaces round-robin.
func (e *env) memberWS(i int) int { return i % e.workspaces() }

func (e *env) workspaces() int {
	if e.cfg.scenario == "groups" {
		return max(1, e.cfg.w)
	}
	return 1
}

// runFanout is both fanout (one workspace) and groups (-W workspaces):
// N subscribed agents, a driver changing ownership over the HTTP API at
// -rate, and every delivery timed against the driver's send time.
func runFanout(ctx context.Context, e *env) (*report, error) {
	cfg := e.cfg
	W := e.workspaces()
	M := cfg.convs
	if M == 0 {
		// Each conversation changes one at a time and, over HTTP, at most 50
		// times a second per caller: 5 a second each leaves room for slow
		// answers.
		M = max(2, int(math.Ceil(cfg.rate/float64(W)/5)))
		if cfg.burst {
			M = 4
		}
	}
	name := cfg.scenario
	if cfg.burst {
		name += "-burst"
	}
	rep := &report{Scenario: name}
	rep.Params.add("n", cfg.n)
	rep.Params.add("workspaces", W)
	rep.Params.add("convs_per_ws", M)
	if cfg.burst {
		rep.Params.add("bursts", cfg.bursts)
		rep.Params.add("spacing_s", cfg.spacing.Seconds())
	} else {
		rep.Params.add("rate", cfg.rate)
		rep.Params.add("duration_s", cfg.duration.Seconds())
	}
	if cfg.agents > 0 {
		rep.Params.add("agents_per_ws", cfg.agents)
	}

	s := &fanState{e: e, lat: newHist(), burst: cfg.burst, clients: make([]fanClient, cfg.n)}
	if err := s.setupConvs(ctx, W, M); err != nil {
		return nil, err
	}
	e.logf("created %d conversations in %d workspaces", W*M, W)

	clientsPerWS := make([]int64, W)
	for i := range cfg.n {
		clientsPerWS[e.memberWS(i)]++
	}
	f, err := e.connectFleet(ctx, cfg.n, func(i int) (int, string) {
		return e.memberWS(i), agentName(i/W, cfg.agents)
	}, true, true, s.handle)
	if err != nil {
		return nil, err
	}
	defer f.close()
	e.logf("connected %d in %v; waiting for presence events to die down", cfg.n, f.elapsed.Round(time.Millisecond))
	if !quiet(ctx, s.received.Load, 2*time.Second, 120*time.Second) {
		e.logf("still receiving after 120 s; measuring anyway")
	}
	// Anything counted so far belongs to the setup.
	s.delivered.Store(0)
	s.duplicates.Store(0)
	s.unmatched.Store(0)
	s.lat = newHist()

	srv0 := e.probe.sample(ctx)
	hub0 := e.probe.scrape(ctx)
	cpu0, wall0 := selfCPU(), time.Now()
	d := &driver{e: e, s: s, ack: newHist(), errs: make(map[string]int), clientsPerWS: clientsPerWS,
		inflight: make(chan struct{}, apiConns)}
	driveStart := e.since()
	if cfg.burst {
		err = d.bursts(ctx)
	} else {
		err = d.sustained(ctx, W, M)
	}
	if err != nil {
		return nil, err
	}
	driveEnd := e.since()
	e.logf("driver done: %d changes acknowledged; waiting for the last deliveries", d.acked.Load())
	// Wait for the tail: every expected delivery, or no progress for 3 s.
	drainUntil := time.Now().Add(60 * time.Second)
	last, lastChange := s.delivered.Load(), time.Now()
	for s.delivered.Load() < d.expected.Load() && time.Now().Before(drainUntil) && time.Since(lastChange) < 3*time.Second {
		if !sleep(ctx, 50*time.Millisecond) {
			return nil, ctx.Err()
		}
		if n := s.delivered.Load(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	srv1 := e.probe.sample(ctx)
	hub1 := e.probe.scrape(ctx)
	cpu1, wall := selfCPU(), time.Since(wall0).Seconds()

	delivered, expected := s.delivered.Load(), d.expected.Load()
	window := (time.Duration(s.lastAt.Load()) - driveStart).Seconds()
	if delivered == 0 {
		window = (driveEnd - driveStart).Seconds()
	}
	drops, dropped := f.droppedCount()

	rep.Results.add("connect_s", round2(f.elapsed.Seconds()))
	rep.Results.add("connects_per_s", rate(float64(cfg.n), f.elapsed.Seconds()))
	rep.Results.add("changes_sent", d.sent.Load())
	rep.Results.add("changes_acked", d.acked.Load())
	if !cfg.burst {
		rep.Results.add("changes_skipped", d.skipped.Load())
		rep.Results.add("changes_per_s", rate(float64(d.acked.Load()), (driveEnd-driveStart).Seconds()))
	}
	rep.Results.add("change_errors", d.errCounts())
	rep.Results.add("deliveries", delivered)
	rep.Results.add("expected", expected)
	rep.Results.add("lost", max(0, expected-delivered))
	rep.Results.add("duplicates", s.duplicates.Load())
	rep.Results.add("unmatched", s.unmatched.Load())
	rep.Results.add("deliveries_per_s", rate(float64(delivered), window))
	rep.Results.add("latency", s.lat.summary())
	rep.Results.add("ack_latency", d.ack.summary())
	if cfg.burst {
		s.burstResults(rep, clientsPerWS[0])
	}
	if srv0.CPU >= 0 && srv1.CPU >= 0 {
		rep.Results.add("server_cpu_s", round2(srv1.CPU-srv0.CPU))
		rep.Results.add("server_cores", round2((srv1.CPU-srv0.CPU)/srv1.at.Sub(srv0.at).Seconds()))
	}
	rep.Results.add("client_cpu_s", round2(cpu1-cpu0))
	rep.Results.add("client_cores", round2((cpu1-cpu0)/wall))
	rep.Results.add("server_rss_mib", mib(srv1.RSS))
	rep.Results.add("hub_messages_sent", int64(hub1["presencehub_messages_sent_total"]-hub0["presencehub_messages_sent_total"]))
	rep.Results.add("hub_slow_consumers", int64(hub1["presencehub_slow_consumer_disconnects_total"]-hub0["presencehub_slow_consumer_disconnects_total"]))
	if st := commitStalls(hub0, hub1); st != nil {
		rep.Results.add("hub_commits", st)
	}
	rep.Results.add("dropped_by_hub", drops)

	if lost := expected - delivered; lost > 0 {
		rep.problem("%d of %d deliveries lost", lost, expected)
	}
	if n := s.duplicates.Load(); n > 0 {
		rep.problem("%d duplicate or out-of-order events", n)
	}
	if dropped > 0 {
		rep.problem("the hub closed %d connections: %v", dropped, drops)
	}
	if n := f.badFrames.Load(); n > 0 {
		rep.problem("%d frames could not be parsed", n)
	}
	if len(d.errs) > 0 {
		rep.problem("change errors: %v", d.errCounts())
	}
	return rep, nil
}

// setupConvs creates M conversations in each of W workspaces through the
// inbound endpoint, and the agent "owner" they are assigned to. Each
// conversation has its own service identity: the API limits requests per
// caller (50/s by default), and one driver identity per conversation keeps
// that limit out of the measurement.
func (s *fanState) setupConvs(ctx context.Context, W, M int) error {
	e := s.e
	s.convs = make([][]*convState, W)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for ws := range W {
		s.convs[ws] = make([]*convState, M)
		g.Go(func() error { // ends when the owner of ws exists
			tok, err := e.mint.token(e.wsID(ws), "owner", "agent")
			if err != nil {
				return err
			}
			rctx, cancel := context.WithTimeout(gctx, e.cfg.setupTimeout)
			defer cancel()
			if err := e.api.touch(rctx, tok); err != nil {
				return fmt.Errorf("create agent owner in %s: %w", e.wsID(ws), err)
			}
			return nil
		})
		for j := range M {
			g.Go(func() error { // ends when conversation j of ws exists
				c := &convState{ws: ws, j: j, id: "c" + strconv.Itoa(j), jobs: make(chan int64, 1)}
				var err error
				if c.token, err = e.mint.token(e.wsID(ws), "drv-"+c.id, "service"); err != nil {
					return err
				}
				rctx, cancel := context.WithTimeout(gctx, e.cfg.setupTimeout)
				defer cancel()
				res, err := e.api.inbound(rctx, c.token, c.id, "m-"+c.id+"-"+e.cfg.wsPrefix)
				if err != nil {
					return fmt.Errorf("create conversation %s in %s: %w", c.id, e.wsID(ws), err)
				}
				c.version, c.owned = res.Conversation.Version, res.Conversation.Owner != ""
				if res.Conversation.Queue != "new" {
					return fmt.Errorf("conversation %s in %s is in %q, want new", c.id, e.wsID(ws), res.Conversation.Queue)
				}
				for k := range c.stamps {
					c.stamps[k].k.Store(-1)
				}
				s.convs[ws][j] = c
				return nil
			})
		}
	}
	return g.Wait()
}

// driver makes the ownership changes.
type driver struct {
	e            *env
	s            *fanState
	clientsPerWS []int64

	// inflight bounds the changes in the air to the API client's
	// connections, so a change is stamped when it can leave at once: time
	// spent queueing for a connection inside the load tool is not the hub's.
	inflight chan struct{}

	sent, acked, skipped atomic.Int64
	expected             atomic.Int64 // deliveries owed: clients of the workspace per acknowledged change
	ack                  *hist        // request sent until answer read

	mu   sync.Mutex     // guards errs
	errs map[string]int // error code -> count
}

func (d *driver) errCounts() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int, len(d.errs))
	for k, v := range d.errs {
		out[k] = v
	}
	return out
}

// change makes one ownership change of c: assign to "owner" when unowned,
// unassign when owned, against the version last seen. k is the burst number
// (-1 outside burst mode).
func (d *driver) change(ctx context.Context, c *convState, k int64) {
	select {
	case d.inflight <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-d.inflight }()
	next := c.version + 1
	st := &c.stamps[next%stampRing]
	st.ver.Store(0) // invalidate while rewriting
	st.k.Store(k)
	at := d.e.since()
	st.at.Store(int64(at))
	st.ver.Store(next)
	d.sent.Add(1)
	agent := "owner"
	if c.owned {
		agent = ""
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	res, err := d.e.api.assign(rctx, c.token, c.id, agent, c.version)
	cancel()
	d.ack.record(d.e.since() - at)
	if err != nil {
		code := "transport"
		var ae *apiError
		if errors.As(err, &ae) {
			code = ae.Code
			if ae.CurrentVersion != nil {
				c.version = *ae.CurrentVersion
			}
		}
		if ctx.Err() != nil {
			code = "cancelled"
		}
		d.mu.Lock()
		d.errs[code]++
		first := d.errs[code] <= maxLoggedErrors
		d.mu.Unlock()
		if code == "transport" && first {
			// No API answer: say what happened, the code alone cannot.
			d.e.logf("change %s: %v", c.id, err)
		}
		return
	}
	if res.Conversation.Version != next {
		d.mu.Lock()
		d.errs[fmt.Sprintf("version_%d_want_%d", res.Conversation.Version, next)]++
		d.mu.Unlock()
	}
	c.version, c.owned = res.Conversation.Version, res.Conversation.Owner != ""
	d.acked.Add(1)
	d.expected.Add(d.clientsPerWS[c.ws])
}

// maxLoggedErrors is how many failed changes, and connections ended early,
// of one kind a run logs.
const maxLoggedErrors = 5

// sustained makes rate*duration changes, change i at start + i/rate, on
// workspace i mod W and its conversations in turn. Each conversation has a
// worker that makes its changes one at a time; when a conversation's
// previous change is still waiting, the change is skipped and counted (the
// hub is not keeping up with the rate).
func (d *driver) sustained(ctx context.Context, W, M int) error {
	cfg := d.e.cfg
	total := int64(math.Round(cfg.rate * cfg.duration.Seconds()))
	if total < 1 {
		return fmt.Errorf("-rate %v × -duration %v makes no change", cfg.rate, cfg.duration)
	}
	var wg sync.WaitGroup
	for _, convs := range d.s.convs {
		for _, c := range convs {
			wg.Add(1)
			go func() { // ends when c.jobs is closed (after the last change) and drained
				defer wg.Done()
				for k := range c.jobs {
					if ctx.Err() == nil {
						d.change(ctx, c, k)
					}
				}
			}()
		}
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / cfg.rate)
	// Hard stop: the pacing may not stretch the phase beyond its length by
	// more than the slack the last changes need.
	stopAt := start.Add(cfg.duration + time.Second)
	for i := int64(0); i < total; {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			if !sleep(ctx, wait) {
				i = total
				continue
			}
		}
		if time.Now().After(stopAt) {
			d.skipped.Add(total - i)
			break
		}
		// Send everything due by now (at high rates timers are coarser
		// than the interval).
		for ; i < total && !start.Add(time.Duration(i)*interval).After(time.Now()); i++ {
			ws := int(i % int64(W))
			c := d.s.convs[ws][int(i/int64(W))%M]
			select {
			case c.jobs <- -1:
			default:
				d.skipped.Add(1)
			}
		}
	}
	for _, convs := range d.s.convs {
		for _, c := range convs {
			close(c.jobs)
		}
	}
	wg.Wait()
	return ctx.Err()
}

// bursts makes -bursts single changes, -spacing apart, each going to every
// client of workspace 0, and times each broadcast separately.
func (d *driver) bursts(ctx context.Context) error {
	cfg := d.e.cfg
	d.s.bursts = make([]*burstStat, cfg.bursts)
	for k := range d.s.bursts {
		d.s.bursts[k] = &burstStat{h: newHist()}
	}
	convs := d.s.convs[0]
	for k := range cfg.bursts {
		t := time.Now()
		d.change(ctx, convs[k%len(convs)], int64(k))
		if k%10 == 9 {
			d.e.logf("burst %d of %d", k+1, cfg.bursts)
		}
		if !sleep(ctx, time.Until(t.Add(cfg.spacing))) {
			return ctx.Err()
		}
	}
	return nil
}

// burstResults adds, over the bursts, the median and worst of each
// broadcast's p50, p99 and completion (its last delivery).
func (s *fanState) burstResults(rep *report, clients int64) {
	var p50, p99, last []float64
	complete := 0
	for _, b := range s.bursts {
		if b.h.count() == 0 {
			continue
		}
		q := b.h.quantiles(0.5, 0.99)
		p50 = append(p50, ms(q[0]))
		p99 = append(p99, ms(q[1]))
		last = append(last, ms(time.Duration(b.last.Load())))
		if int64(b.h.count()) == clients {
			complete++
		}
	}
	rep.Results.add("bursts_complete", complete)
	rep.Results.add("burst_p50_ms", medianMax(p50))
	rep.Results.add("burst_p99_ms", medianMax(p99))
	rep.Results.add("burst_last_delivery_ms", medianMax(last))
}

// medianMax is {median, max} of vs, for the report.
func medianMax(vs []float64) map[string]float64 {
	if len(vs) == 0 {
		return map[string]float64{"median": 0, "max": 0}
	}
	slices.Sort(vs)
	return map[string]float64{"median": vs[len(vs)/2], "max": vs[len(vs)-1]}
}
