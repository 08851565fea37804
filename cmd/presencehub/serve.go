package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/metrics"
	"github.com/presencehub/presencehub/presence"
	"github.com/presencehub/presencehub/queues"
	"github.com/presencehub/presencehub/web"
)

// serve runs the hub until ctx is cancelled, then shuts down in order: stop
// accepting, stop presence, close sockets with "going away", commit the
// presence updates already made, stop the store's timers, close the store.
func serve(ctx context.Context, cfg serveConfig, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	verifier, err := hub.NewVerifier([]byte(cfg.Secret))
	if err != nil {
		return err
	}
	store, err := queues.Open(queues.Options{
		Dir:        cfg.Data,
		SyncWrites: cfg.Durable,
		Logger:     log.With("component", "store"),
	})
	if err != nil {
		return fmt.Errorf("open store %s: %w", cfg.Data, err)
	}
	defer store.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()

	reg := prometheus.NewRegistry()
	m := metrics.New(reg, store)
	store.SetCommitObserver(m.Commit)

	// The tracker and the hub need each other only through cmd: the
	// tracker's updates go to the store through the sink, and the sink asks
	// the hub to close sockets on idle logout.
	var sink *presenceSink
	tracker := presence.NewTracker(func(u presence.Update) { sink.push(u) }, presence.DefaultTiming)
	// Fan-out runs on the dispatcher's goroutine, not the store's
	// committer: a broadcast to thousands of sockets must not hold up the
	// next commit. The hub holds each reply until its events are out.
	disp := hub.NewDispatcher()
	h := hub.New(hub.Config{
		Delivery: disp,
		Backend:  store,
		Presence: tracker,
		Verifier: verifier,
		Origins:  cfg.Origins,
		Logger:   log.With("component", "hub"),
		Observer: m,

		RequestRate: cfg.WSRate,
	})
	sink = newPresenceSink(store, h, log.With("component", "presence"))
	store.SetPublisher(m.Publisher(settingsTee{tracker: tracker, next: disp}))

	restored, err := restorePresence(store, tracker, time.Now())
	if err != nil {
		return fmt.Errorf("restore presence: %w", err)
	}

	if cfg.Demo {
		if err := seedDemo(ctx, store); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	mux.Handle("/api/v1/", hub.NewAPI(hub.APIConfig{
		Backend:   store,
		Verifier:  verifier,
		Logger:    log.With("component", "api"),
		Observer:  m,
		RateLimit: cfg.APIRate,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := store.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("/", web.Handler())

	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	// Background work has its own contexts, stopped in order at shutdown.
	trackerCtx, stopTracker := context.WithCancel(context.Background())
	defer stopTracker()
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	trackerDone := make(chan error, 1)
	go func() { trackerDone <- tracker.Run(trackerCtx) }() // ends when trackerCtx is cancelled
	var g errgroup.Group
	g.Go(func() error { sink.run(bg); return nil })             // ends when bg is cancelled, after a final flush
	g.Go(func() error { return ignoreCanceled(store.Run(bg)) }) // ends when bg is cancelled
	g.Go(func() error { disp.Run(bg, h); return nil })          // ends when bg is cancelled, after handing on what is queued

	// WebSocket handshakes are answered by the hub's front, off the
	// listener; everything else goes on to srv.
	front := hub.NewFront(h, ln, "/ws", srv.ReadHeaderTimeout)
	serveErr := make(chan error, 2)
	go func() { serveErr <- front.Serve() }()               // ends when the front is closed (srv.Shutdown closes it, Shutdown below waits for its handshakes)
	go func() { serveErr <- srv.Serve(front.Listener()) }() // ends when srv is shut down
	if cfg.DebugAddr != "" {
		dbg := debugServer(cfg.DebugAddr)
		go dbg.ListenAndServe() // ends when the process exits; debugging only
		defer dbg.Close()
	}

	log.Info("presencehub serving", "addr", ln.Addr().String(), "data", cfg.Data,
		"durable", cfg.Durable, "restored_agents", restored)
	fmt.Fprintf(stdout, "presencehub listening on http://%s\n", ln.Addr())
	if cfg.Demo {
		if err := printDemoLinks(stdout, cfg); err != nil {
			return err
		}
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}

	log.Info("shutting down")
	down, cancel := context.WithTimeout(context.Background(), cfg.DrainWait)
	defer cancel()
	// Stop accepting first. Then stop the tracker before the sockets close:
	// the disconnects a shutdown causes are not the agents leaving, and after
	// the restart every agent who was online gets a fresh grace counted from
	// start-up (DOMAIN.md). Committing them here would instead start graces
	// that a long restart turns into everyone going offline at once.
	if err := srv.Shutdown(down); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	// srv.Shutdown closed the front; wait for the handshakes it was
	// answering, as srv waited for its handlers.
	if err := front.Shutdown(down); err != nil {
		log.Warn("front shutdown", "err", err)
	}
	stopTracker()
	<-trackerDone
	// http.Server.Shutdown does not touch hijacked WebSocket connections:
	// the hub closes its sockets itself, with "going away".
	if err := h.Shutdown(down); err != nil {
		log.Warn("hub shutdown", "err", err)
	}
	stopBG()
	if err := g.Wait(); err != nil {
		log.Warn("background work", "err", err)
	}
	if err := store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	log.Info("stopped")
	return nil
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func debugServer(addr string) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}
