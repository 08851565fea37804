package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// serveConfig is everything `presencehub serve` is told. Each flag has a
// matching PRESENCEHUB_* environment variable; a flag given on the command
// line wins over the environment, which wins over the default.
type serveConfig struct {
	Addr      string        // listen address; default 127.0.0.1:8080
	Data      string        // Badger directory; default ./data
	Secret    string        // HS256 token secret, at least 16 bytes; required
	Origins   []string      // extra allowed browser origins (host patterns)
	Durable   bool          // fsync every commit; default true
	LogLevel  slog.Level    // default info
	Demo      bool          // seed a demo workspace when the store is empty
	PublicURL string        // base URL printed in console links; default http://<addr>
	DebugAddr string        // pprof listener, off when empty
	DrainWait time.Duration // how long shutdown waits for sockets; default 10s
	APIRate   float64       // HTTP API requests per second per caller (burst twice that); default 50, negative = off
	WSRate    float64       // WebSocket requests per second per connection (hub.Config.RequestRate); default 50, negative = off
}

type lookupEnv func(string) (string, bool)

func parseServe(args []string, env lookupEnv, stderr io.Writer) (serveConfig, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		c        serveConfig
		origins  string
		logLevel string
	)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address (PRESENCEHUB_ADDR)")
	fs.StringVar(&c.Data, "data", "./data", "Badger data directory (PRESENCEHUB_DATA)")
	fs.StringVar(&c.Secret, "secret", "", "HS256 token secret, at least 16 bytes (PRESENCEHUB_SECRET)")
	fs.StringVar(&origins, "origins", "", "extra allowed browser origins, comma-separated host patterns (PRESENCEHUB_ORIGINS)")
	fs.BoolVar(&c.Durable, "durable", true, "fsync every commit before acknowledging it (PRESENCEHUB_DURABLE)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (PRESENCEHUB_LOG_LEVEL)")
	fs.BoolVar(&c.Demo, "demo", false, "seed a demo workspace when the store is empty (PRESENCEHUB_DEMO)")
	fs.StringVar(&c.PublicURL, "public-url", "", "base URL for the console links printed at start-up (PRESENCEHUB_PUBLIC_URL)")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "serve /debug/pprof on this address; off when empty (PRESENCEHUB_DEBUG_ADDR)")
	fs.DurationVar(&c.DrainWait, "drain", 10*time.Second, "how long shutdown waits for sockets to close (PRESENCEHUB_DRAIN)")
	fs.Float64Var(&c.APIRate, "api-rate", 50, "HTTP API requests per second per caller, burst twice that; negative turns the limit off (PRESENCEHUB_API_RATE)")
	fs.Float64Var(&c.WSRate, "ws-rate", 50, "WebSocket requests per second per connection, burst twice that; an agent's sockets together get twice the rate; negative turns the limits off (PRESENCEHUB_WS_RATE)")

	// The environment fills in what the command line does not set.
	set := map[string]bool{}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		name := "PRESENCEHUB_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := env(name); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, e)
			}
		}
	})
	if err != nil {
		return c, err
	}

	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return c, fmt.Errorf("log-level %q: want debug, info, warn or error", logLevel)
	}
	for o := range strings.SplitSeq(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.Origins = append(c.Origins, o)
		}
	}
	if len(c.Secret) < 16 {
		return c, fmt.Errorf("secret: set -secret or PRESENCEHUB_SECRET to at least 16 bytes (it signs and checks every token)")
	}
	if c.APIRate == 0 {
		return c, fmt.Errorf("api-rate: 0 would refuse every request; use a positive rate, or a negative one to turn the limit off")
	}
	if c.WSRate == 0 {
		return c, fmt.Errorf("ws-rate: 0 would refuse every request; use a positive rate, or a negative one to turn the limits off")
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Addr
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	return c, nil
}
