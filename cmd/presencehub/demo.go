package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/queues"
)

// The demo workspace: an admin, three agents, three channels and a dozen
// conversations spread over the queues, so a first look at the console has
// something in every column.
const demoWorkspace = "demo"

var demoAgents = []queues.Agent{
	{ID: "ann", Name: "Ann Admin", Role: queues.RoleAdmin},
	{ID: "al", Name: "Al Rivera", Role: queues.RoleAgent},
	{ID: "bea", Name: "Bea Chen", Role: queues.RoleAgent},
	{ID: "cy", Name: "Cy Okafor", Role: queues.RoleAgent},
}

type demoConv struct {
	id, channel, customer, subject, text string
	queue                                queues.Queue
	owner                                string
}

var demoConvs = []demoConv{
	{"c1", "email", "Dana Whitfield", "Refund for order #4411", "Hi, I was charged twice for my order. Can you refund one?", queues.QueueNew, ""},
	{"c2", "chat", "Eli Navarro", "Can't log in", "The login page keeps saying my password is wrong.", queues.QueueNew, "bea"},
	{"c3", "twitter", "@frankly_fran", "Shipping delay", "@acme my package is a week late, what's going on?", queues.QueueNew, "al"},
	{"c4", "email", "Gus Patel", "Invoice address", "Please change the billing address on my invoices.", queues.QueueNew, ""},
	{"c5", "chat", "Hana Sato", "Upgrade plan", "How do I move to the Team plan?", queues.QueueNew, "cy"},
	{"c6", "email", "Ivan Petrov", "Data export", "I need a CSV export of all my tickets.", queues.QueueNew, "bea"},
	{"c7", "email", "Jo March", "Damaged item", "The mug arrived broken. Photos attached.", queues.QueuePending, "bea"},
	{"c8", "chat", "Kai Müller", "API rate limits", "We hit 429s at about 50 requests per second.", queues.QueuePending, "al"},
	{"c9", "twitter", "@lena_codes", "Feature request", "@acme any plans for dark mode?", queues.QueuePending, ""},
	{"c10", "email", "Mo Haddad", "Cancel subscription", "Please cancel my subscription at the end of the month.", queues.QueueResolved, ""},
	{"c11", "chat", "Nia Brooks", "Password reset", "Reset link expired, can you send another?", queues.QueueResolved, ""},
	{"c12", "email", "Omar Said", "Wrong size", "I ordered a M and got an L.", queues.QueueNew, ""},
}

// seedDemo fills the demo workspace through the store's own operations, so
// the demo has real history, events and notifications. It does nothing when
// the workspace already exists (a restart keeps what people did).
func seedDemo(ctx context.Context, store *queues.Store) error {
	if slices.Contains(store.Workspaces(), demoWorkspace) {
		return nil
	}
	ws := demoWorkspace
	for _, a := range demoAgents {
		if _, err := store.EnsureAgent(ctx, ws, a); err != nil {
			return err
		}
	}
	admin := queues.Actor{ID: "ann", Name: "Ann Admin", Role: queues.RoleAdmin}
	if _, err := store.UpdateSettings(ctx, ws, admin, queues.SettingsPatch{
		AutoOwnership: map[string]bool{"chat": true, "email": false, "twitter": false},
	}); err != nil {
		return err
	}
	for _, c := range demoConvs {
		r, err := store.Inbound(ctx, ws, queues.Inbound{
			Conversation: c.id, MessageID: c.id + "-m1", Channel: c.channel,
			Customer: c.customer, Subject: c.subject, Text: c.text,
		})
		if err != nil {
			return fmt.Errorf("conversation %s: %w", c.id, err)
		}
		if c.owner != "" {
			r, err = store.Assign(ctx, ws, admin, c.id, c.owner, r.Conv.Version)
			if err != nil {
				return fmt.Errorf("assign %s: %w", c.id, err)
			}
		}
		if c.queue != queues.QueueNew {
			if _, err := store.Move(ctx, ws, admin, c.id, c.queue, r.Conv.Version); err != nil {
				return fmt.Errorf("move %s: %w", c.id, err)
			}
		}
	}
	return nil
}

// printDemoLinks prints ready-to-open console links for two agents and the
// admin, with tokens valid for 12 hours.
func printDemoLinks(w io.Writer, cfg serveConfig) error {
	fmt.Fprintf(w, "\nDemo workspace %q is ready. Open these in separate browser windows\n(or private windows: each link signs in a different person):\n\n", demoWorkspace)
	for _, id := range []string{"al", "bea", "ann"} {
		i := slices.IndexFunc(demoAgents, func(a queues.Agent) bool { return a.ID == id })
		a := demoAgents[i]
		t, err := hub.Mint([]byte(cfg.Secret), hub.Identity{
			Workspace: demoWorkspace, Agent: a.ID, Name: a.Name, Role: a.Role,
		}, 12*time.Hour)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %-10s (%s)\n  %s\n\n", a.Name, a.Role, consoleLink(cfg.PublicURL, t))
	}
	fmt.Fprintf(w, "Metrics: %s/metrics    Health: %s/healthz\nStop with Ctrl-C.\n", cfg.PublicURL, cfg.PublicURL)
	return nil
}
