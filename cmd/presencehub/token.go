package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/queues"
)

// token mints a signed token, so an operator can try the hub (or a script
// can call the HTTP API) without writing code.
func token(args []string, env lookupEnv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		secret = fs.String("secret", "", "HS256 token secret (PRESENCEHUB_SECRET)")
		ws     = fs.String("ws", "", "workspace id (required)")
		sub    = fs.String("sub", "", "agent id (required)")
		name   = fs.String("name", "", "display name (default: the agent id)")
		role   = fs.String("role", "agent", "agent, admin or service")
		ttl    = fs.Duration("ttl", 12*time.Hour, "lifetime")
		link   = fs.String("link", "", "also print a console link on this base URL, e.g. http://127.0.0.1:8080")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		if v, ok := env("PRESENCEHUB_SECRET"); ok {
			*secret = v
		}
	}
	if *ws == "" || *sub == "" {
		fs.Usage()
		return fmt.Errorf("token: -ws and -sub are required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("token: -ttl must be positive, got %v", *ttl)
	}
	if len(*secret) < 16 {
		return fmt.Errorf("token: -secret (or PRESENCEHUB_SECRET) must be at least 16 bytes")
	}
	if *name == "" {
		*name = *sub
	}
	t, err := hub.Mint([]byte(*secret), hub.Identity{
		Workspace: *ws, Agent: *sub, Name: *name, Role: queues.Role(*role),
	}, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, t)
	if *link != "" {
		fmt.Fprintln(stdout, consoleLink(*link, t))
	}
	return nil
}

// consoleLink puts the token in the URL fragment, which browsers never send
// to the server, so it stays out of access logs.
func consoleLink(base, token string) string {
	return base + "/#token=" + token
}
