package web

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestBrowser runs the console in headless Chromium against the real server
// binary with its demo workspace (admin ann; agents al, bea and cy;
// conversations c1 to c12), one browser context per person, and checks what
// each person sees through the data-testid hooks of index.html. Each subtest
// has a server of its own; they share the binary and the browser.
//
// The demo's queues: New holds c1, c4, c12 (unowned), c2, c6 (bea), c3 (al)
// and c5 (cy); Pending holds c7 (bea), c8 (al) and c9 (unowned).
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server and a browser")
	}
	findChromium(t)
	bin := buildServer(t, t.TempDir())
	b := startBrowser(t)

	t.Run("AssignShowsOnTheNewOwnersScreen", func(t *testing.T) {
		srv := startHub(t, bin)
		al := b.open(t, srv, "al")
		bea := b.open(t, srv, "bea")
		unread := bea.notifCount()

		// Al opens Dana Whitfield's conversation and gives it to Bea with
		// the owner dropdown.
		al.openConversation("c1")
		al.click(`[data-testid="owner-select"]`)
		al.click(`[data-testid="owner-menu"] [data-testid="owner-option"][data-agent-id="bea"]`)
		al.waitText(`[data-testid="conversation"] [data-testid="owner-label"]`, "Waiting on Bea Chen")

		// Bea sees it in New as hers, and one more unread notification.
		bea.waitRow("new", "c1", "bea", "Waiting on Bea Chen")
		bea.eventually("the bell counts the assignment", func() error {
			if got, want := bea.notifCount(), unread+1; got != want {
				return fmt.Errorf("got %d unread, want %d", got, want)
			}
			return nil
		})
		bea.click(`[data-testid="notif-bell"]`)
		bea.waitText(`[data-testid="notif-panel"] [data-testid="notif-item"][data-conv-id="c1"] .notif-text`,
			"Al Rivera assigned you Dana Whitfield")
		bea.waitJS("the summary names Al", `(() => {
			const s = document.querySelector('[data-testid="notif-summary"]').textContent;
			return s.includes("Al Rivera (1)") ? "" : "got " + JSON.stringify(s) + ", want it to name Al Rivera (1)";
		})()`)

		if got := srv.conversation(t, "c1").Owner; got != "bea" {
			t.Errorf("the hub's owner of c1: got %q, want bea", got)
		}
	})

	t.Run("AssignToAnOfflineAgentWaitsForThem", func(t *testing.T) {
		srv := startHub(t, bin)
		al := b.open(t, srv, "al")

		// Cy is offline: Al may still give him Dana Whitfield, and is told
		// Cy hears of it when he is back.
		al.waitDot("cy", "offline")
		al.openConversation("c1")
		al.click(`[data-testid="owner-select"]`)
		al.click(`[data-testid="owner-menu"] [data-testid="owner-option"][data-agent-id="cy"]`)
		al.waitText(`[data-testid="conversation"] [data-testid="owner-label"]`, "Waiting on Cy Okafor")
		al.waitText(`[data-testid="pane-notice"]`, "Cy Okafor is offline and will be notified when they are back.")

		// When Cy signs in, the assignments made while he was away come as
		// one grouped list: Ann's from the demo's seed and Al's.
		cy := b.open(t, srv, "cy")
		cy.waitRow("new", "c1", "cy", "Waiting on Cy Okafor")
		if got := cy.notifCount(); got != 2 {
			t.Errorf("Cy's bell: got %d unread, want 2", got)
		}
		cy.click(`[data-testid="notif-bell"]`)
		cy.waitText(`[data-testid="notif-summary"]`,
			"2 conversations assigned to you while you were away: Ann Admin (1), Al Rivera (1)")
		cy.waitText(`[data-testid="notif-panel"] [data-testid="notif-item"][data-conv-id="c1"] .notif-text`,
			"Al Rivera assigned you Dana Whitfield")
	})

	t.Run("RemoveOwnershipShowsOnAgentsScreens", func(t *testing.T) {
		srv := startHub(t, bin)
		ann := b.open(t, srv, "ann")
		al := b.open(t, srv, "al")
		al.waitHidden(`[data-testid="remove-ownership"]`)

		ann.openSettings()
		ann.toggleSwitch("settings-remove-ownership", "Remove Ownership", true)

		al.waitText(`[data-testid="remove-ownership"]`, "Remove Ownership: on")
		al.waitJS("the client has the setting", `(() => {
			const got = window.presencehub.settings.remove_ownership;
			return got === true ? "" : "got remove_ownership " + got + " in the client, want true";
		})()`)
		if s := srv.settings(t); !s.RemoveOwnership {
			t.Errorf("the hub's remove_ownership: got false, want true")
		}

		// And off again: the notice goes away.
		ann.toggleSwitch("settings-remove-ownership", "Remove Ownership", false)
		al.waitHidden(`[data-testid="remove-ownership"]`)
	})

	t.Run("OfflineAgentLosesNewConversationsKeepsPending", func(t *testing.T) {
		srv := startHub(t, bin)
		ann := b.open(t, srv, "ann")
		al := b.open(t, srv, "al")
		bea := b.open(t, srv, "bea")

		const grace = 2 * time.Second
		ann.openSettings()
		ann.toggleSwitch("settings-remove-ownership", "Remove Ownership", true)
		ann.typeNumber("settings-offline-grace", int(grace/time.Second))
		ann.waitText(`[data-testid="admin-log"]`, "Ann Admin changed Offline grace from 60 to 2")
		if s := srv.settings(t); !s.RemoveOwnership || s.OfflineGrace != 2 {
			t.Fatalf("the hub's settings: got remove_ownership %v, offline_grace %d; want true, 2", s.RemoveOwnership, s.OfflineGrace)
		}

		al.waitDot("bea", "online")
		al.waitRow("new", "c2", "bea", "Waiting on Bea Chen")
		al.waitRow("new", "c6", "bea", "Waiting on Bea Chen")

		// Bea closes her window. After the grace, Al sees her gray, and her
		// conversations in New unowned; the pending one stays hers.
		closed := time.Now()
		bea.close()
		al.waitDot("bea", "offline")
		waited := time.Since(closed)
		if waited < grace {
			t.Errorf("Bea offline on Al's screen: got %v after she closed her window, want at least the %v grace", waited, grace)
		}
		t.Logf("Bea offline on Al's screen %v after she closed her window (grace %v)", waited.Round(10*time.Millisecond), grace)
		al.waitJS("Bea's dot is gray", `(() => {
			const dot = document.querySelector('[data-testid="agent-row"][data-agent-id="bea"] [data-testid="agent-dot"]');
			const got = getComputedStyle(dot).backgroundColor;
			return got === "rgb(152, 162, 179)" ? "" : "got background " + got + ", want rgb(152, 162, 179) (gray)";
		})()`)
		al.waitRow("new", "c2", "", "Unowned")
		al.waitRow("new", "c6", "", "Unowned")
		al.eventually("no row in New is Bea's", func() error {
			rows, err := al.rows("new")
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r.Owner == "bea" {
					return fmt.Errorf("got %s owned by bea (%q), want none", r.ID, r.Label)
				}
			}
			return nil
		})
		al.openConversation("c2")
		al.waitText(`[data-testid="history-entry"][data-reason="logout"]`, "Auto Unassignment: Bea Chen logged out")

		al.click(`[data-testid="queue-tab-pending"]`)
		al.waitRow("pending", "c7", "bea", "Owned by Bea Chen")

		// The hub agrees.
		if got := srv.ids(t, "al", "new", "agents", "bea"); len(got) != 0 {
			t.Errorf("the hub's New owned by bea: got %v, want none", got)
		}
		if got := srv.ids(t, "al", "pending", "agents", "bea"); !slices.Equal(got, []string{"c7"}) {
			t.Errorf("the hub's Pending owned by bea: got %v, want [c7]", got)
		}
	})

	t.Run("ClosingOneOfTwoWindowsChangesNothing", func(t *testing.T) {
		srv := startHub(t, bin)
		const grace = 2 * time.Second
		srv.api(t, "ann", http.MethodPatch, "/api/v1/settings",
			map[string]any{"remove_ownership": true, "offline_grace": int(grace / time.Second)}, nil)
		al := b.open(t, srv, "al")
		laptop := b.open(t, srv, "bea")
		phone := b.open(t, srv, "bea")
		al.waitDot("bea", "online")

		// Presence is per agent: with her phone still connected, Bea
		// closing her laptop is nothing to Al, past the grace too.
		laptop.close()
		al.holds(grace+time.Second, "Bea stays online and keeps c2", func() error {
			if err := al.dotIs("bea", "online"); err != nil {
				return err
			}
			r, err := al.row("new", "c2")
			if err != nil {
				return err
			}
			if r.Owner != "bea" {
				return fmt.Errorf("got c2 owned by %q, want bea", r.Owner)
			}
			return nil
		})

		phone.close()
		al.waitDot("bea", "offline")
		al.waitRow("new", "c2", "", "Unowned")
	})

	t.Run("FiltersShowWhatTheHubSelects", func(t *testing.T) {
		srv := startHub(t, bin)
		al := b.open(t, srv, "al")

		al.setFilter("new", "unowned")
		al.matchHub(srv, "new", "unowned")
		al.setFilter("new", "mine")
		al.matchHub(srv, "new", "mine")
		al.setFilter("new", "agents", "bea", "cy")
		al.matchHub(srv, "new", "agents", "bea", "cy")

		// A filtered list follows changes live: c1 enters Al's "named
		// agents" list when it is given to Cy, and c4 his "mine".
		srv.assign(t, "ann", "c1", "cy")
		al.matchHub(srv, "new", "agents", "bea", "cy")
		al.setFilter("new", "mine")
		srv.assign(t, "ann", "c4", "al")
		al.matchHub(srv, "new", "mine")

		al.click(`[data-testid="queue-tab-pending"]`)
		al.setFilter("pending", "unowned")
		al.matchHub(srv, "pending", "unowned")
		al.setFilter("pending", "agents", "bea")
		al.matchHub(srv, "pending", "agents", "bea")
	})

	t.Run("ReconnectShowsWhatWasMissed", func(t *testing.T) {
		srv := startHub(t, bin)
		al := b.open(t, srv, "al")
		bea := b.open(t, srv, "bea")
		al.waitRow("new", "c1", "", "Unowned")
		al.waitRow("new", "c2", "bea", "Waiting on Bea Chen")
		// A page that reloads loses this.
		if _, err := eval[bool](al, `window.sameDocument = true`); err != nil {
			t.Fatal(err)
		}
		// A reconnect inside the offline grace is invisible to others:
		// Bea's console records every presence change of Al it is told.
		bea.waitDot("al", "online")
		if _, err := eval[bool](bea, `(window.alPresence = [], window.presencehub.on("presence", (ev) => {
			if (ev.presence?.agent === "al") window.alPresence.push(ev.presence.to);
		}), true)`); err != nil {
			t.Fatal(err)
		}

		al.setOffline(true)
		al.waitVisible(`[data-testid="banner-disconnected"]`)
		al.waitText(`[data-testid="banner-disconnected"]`, "Disconnected")
		al.waitJS("the pill says offline", `(() => {
			const s = document.querySelector('[data-testid="conn-state"]').dataset.status;
			return s === "waiting" || s === "connecting" ? "" : "got status " + s + ", want waiting or connecting";
		})()`)
		al.screenshot("console-agent-disconnected.png")

		// Changes while Al is away: c1 goes to Cy, c2 loses its owner.
		srv.assign(t, "ann", "c1", "cy")
		srv.assign(t, "ann", "c2", "")
		if r, err := al.row("new", "c1"); err != nil || r.Label != "Unowned" {
			t.Errorf("while disconnected, c1 on Al's screen: got %+v (%v), want it still Unowned", r, err)
		}
		al.waitVisible(`[data-testid="banner-disconnected"]`)

		al.setOffline(false)
		al.waitHidden(`[data-testid="banner-disconnected"]`)
		al.waitJS("the pill says live", `(() => {
			const s = document.querySelector('[data-testid="conn-state"]').dataset.status;
			return s === "open" ? "" : "got status " + s + ", want open";
		})()`)
		al.waitRow("new", "c1", "cy", "Waiting on Cy Okafor")
		al.waitRow("new", "c2", "", "Unowned")
		if same, err := eval[bool](al, `window.sameDocument === true`); err != nil || !same {
			t.Errorf("after the reconnect: got a reloaded page (%v), want the same one", err)
		}
		bea.waitDot("al", "online")
		if got, err := eval[[]string](bea, `window.alPresence`); err != nil || len(got) != 0 {
			t.Errorf("Al's presence changes on Bea's console during his drop: got %v (%v), want none", got, err)
		}
	})

	t.Run("Screenshots", func(t *testing.T) {
		srv := startHub(t, bin)
		ann := b.open(t, srv, "ann")
		al := b.open(t, srv, "al")
		b.open(t, srv, "bea")

		ann.openSettings()
		ann.toggleSwitch("settings-remove-ownership", "Remove Ownership", true)
		ann.screenshot("console-admin-settings.png")

		al.waitDot("bea", "online")
		al.waitVisible(`[data-testid="remove-ownership"]`)
		al.openConversation("c3")
		al.waitVisible(`[data-testid="history-entry"]`)
		al.screenshot("console-agent.png")
	})
}
