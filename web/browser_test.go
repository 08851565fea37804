package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
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

// shownRow is a conversation row as the console shows it.
type shownRow struct {
	ID    string `json:"id"`
	Owner string `json:"owner"`
	Queue string `json:"queue"`
	Label string `json:"label"`
}

// rows returns the rows of a queue's list, top to bottom. It fails when the
// list is not on screen or still loading.
func (c *console) rows(queue string) ([]shownRow, error) {
	type list struct {
		Shown bool       `json:"shown"`
		Busy  bool       `json:"busy"`
		Rows  []shownRow `json:"rows"`
	}
	l, err := eval[list](c, `(() => {
		const list = document.querySelector('[data-testid="queue-`+queue+`"]');
		if (!list) return {shown: false, busy: false, rows: []};
		return {
			shown: list.checkVisibility(),
			busy: list.getAttribute("aria-busy") === "true",
			rows: [...list.querySelectorAll('[data-testid="conv-row"]')].filter((r) => r.checkVisibility()).map((r) => ({
				id: r.dataset.convId,
				owner: r.dataset.owner,
				queue: r.dataset.queue,
				label: r.querySelector('[data-testid="owner-label"]').textContent.trim(),
			})),
		};
	})()`)
	switch {
	case err != nil:
		return nil, err
	case !l.Shown:
		return nil, fmt.Errorf("the %s list is not on screen", queue)
	case l.Busy:
		return nil, fmt.Errorf("the %s list is loading", queue)
	}
	return l.Rows, nil
}

// row returns the row of conversation id in a queue's list.
func (c *console) row(queue, id string) (shownRow, error) {
	rows, err := c.rows(queue)
	if err != nil {
		return shownRow{}, err
	}
	for _, r := range rows {
		if r.ID == id {
			return r, nil
		}
	}
	return shownRow{}, fmt.Errorf("no row %s in the %s list (it shows %v)", id, queue, rowIDs(rows))
}

// waitRow waits until conversation id shows in a queue's list with owner
// (data-owner, "" for none) and the owner label label.
func (c *console) waitRow(queue, id, owner, label string) {
	c.t.Helper()
	c.eventually(fmt.Sprintf("%s in %s reads %q", id, queue, label), func() error {
		r, err := c.row(queue, id)
		if err != nil {
			return err
		}
		if r.Owner != owner || r.Label != label || r.Queue != queue {
			return fmt.Errorf("got owner %q, label %q, queue %s; want %q, %q, %s", r.Owner, r.Label, r.Queue, owner, label, queue)
		}
		return nil
	})
}

func rowIDs(rows []shownRow) []string {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// openConversation clicks a conversation's row in the New or Pending list
// on screen and waits until the pane shows it, loaded.
func (c *console) openConversation(id string) {
	c.t.Helper()
	c.click(`.queue-panel:not([hidden]) [data-testid="conv-row"][data-conv-id="` + id + `"]`)
	c.waitJS("conversation "+id+" is open", `(() => {
		const pane = document.querySelector('[data-testid="conversation"]');
		if (!pane) return "no conversation is open";
		if (pane.dataset.convId !== `+jsString(id)+`) return "conversation " + pane.dataset.convId + " is open";
		if (pane.querySelector(".msg-skeleton, .sk")) return "it is loading";
		return pane.querySelector('[data-testid="owner-select"]:not([disabled])') ? "" : "no owner dropdown";
	})()`)
}

// openSettings opens the admin's settings panel.
func (c *console) openSettings() {
	c.t.Helper()
	c.click(`[data-testid="settings-open"]`)
	c.waitVisible(`[data-testid="settings-panel"]`)
}

// toggleSwitch turns a settings switch on or off by clicking its visible
// track, as a person does (the checkbox itself is visually hidden), and
// waits until the switch shows it and the admin log has the change: the
// hub took it, and the panel has drawn the settings event.
func (c *console) toggleSwitch(testid, name string, on bool) {
	c.t.Helper()
	sel := `[data-testid="` + testid + `"]`
	want := strconv.FormatBool(on)
	if was, err := eval[bool](c, `document.querySelector('`+sel+`').checked`); err != nil || was == on {
		c.t.Fatalf("%s's console: %s: got checked %v (%v) before the click, want %v", c.who, testid, was, err, !on)
	}
	c.click(`label.switch:has(` + sel + `) .switch-track`)
	c.waitJS(testid+" is "+want, `(() => {
		const el = document.querySelector('`+sel+`');
		return el && el.checked === `+want+` ? "" : "got checked " + (el && el.checked) + ", want `+want+`";
	})()`)
	state := map[bool]string{true: "on", false: "off"}[on]
	c.waitText(`[data-testid="admin-log"] li`, c.name()+" turned "+name+" "+state)
}

// name is the display name of the console's person.
func (c *console) name() string {
	return demoPeople[c.who].Name
}

// typeNumber replaces a number field's value by typing n and Enter.
func (c *console) typeNumber(testid string, n int) {
	c.t.Helper()
	sel := `[data-testid="` + testid + `"]`
	c.do("type into "+testid,
		chromedp.Focus(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('`+sel+`').select()`),
		chromedp.KeyEvent(strconv.Itoa(n)+"\r"),
	)
	c.waitJS(testid+" shows "+strconv.Itoa(n), `(() => {
		const el = document.querySelector('`+sel+`');
		return el && el.value === "`+strconv.Itoa(n)+`" ? "" : "got " + (el && el.value) + ", want `+strconv.Itoa(n)+`";
	})()`)
}

// setFilter picks an owner filter for a queue; for "agents", it ticks the
// named agents in the picker that opens.
func (c *console) setFilter(queue, kind string, agents ...string) {
	c.t.Helper()
	sel := `[data-testid="filter-select"][data-queue="` + queue + `"]`
	// A <select>'s own dropdown is drawn by the browser, outside the page:
	// pick the option as the dropdown does, with a change event.
	c.do("choose the "+kind+" filter", chromedp.Evaluate[chromedp.Void](`(() => {
		const el = document.querySelector('`+sel+`');
		el.value = "`+kind+`";
		el.dispatchEvent(new Event("input", {bubbles: true}));
		el.dispatchEvent(new Event("change", {bubbles: true}));
	})()`))
	if kind != "agents" {
		return
	}
	c.waitVisible(`[data-testid="filter-agents-menu"]`)
	for _, a := range agents {
		c.click(`[data-testid="filter-agents-menu"] [data-testid="filter-agent-option"][data-agent-id="` + a + `"]`)
		c.waitJS(a+" is ticked", `document.querySelector('[data-testid="filter-agents-menu"] [data-agent-id="`+a+`"] input').checked ? "" : "got unticked, want ticked"`)
	}
	c.click(`[data-testid="filter-agents-menu"] .menu-foot button`)
	c.waitHidden(`[data-testid="filter-agents-menu"]`)
}

// matchHub waits until a queue's list on screen shows exactly the
// conversations, in the order, that the HTTP API's list with the same
// filter has, and its "N of M" count agrees.
func (c *console) matchHub(srv *hubServer, queue, filter string, agents ...string) {
	c.t.Helper()
	what := fmt.Sprintf("the %s list filtered by %s%v matches the hub", queue, filter, agents)
	c.eventually(what, func() error {
		page := srv.page(c.t, c.who, queue, filter, agents...)
		want := make([]string, len(page.Items))
		for i, it := range page.Items {
			want[i] = it.ID
		}
		rows, err := c.rows(queue)
		if err != nil {
			return err
		}
		if got := rowIDs(rows); !slices.Equal(got, want) {
			return fmt.Errorf("got rows %v, want %v", got, want)
		}
		count, err := eval[string](c, `document.querySelector('[data-testid="queue-count"][data-queue="`+queue+`"]').textContent`)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("%d of %d", page.Counts.Matching, page.Counts.Total); count != want {
			return fmt.Errorf("got count %q, want %q", count, want)
		}
		return nil
	})
	if c.t.Failed() {
		return
	}
	// Every row's label fits the filter (the ids alone could hide a label
	// drawn from stale data).
	rows, err := c.rows(queue)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, r := range rows {
		switch {
		case filter == "unowned" && r.Label != "Unowned",
			filter == "mine" && r.Owner != c.who,
			filter == "agents" && !slices.Contains(agents, r.Owner):
			c.t.Errorf("%s's %s list filtered by %s: row %s reads %q (owner %q)", c.who, queue, filter, r.ID, r.Label, r.Owner)
		}
	}
	if len(rows) == 0 {
		c.t.Logf("%s's %s list filtered by %s is empty", c.who, queue, filter)
	}
}

// page is the first page of a queue through the HTTP API, as who.
func (s *hubServer) page(t *testing.T, who, queue, filter string, agents ...string) apiPage {
	t.Helper()
	q := url.Values{"queue": {queue}, "filter": {filter}, "limit": {"500"}}
	if len(agents) > 0 {
		q.Set("agents", strings.Join(agents, ","))
	}
	var p apiPage
	s.api(t, who, http.MethodGet, "/api/v1/conversations?"+q.Encode(), nil, &p)
	if p.Next != "" {
		t.Fatalf("%s filtered by %s: more than one page", queue, filter)
	}
	return p
}

// ids are the ids of a queue's conversations through the HTTP API.
func (s *hubServer) ids(t *testing.T, who, queue, filter string, agents ...string) []string {
	t.Helper()
	var ids []string
	for _, it := range s.page(t, who, queue, filter, agents...).Items {
		ids = append(ids, it.ID)
	}
	return ids
}

// apiSettings are the workspace settings the tests look at.
type apiSettings struct {
	RemoveOwnership bool `json:"remove_ownership"`
	OfflineGrace    int  `json:"offline_grace"`
}

func (s *hubServer) settings(t *testing.T) apiSettings {
	t.Helper()
	var res struct {
		Settings apiSettings `json:"settings"`
	}
	s.api(t, "al", http.MethodGet, "/api/v1/settings", nil, &res)
	return res.Settings
}

// waitDot waits until every presence dot of agent on screen has status,
// and there is at least one (the team list's).
func (c *console) waitDot(agent, status string) {
	c.t.Helper()
	c.eventually(agent+"'s dot is "+status, func() error { return c.dotIs(agent, status) })
}

// dotIs checks that every presence dot of agent on screen has status, and
// that there is at least one.
func (c *console) dotIs(agent, status string) error {
	msg, err := eval[string](c, `(() => {
		const dots = [...document.querySelectorAll('[data-testid="agent-dot"][data-agent-id="`+agent+`"]')].filter((d) => d.checkVisibility());
		if (!dots.length) return "got no dot of `+agent+` on screen, want one at least";
		const bad = dots.filter((d) => d.dataset.status !== "`+status+`" || !d.classList.contains("dot-`+status+`"));
		return bad.length ? "got " + bad.map((d) => d.dataset.status).join(", ") + ", want `+status+`" : "";
	})()`)
	if err != nil {
		return err
	}
	if msg != "" {
		return errors.New(msg)
	}
	return nil
}

// holds checks that check passes throughout d, every 50 ms.
func (c *console) holds(d time.Duration, what string, check func() error) {
	c.t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := check(); err != nil {
			c.t.Fatalf("%s's console: %s, for %v: %v", c.who, what, d, err)
		}
		<-tick.C
	}
}

// waitText waits until the first element css selects is on screen and its
// text contains want.
func (c *console) waitText(css, want string) {
	c.t.Helper()
	c.waitJS(fmt.Sprintf("%s reads %q", css, want), `(() => {
		const el = document.querySelector(`+jsString(css)+`);
		if (!el || !el.checkVisibility()) return "got it hidden or absent, want it on screen";
		const got = el.textContent.replace(/\s+/g, " ").trim();
		return got.includes(`+jsString(want)+`) ? "" : "got " + JSON.stringify(got) + ", want it to contain " + `+jsString(jsString(want))+`;
	})()`)
}

// waitVisible waits until the element css selects is on screen.
func (c *console) waitVisible(css string) {
	c.t.Helper()
	c.waitJS(css+" is on screen", `(() => {
		const el = document.querySelector(`+jsString(css)+`);
		return el && el.checkVisibility() ? "" : "got it hidden or absent, want it on screen";
	})()`)
}

// waitHidden waits until no element css selects is on screen.
func (c *console) waitHidden(css string) {
	c.t.Helper()
	c.waitJS(css+" is not on screen", `(() => {
		const el = [...document.querySelectorAll(`+jsString(css)+`)].find((e) => e.checkVisibility());
		return el ? "got it on screen (" + JSON.stringify(el.textContent.trim()) + "), want it hidden" : "";
	})()`)
}

// notifCount is the number on the bell, 0 when it shows none.
func (c *console) notifCount() int {
	c.t.Helper()
	s, err := eval[string](c, `(() => {
		const el = document.querySelector('[data-testid="notif-count"]');
		return el && el.checkVisibility() ? el.textContent : "0";
	})()`)
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		c.t.Fatalf("the bell's count %q: %v", s, err)
	}
	return n
}

// setOffline turns the tab's network off or on, as unplugging the cable
// does: new connections fail and the page gets "offline" and "online".
func (c *console) setOffline(offline bool) {
	c.t.Helper()
	rules := []*network.Conditions{} // none: the network as it is
	if offline {
		rules = []*network.Conditions{{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}}
	}
	c.do(fmt.Sprintf("set the network offline=%v", offline), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
			MatchedNetworkConditions: rules,
		})
		if err != nil {
			return err
		}
		_, err = cdp.Call(ctx, t, network.OverrideNetworkState, network.OverrideNetworkStateParams{
			Offline: offline, DownloadThroughput: -1, UploadThroughput: -1,
		})
		return err
	}))
}
