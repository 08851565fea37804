// Command hubload is presencehub's load tool. It is a separate process that
// speaks only the documented WebSocket protocol (docs/protocol.md) and HTTP
// API (docs/http-api.md), and imports nothing of the hub: it is also the
// proof that the docs are enough to write a client.
//
// Usage:
//
//	hubload <scenario> [flags]
//
// Scenarios: idle, fanout, groups, churn, durable (see usage below). Every
// run prints one JSON line (scenario, params, results, problems) and, unless
// -json, a table. It talks only to loopback addresses and always ends by
// itself: every loop is bounded by -duration and the whole run by -timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"syscall"
	"time"
)

const usage = `hubload: load tool for presencehub (speaks only the documented protocol and API)

Usage:
  hubload <scenario> [flags]

Scenarios:
  idle     N agents connect and subscribe; connect rate, server memory and
           goroutines per connection
  fanout   N agents of one workspace subscribed to new; a driver makes -rate
           ownership changes per second over the HTTP API; delivery rate,
           loss, duplicates, latency, CPU. -burst: one change to all N, -bursts
           times, -spacing apart
  groups   fanout over -W workspaces, changes spread round-robin
  churn    agents' tabs close and reopen (inside and outside the offline
           grace); checks every presence transition an observer sees
  durable  -c WebSocket clients assign as fast as acknowledged; changes per
           second and latency

Run "hubload <scenario> -h" for the flags.
Exit status: 0 done, 1 setup or run failure, 2 usage, 3 a check failed.
`

// config is the command line of one run.
type config struct {
	scenario string

	url      string        // hub base URL; loopback only
	secret   string        // HS256 secret (or PRESENCEHUB_SECRET)
	wsPrefix string        // workspace id prefix; default hl<time>-
	n        int           // agents (connections)
	agents   int           // distinct agent identities per workspace; 0 = one per connection
	w        int           // workspaces
	duration time.Duration // measured phase
	rate     float64       // changes (fanout, groups) or tab closes (churn) per second
	pid      int           // server pid for /proc; 0 = read process_* metrics
	jsonOnly bool
	timeout  time.Duration // hard bound of the whole run

	concurrency  int           // parallel dials while connecting
	convs        int           // conversations per workspace
	burst        bool          // fanout: one change at a time
	bursts       int           // fanout -burst: how many
	spacing      time.Duration // fanout -burst: time between two
	clients      int           // durable: concurrent clients
	clientRate   float64       // durable: requests per second per client, 0 = unpaced
	grace        int           // churn: offline grace to set, seconds
	reconnect    bool          // idle: drop every connection, then reconnect them all
	inside       float64       // churn: share of reconnects inside the grace
	perIP        int           // connections per source address
	srcIPs       int           // source addresses to rotate over
	setupTimeout time.Duration // one connect or setup request
	cpuProfile   string        // file for the tool's own CPU profile
}

// scenarios maps a name to its run function.
var scenarios = map[string]func(ctx context.Context, e *env) (*report, error){
	"idle":    runIdle,
	"fanout":  runFanout,
	"groups":  runFanout,
	"churn":   runChurn,
	"durable": runDurable,
}

func parseArgs(args []string, stderr io.Writer) (*config, error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return nil, flag.ErrHelp
	}
	c := &config{scenario: args[0]}
	if _, ok := scenarios[c.scenario]; !ok {
		fmt.Fprint(stderr, usage)
		return nil, fmt.Errorf("unknown scenario %q", c.scenario)
	}
	// Defaults that differ by scenario.
	n, w, dur, rt, convs := 200, 1, 10*time.Second, 10.0, 0
	switch c.scenario {
	case "idle":
		w = 0 // one workspace per 100 agents
	case "groups":
		w, rt = 10, 100
	case "churn":
		n, rt, dur = 100, 20, 20*time.Second
	}
	fs := flag.NewFlagSet(c.scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "hub base URL (loopback only)")
	fs.StringVar(&c.secret, "secret", os.Getenv("PRESENCEHUB_SECRET"), "HS256 token secret (default $PRESENCEHUB_SECRET)")
	fs.StringVar(&c.wsPrefix, "ws", "", "workspace id prefix (default hl<unix time>-, fresh every run)")
	fs.IntVar(&c.n, "n", n, "agents (WebSocket connections)")
	fs.IntVar(&c.agents, "agents", 0, "distinct agent identities per workspace; connections share them (0 = one agent per connection)")
	fs.IntVar(&c.w, "W", w, "workspaces (groups; idle: 0 = one per 100 agents)")
	fs.DurationVar(&c.duration, "duration", dur, "length of the measured phase")
	fs.Float64Var(&c.rate, "rate", rt, "fanout, groups: ownership changes per second; churn: tab closes per second")
	fs.IntVar(&c.pid, "pid", 0, "server process id, for VmRSS and CPU from /proc (0: the process_* metrics of /metrics)")
	fs.BoolVar(&c.jsonOnly, "json", false, "print only the JSON line")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "hard bound of the whole run; the tool exits by then whatever happens")
	// A storm of consoles (a network blip, the start of a shift) has
	// thousands of connects in flight. With few, a first connect's rate is
	// set by the wait for its durable commit, not by the hub's CPU: at 32,
	// about 4,500/s against 5,400 at 128 and 5,800 at 256 (BENCHMARKS.md).
	fs.IntVar(&c.concurrency, "concurrency", 256, "parallel connects")
	fs.IntVar(&c.convs, "convs", convs, "conversations per workspace (fanout, groups; 0 = enough for -rate)")
	fs.BoolVar(&c.burst, "burst", false, "fanout: one change at a time to all N, -bursts times, -spacing apart")
	fs.IntVar(&c.bursts, "bursts", 20, "fanout -burst: number of changes")
	fs.DurationVar(&c.spacing, "spacing", time.Second, "fanout -burst: time between changes")
	fs.IntVar(&c.clients, "c", 64, "durable: concurrent clients")
	fs.Float64Var(&c.clientRate, "client-rate", 45, "durable: most requests per second per client; the hub refuses more than 50/s per connection unless run with -ws-rate (0: unpaced)")
	fs.IntVar(&c.grace, "grace", 2, "churn: offline grace to set on the workspace, seconds (the hub allows 0 to 90)")
	fs.Float64Var(&c.inside, "inside", 0.5, "churn: share of reconnects inside the grace (0 to 1)")
	fs.BoolVar(&c.reconnect, "reconnect", false, "idle: after the hold, drop every connection at once and reconnect them all inside the offline grace (a network blip); reconnect rate and that nobody saw it")
	fs.IntVar(&c.perIP, "per-ip", 5000, "connections per source address before moving to the next")
	fs.IntVar(&c.srcIPs, "src-ips", 250, "source addresses to rotate over, from 127.0.0.2; each run starts at a random one")
	fs.DurationVar(&c.setupTimeout, "setup-timeout", 60*time.Second, "bound of one connect or setup request")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the tool's own CPU profile (pprof) to this file")
	// Let "-burst 1" work as the brief writes it, besides "-burst".
	args = normalizeBoolArgs(args[1:], "burst", "reconnect")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.check()
}

// normalizeBoolArgs turns "-name 1" / "-name 0" (and true/false) into
// "-name=1", which the flag package needs for a boolean.
func normalizeBoolArgs(args []string, names ...string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if slices.Contains(names, trimDashes(a)) && i+1 < len(args) {
			if _, err := strconv.ParseBool(args[i+1]); err == nil {
				out = append(out, a+"="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

func trimDashes(s string) string {
	for len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	return s
}

func (c *config) check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.secret) < 16 {
		bad("-secret: at least 16 bytes (or set PRESENCEHUB_SECRET)")
	}
	if c.n < 1 || c.n > 1_000_000 {
		bad("-n: 1 to 1,000,000")
	}
	if c.agents < 0 {
		bad("-agents: 0 or more")
	}
	if c.w < 0 || c.w > 100_000 {
		bad("-W: 0 to 100,000")
	}
	if c.duration <= 0 || c.duration > 24*time.Hour {
		bad("-duration: positive and at most 24h")
	}
	if c.timeout <= 0 || c.timeout > tokenTTL-time.Minute {
		bad("-timeout: positive and under %v", tokenTTL-time.Minute)
	}
	if c.rate < 0 || c.rate > 1e6 {
		bad("-rate: 0 to 1,000,000")
	}
	if c.concurrency < 1 || c.concurrency > 4096 {
		bad("-concurrency: 1 to 4096")
	}
	if c.convs < 0 || c.convs > 1_000_000 {
		bad("-convs: 0 to 1,000,000")
	}
	if c.bursts < 1 || c.bursts > 1000 {
		bad("-bursts: 1 to 1,000 (each keeps its own histogram)")
	}
	if c.spacing <= 0 {
		bad("-spacing: positive")
	}
	if c.clientRate < 0 {
		bad("-client-rate: 0 or more")
	}
	if c.clients < 1 || c.clients > 10_000 {
		bad("-c: 1 to 10,000")
	}
	if c.grace < 0 || c.grace > 90 {
		bad("-grace: 0 to 90 seconds")
	}
	if c.inside < 0 || c.inside > 1 {
		bad("-inside: 0 to 1")
	}
	if c.perIP < 1 || c.perIP > 28000 {
		bad("-per-ip: 1 to 28,000 (the ephemeral ports of one address)")
	}
	if c.srcIPs < 1 || c.srcIPs > 250 {
		bad("-src-ips: 1 to 250")
	}
	if c.setupTimeout <= 0 {
		bad("-setup-timeout: positive")
	}
	if c.wsPrefix == "" {
		c.wsPrefix = "hl" + strconv.FormatInt(time.Now().Unix(), 36) + "-"
	}
	if _, _, err := parseTarget(c.url); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// apiConns bounds the driver's HTTP connections (each is a file descriptor
// beside the WebSockets; the process may hold 20,000) and so its changes in
// flight.
const apiConns = 1024

// env is what every scenario works with.
type env struct {
	cfg    *config
	base   *url.URL
	wsURL  *url.URL
	mint   *minter
	api    *apiClient
	wsHTTP *http.Client
	probe  *serverProbe
	epoch  time.Time // the run's zero on the monotonic clock
	log    io.Writer // progress, for people
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "hubload:", err)
		return 2
	}
	// The hard bound: the context ends every loop, and should something
	// ignore it, the process ends anyway a little later.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	watchdog := time.AfterFunc(cfg.timeout+30*time.Second, func() {
		fmt.Fprintln(stderr, "hubload: -timeout passed and the run did not stop; exiting")
		os.Exit(1)
	})
	defer watchdog.Stop()

	e, err := newEnv(cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "hubload:", err)
		return 2
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "hubload:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "hubload:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	load0 := loadAvg()
	rep, err := scenarios[cfg.scenario](ctx, e)
	if err != nil {
		fmt.Fprintf(stderr, "hubload %s: %v\n", cfg.scenario, err)
		return 1
	}
	rep.Results.add("host_load_1m", map[string]float64{"start": load0, "end": loadAvg()})
	if err := rep.write(stdout, cfg.jsonOnly); err != nil {
		fmt.Fprintln(stderr, "hubload:", err)
		return 1
	}
	if len(rep.Problems) > 0 {
		return 3
	}
	return 0
}

func newEnv(cfg *config, log io.Writer) (*env, error) {
	base, wsURL, err := parseTarget(cfg.url)
	if err != nil {
		return nil, err
	}
	e := &env{
		cfg:   cfg,
		base:  base,
		wsURL: wsURL,
		mint:  newMinter(cfg.secret),
		epoch: time.Now(),
		log:   log,
	}
	apiHTTP := newAPIClient(apiConns)
	e.api = &apiClient{base: base, http: apiHTTP}
	src := newSrcPool(cfg.perIP, cfg.srcIPs)
	// A random first address: the ports an earlier run left in TIME_WAIT
	// are then most likely on other addresses.
	src.startAt(rand.Uint64N(src.count))
	wsHTTP := newWSClient(src)
	e.wsHTTP = wsHTTP
	e.probe = &serverProbe{pid: cfg.pid, metrics: base.JoinPath("/metrics"), http: apiHTTP}
	return e, nil
}

// logf prints progress for people on stderr (stdout is the report).
func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "%s  %s\n", time.Since(e.epoch).Truncate(time.Millisecond), fmt.Sprintf(format, args...))
}

// since is now on the run's monotonic clock.
func (e *env) since() time.Duration { return time.Since(e.epoch) }

// wsID is the id of workspace i of this run.
func (e *env) wsID(i int) string { return e.cfg.wsPrefix + strconv.Itoa(i) }

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// sleep waits d, or until ctx ends; it reports whether the whole d passed.
// Every pause of the tool goes through it, so Ctrl-C and -timeout end a run
// at once.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
