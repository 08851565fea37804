package web

// A person's console in the browser tests: signing in, acting as a person
// does (clicks, keys, picks) and reading what the screen shows through the
// data-testid hooks that index.html lists.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// console is one person's console in a browser context of its own (its own
// cookies and storage, as a separate browser profile would have).
type console struct {
	t      *testing.T
	who    string
	ctx    context.Context
	cancel context.CancelFunc
}

// open signs who in to the console at srv and waits until it is live.
func (b *browser) open(t *testing.T, srv *hubServer, who string) *console {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	c := &console{t: t, who: who, ctx: ctx, cancel: cancel}
	t.Cleanup(cancel)
	if err := firstRun(ctx, cancel, startTimeout); err != nil {
		t.Fatalf("opening a tab for %s: %v", who, err)
	}
	c.watchErrors()
	c.do("open the console",
		chromedp.EmulateViewport(1440, 900),
		chromedp.Navigate(srv.base+"/#token="+srv.token(t, who)),
	)
	c.waitJS("the console is live", `(() => {
		const app = document.querySelector('[data-testid="app"]');
		if (!app || !app.checkVisibility()) return "got the console hidden, want it on screen";
		const conn = document.querySelector('[data-testid="conn-state"]').dataset.status;
		if (conn !== "open") return "got connection " + conn + ", want open";
		const me = document.querySelector('[data-testid="me"]').dataset.agentId;
		return me === `+jsString(who)+` ? "" : "got signed in as " + me + ", want `+who+`";
	})()`)
	return c
}

// watchErrors fails the test, when it ends, with every uncaught exception
// and console.error of the page: each is a bug of the console, whatever
// the screen shows.
func (c *console) watchErrors() {
	c.t.Helper()
	var (
		mu       sync.Mutex // guards problems
		problems []string
	)
	// fn runs in the tab's event loop: it only records.
	fn := func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			p = fmt.Sprintf("%s (%s:%d)", d.Text, d.URL, d.LineNumber+1)
			if d.Exception != nil && d.Exception.Description != "" {
				p += ": " + d.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError {
				return
			}
			var args []string
			for _, a := range ev.Args {
				if a.Description != "" {
					args = append(args, a.Description)
				} else {
					args = append(args, string(a.Value))
				}
			}
			p = "console.error: " + strings.Join(args, " ")
		default:
			return
		}
		mu.Lock()
		problems = append(problems, p)
		mu.Unlock()
	}
	if err := chromedp.Listen(c.ctx, fn); err != nil {
		c.t.Fatalf("%s's console: listening for errors: %v", c.who, err)
	}
	c.t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			c.t.Errorf("%s's console: got %s, want no errors in the page", c.who, p)
		}
	})
}

// close closes the person's browser context, as closing the window does.
func (c *console) close() {
	c.cancel()
}

// do runs actions in the console, bounded by stepTimeout.
func (c *console) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		c.t.Fatalf("%s's console: %s: %v", c.who, what, err)
	}
}

// eval evaluates a JavaScript expression in the console and decodes its
// value into T.
func eval[T any](c *console, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// click clicks the element that css selects, as a mouse would, once it is
// visible. The console redraws lists and panels on live events, which can
// take the element away between finding it and clicking it; then no mouse
// event was sent, and the click is tried again on the element drawn anew.
func (c *console) click(css string) {
	c.t.Helper()
	c.eventually("click "+css, func() error {
		ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
		defer cancel()
		return chromedp.Do(ctx, chromedp.Click(chromedp.CSS(css)))
	})
}

// waitJS waits until expr, a JavaScript expression, is "": it returns what
// is wrong otherwise, which the failure reports.
func (c *console) waitJS(what, expr string) {
	c.t.Helper()
	c.eventually(what, func() error {
		msg, err := eval[string](c, expr)
		if err != nil {
			return err
		}
		if msg != "" {
			return errors.New(msg)
		}
		return nil
	})
}

// eventually is the package's eventually, naming the console.
func (c *console) eventually(what string, check func() error) {
	c.t.Helper()
	eventually(c.t, stepTimeout, c.who+"'s console: "+what, check)
}

// screenshot saves a PNG of the whole page as name in the artifact
// directory.
func (c *console) screenshot(name string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Fatalf("%s's console: screenshot: %v", c.who, err)
	}
	dir := artifactDir(c.t)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.t.Logf("screenshot of %s's console: %s", c.who, path)
	return path
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
