package main

import (
	"context"
	"fmt"
	"runtime/pprof"
	"sync/atomic"
	"time"
)

// runIdle measures what an idle connection costs: N agents connect and
// subscribe (new, all), then sit. It reports the connect rate (connections
// per second, each including the token check, the upgrade and the hello),
// and the server's memory and goroutines before and after, per connection.
// Agents are spread over -W workspaces (default one per 100 agents: a hello
// lists every agent of the workspace, so one workspace of 15,000 agents
// would measure megabyte hellos, not idle connections).
func runIdle(ctx context.Context, e *env) (*report, error) {
	cfg := e.cfg
	w := cfg.w
	if w == 0 {
		w = (cfg.n + 99) / 100
	}
	per := (cfg.n + w - 1) / w
	rep := &report{Scenario: "idle"}
	rep.Params.add("n", cfg.n)
	rep.Params.add("workspaces", w)
	rep.Params.add("concurrency", cfg.concurrency)
	rep.Params.add("hold_s", cfg.duration.Seconds())

	before := e.probe.sample(ctx)
	if before.Goroutines < 0 {
		return nil, fmt.Errorf("cannot read go_goroutines from %s (is the hub up?)", e.probe.metrics)
	}
	e.logf("server before: rss %.1f MiB, %d goroutines", mib(before.RSS), before.Goroutines)
	cpu0 := selfCPU()

	who := func(i int) (int, string) { return i / per, agentName(i%per, cfg.agents) }
	var received, lastAt atomic.Int64
	// Messages are counted, not read (readLoop): about a hundred per
	// connect in workspaces of 100.
	f, err := e.connectFleet(ctx, cfg.n, who, true, false, func(_ int, _ *message, at time.Duration) {
		received.Add(1)
		atomicMax(&lastAt, int64(at))
	})
	if err != nil {
		return nil, err
	}
	defer f.close()
	connected := e.since()
	e.logf("connected %d in %v", cfg.n, f.elapsed.Round(time.Millisecond))

	// Presence events of the agents that connected last are still being
	// delivered; measure once they have died down.
	quiet(ctx, received.Load, time.Second, 60*time.Second)
	after := e.probe.sample(ctx)
	e.logf("server after connect: rss %.1f MiB, %d goroutines", mib(after.RSS), after.Goroutines)
	recvConnect := received.Load()

	// Hold: idle connections should cost the hub nothing but pings.
	if !sleep(ctx, cfg.duration) {
		return nil, ctx.Err()
	}
	held := e.probe.sample(ctx)
	recvHold := received.Load() - recvConnect
	drops, dropped := f.droppedCount()

	rep.Results.add("connect_s", round2(f.elapsed.Seconds()))
	rep.Results.add("connects_per_s", rate(float64(cfg.n), f.elapsed.Seconds()))
	rep.Results.add("connect_latency", f.connect.summary())
	rep.Results.add("subscribe_latency", f.subscribe.summary())
	rep.Results.add("connect_retries", f.retries.Load())
	rep.Results.add("rss_before_mib", mib(before.RSS))
	rep.Results.add("rss_after_mib", mib(after.RSS))
	rep.Results.add("rss_after_hold_mib", mib(held.RSS))
	rep.Results.add("rss_per_conn_kib", round2(float64(after.RSS-before.RSS)/1024/float64(cfg.n)))
	// Heap in use still holds garbage the GC has not collected (hellos,
	// the presence events of the login); RSS also holds freed pages the
	// runtime has not returned. Both are upper bounds of the cost.
	rep.Results.add("heap_per_conn_kib", round2(float64(after.Heap-before.Heap)/1024/float64(cfg.n)))
	rep.Results.add("stacks_per_conn_kib", round2(float64(after.Stacks-before.Stacks)/1024/float64(cfg.n)))
	rep.Results.add("goroutines_before", before.Goroutines)
	rep.Results.add("goroutines_after", after.Goroutines)
	rep.Results.add("goroutines_per_conn", round2(float64(after.Goroutines-before.Goroutines)/float64(cfg.n)))
	rep.Results.add("messages_while_connecting", recvConnect)
	// How long after the last connect the last of their events arrived:
	// the hub's backlog of presence transitions.
	rep.Results.add("events_settled_after_s", round2(max(0, time.Duration(lastAt.Load())-connected).Seconds()))
	rep.Results.add("messages_while_holding", recvHold)
	rep.Results.add("server_cpu_s", round2(held.CPU-before.CPU))
	rep.Results.add("client_cpu_s", round2(selfCPU()-cpu0))
	rep.Results.add("dropped_by_hub", drops)
	if dropped > 0 {
		rep.problem("the hub closed %d idle connections: %v", dropped, drops)
	}
	if n := f.badFrames.Load(); n > 0 {
		rep.problem("%d frames could not be parsed", n)
	}
	if cfg.reconnect {
		f2, err := reconnectAll(ctx, e, f, who, before.Conns, rep)
		if f2 != nil {
			defer f2.close()
		}
		if err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// reconnectAll drops every connection of f at once, as a network blip or
// a restarted proxy in front of the hub does, waits until the hub has seen
// them all go (its connection count back to base), then connects the same
// agents again and subscribes them. That storm is the one a helpdesk
// meets in practice: every console at once, every agent known. All are
// back well inside the offline grace (60 s on a new workspace), so no
// presence changes and, by the rules, no agent sees anything
// (messages_while_reconnecting must be 0). It returns the new fleet.
func reconnectAll(ctx context.Context, e *env, f *fleet, who func(int) (int, string), base int64, rep *report) (*fleet, error) {
	cfg := e.cfg
	dropped := time.Now()
	f.close()
	gone := false
	for time.Since(dropped) < 30*time.Second {
		if s := e.probe.sample(ctx); s.Conns >= 0 && s.Conns <= base {
			gone = true
			break
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	if !gone {
		rep.problem("the hub still counted the dropped connections after 30 s (base %d)", base)
	}
	e.logf("dropped %d connections, hub saw them go in %v; reconnecting", cfg.n, time.Since(dropped).Round(time.Millisecond))

	s0, cpu0 := e.probe.sample(ctx), selfCPU()
	var received atomic.Int64
	var f2 *fleet
	var err error
	// The label lets -cpuprofile tell the storm from the first connects:
	// go tool pprof -tagfocus=phase=reconnect. The new fleet's readers
	// carry it too, for the rest of the run.
	pprof.Do(ctx, pprof.Labels("phase", "reconnect"), func(ctx context.Context) {
		f2, err = e.connectFleet(ctx, cfg.n, who, true, false, func(int, *message, time.Duration) { received.Add(1) })
	})
	if err != nil {
		return nil, fmt.Errorf("reconnect: %w", err)
	}
	back := time.Since(dropped)
	e.logf("reconnected %d in %v", cfg.n, f2.elapsed.Round(time.Millisecond))
	// Anything the hub wrongly sends about the reconnects arrives soon.
	quiet(ctx, received.Load, time.Second, 10*time.Second)
	s1 := e.probe.sample(ctx)

	rep.Results.add("reconnect_s", round2(f2.elapsed.Seconds()))
	rep.Results.add("reconnects_per_s", rate(float64(cfg.n), f2.elapsed.Seconds()))
	rep.Results.add("reconnect_latency", f2.connect.summary())
	rep.Results.add("reconnect_subscribe_latency", f2.subscribe.summary())
	rep.Results.add("reconnect_retries", f2.retries.Load())
	rep.Results.add("reconnect_server_cpu_s", round2(s1.CPU-s0.CPU))
	rep.Results.add("reconnect_client_cpu_s", round2(selfCPU()-cpu0))
	rep.Results.add("back_after_drop_s", round2(back.Seconds()))
	rep.Results.add("messages_while_reconnecting", received.Load())
	if n := received.Load(); n > 0 {
		rep.problem("%d messages reached agents while they reconnected inside the grace; a reconnect inside the grace must be invisible", n)
	}
	if back > 50*time.Second {
		rep.problem("the last agent was back %v after the drop: near or past the 60 s grace", back.Round(time.Second))
	}
	return f2, nil
}

// agentName is the agent id of connection i. With distinct > 0, connections
// share distinct identities (several tabs of the same agent), which keeps a
// workspace's hello and presence traffic bounded.
func agentName(i, distinct int) string {
	if distinct > 0 {
		i %= distinct
	}
	return fmt.Sprintf("a%d", i)
}
