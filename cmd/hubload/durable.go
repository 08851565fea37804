package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
)

// runDurable measures committed ownership changes: -c clients, each an agent
// with one WebSocket and a conversation of its own, assign it to themselves
// and unassign it in turn, each change sent as soon as the previous one is
// acknowledged. Every acknowledgement is a change the hub has committed
// (with fsync when the hub runs -durable), so the rate is what group commit
// makes of -c concurrent writers. The hub limits each connection to 50
// requests a second by default (burst 100), so each client is paced at
// -client-rate and the rate can be no more than -c × -client-rate; to
// measure the store rather than that limit, run the hub with -ws-rate -1
// and this with -client-rate 0.
func runDurable(ctx context.Context, e *env) (*report, error) {
	cfg := e.cfg
	C := cfg.clients
	rep := &report{Scenario: "durable"}
	rep.Params.add("clients", C)
	rep.Params.add("client_rate", cfg.clientRate)
	rep.Params.add("duration_s", cfg.duration.Seconds())
	ws := e.wsID(0)

	// Conversations first, over the API as a helpdesk backend would.
	versions := make([]uint64, C)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range C {
		g.Go(func() error { // ends when conversation i exists
			conv := "c" + strconv.Itoa(i)
			tok, err := e.mint.token(ws, "drv-"+conv, "service")
			if err != nil {
				return err
			}
			rctx, cancel := context.WithTimeout(gctx, cfg.setupTimeout)
			defer cancel()
			res, err := e.api.inbound(rctx, tok, conv, "m-"+conv+"-"+cfg.wsPrefix)
			if err != nil {
				return fmt.Errorf("create conversation %s: %w", conv, err)
			}
			versions[i] = res.Conversation.Version
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	conns := make([]*websocket.Conn, C)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	}()
	t0 := time.Now()
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(cfg.concurrency)
	for i := range C {
		g.Go(func() error { // ends when client i is connected
			c, _, err := e.dialAgent(gctx, ws, "d"+strconv.Itoa(i), "agent")
			conns[i] = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	e.logf("%d clients connected in %v", C, time.Since(t0).Round(time.Millisecond))

	lat := newHist()
	var acked atomic.Int64
	var mu sync.Mutex // guards errs and failures
	errs := map[string]int{}
	var failures []error
	srv0 := e.probe.sample(ctx)
	cpu0 := selfCPU()
	start := time.Now()
	end := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for i := range C {
		wg.Add(1)
		go func() { // ends at the end of the phase, or when its connection fails
			defer wg.Done()
			err := durableClient(ctx, conns[i], i, versions[i], end, cfg.clientRate, lat, &acked, func(code string) {
				mu.Lock()
				errs[code]++
				mu.Unlock()
			})
			if err != nil {
				mu.Lock()
				failures = append(failures, fmt.Errorf("client %d: %w", i, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	srv1 := e.probe.sample(ctx)
	cpu1 := selfCPU()

	rep.Results.add("changes_acked", acked.Load())
	rep.Results.add("changes_per_s", rate(float64(acked.Load()), elapsed))
	if cfg.clientRate > 0 {
		// When the clients' pacing, not the hub, set the rate, say so.
		rep.Results.add("paced_ceiling_per_s", round2(float64(C)*cfg.clientRate))
	}
	rep.Results.add("latency", lat.summary())
	rep.Results.add("errors", errs)
	if srv0.CPU >= 0 && srv1.CPU >= 0 {
		rep.Results.add("server_cpu_s", round2(srv1.CPU-srv0.CPU))
		rep.Results.add("server_cores", round2((srv1.CPU-srv0.CPU)/elapsed))
	}
	rep.Results.add("client_cpu_s", round2(cpu1-cpu0))
	if st := commitStalls(srv0.metrics, srv1.metrics); st != nil {
		rep.Results.add("hub_commits", st)
	}
	if len(errs) > 0 {
		rep.problem("error replies: %v", errs)
	}
	for _, f := range failures {
		rep.problem("%v", f)
	}
	return rep, nil
}

// durableClient changes its conversation until end: request, wait for the
// reply, next. A conflict (which only a bug could cause: nobody else
// touches the conversation) reloads the version and goes on.
//
// The loop is lean on purpose, because the client shares the cores with
// the hub it measures: each request is appended into one reused buffer
// rather than marshalled from a map, replies are read into one reused
// buffer, and reads and writes take no deadline of their own (a context
// with one costs a timer per call in coder/websocket). The run's deadline
// still bounds them: when it passes, the connection is closed, which ends
// a read or write that is stuck.
func durableClient(ctx context.Context, c *websocket.Conn, i int, version uint64, end time.Time, pace float64,
	lat *hist, acked *atomic.Int64, fail func(code string)) error {
	me, conv := "d"+strconv.Itoa(i), "c"+strconv.Itoa(i)
	owned := false
	rctx, cancel := context.WithDeadline(ctx, end.Add(30*time.Second))
	defer cancel()
	stop := context.AfterFunc(rctx, func() { c.CloseNow() })
	defer stop()
	var interval time.Duration
	if pace > 0 {
		interval = time.Duration(float64(time.Second) / pace)
	}
	var req, rbuf []byte
	next := time.Now()
	for id := int64(10); time.Now().Before(end) && ctx.Err() == nil; id++ {
		if interval > 0 {
			if !sleep(ctx, time.Until(next)) {
				break
			}
			next = next.Add(interval)
			if now := time.Now(); next.Before(now.Add(-interval)) {
				next = now // fell behind: no catching up in a burst
			}
		}
		if owned {
			req = appendChange(req[:0], id, "unassign", conv, "", version)
		} else {
			req = appendChange(req[:0], id, "assign", conv, me, version)
		}
		t := time.Now()
		if err := c.Write(context.Background(), websocket.MessageText, req); err != nil {
			return orDeadline(rctx, err)
		}
		var rep message
		var err error
		rep, rbuf, err = awaitReplyIn(context.Background(), c, id, rbuf)
		var re *replyError
		switch {
		case errors.As(err, &re):
			fail(re.Code)
			if re.Code == "rate_limited" {
				sleep(ctx, 100*time.Millisecond)
				continue
			}
			// Reload the version and go on.
			id++
			if err := request(rctx, c, id, "conversation", map[string]any{"conv": conv}); err != nil {
				return err
			}
			cur, err := awaitReply(rctx, c, id, nil)
			if err != nil {
				return fmt.Errorf("reload %s: %w", conv, err)
			}
			version, owned = cur.Version, len(cur.Owner) > 0
			continue
		case err != nil:
			return orDeadline(rctx, err)
		}
		lat.record(time.Since(t))
		acked.Add(1)
		owned = !owned
		// The reply names the conversation; when it carries the record, its
		// version is authoritative, else the change made it one more.
		if rep.Version != 0 {
			version = rep.Version
		} else {
			version++
		}
	}
	return nil
}

// appendChange appends an assign (to agent) or unassign request of conv
// at version: the object json.Marshal would make of the same request,
// members in another order. Ids here are the tool's own, letters and
// digits, so nothing needs escaping.
func appendChange(b []byte, id int64, op, conv, agent string, version uint64) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"op":"`...)
	b = append(b, op...)
	b = append(b, `","conv":"`...)
	b = append(b, conv...)
	if agent != "" {
		b = append(b, `","agent":"`...)
		b = append(b, agent...)
	}
	b = append(b, `","version":`...)
	b = strconv.AppendUint(b, version, 10)
	return append(b, '}')
}

// orDeadline says that the run's deadline closed the connection, when it
// did, rather than only how the read or write failed.
func orDeadline(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
