// The conversation pane: header, owner dropdown, queue actions and
// boomerang, the message thread, the reply box and the audit trail.

import { h, icon, channelIcon, fill } from "./dom.js";
import { relative, until, absolute, clock, ownerLabel, historyText, QUEUE_NAMES, STATUS_NAMES } from "./format.js";
import { dot, avatar, sortedAgents } from "./team.js";
import { popover } from "./menu.js";

const PRESETS = [
  ["15m", "15 minutes"],
  ["1h", "1 hour"],
  ["4h", "4 hours"],
  ["24h", "24 hours"],
];

// How often an open conversation that no view delivers events for (say,
// a resolved one opened from a notification) is re-read.
const POLL_EVERY = 15_000;

export class ConversationPane {
  constructor(ctx, root) {
    this.ctx = ctx;
    this.root = root;
    this.id = "";
    this.conv = null;
    this.history = [];
    this.messages = [];
    this.loading = false;
    this.error = null;
    this.notice = null; // {text, kind} shown under the toolbar
    this.busy = false;
    this.draft = new Map(); // unsent reply text per conversation
    this.reloadTimer = 0;
    this.loadSeq = 0;

    const { client } = ctx;
    client.on("conversation", (ev) => this.onEvent(ev));
    client.on("presence", () => this.renderHeader());
    client.on("agent", () => this.renderHeader());
    client.on("settings", () => this.renderComposer());
    client.on("hello", () => this.id && this.load({ quiet: true }));
    setInterval(() => {
      if (this.id && client.open && !ctx.inViews(this.id)) this.load({ quiet: true });
    }, POLL_EVERY);

    this.renderEmpty();
  }

  /** Shows conversation id; hint is the row's copy, shown until it loads. */
  open(id, hint) {
    if (this.id && this.textarea) this.draft.set(this.id, this.textarea.value);
    this.id = id;
    this.conv = hint || null;
    this.history = [];
    this.messages = [];
    this.notice = null;
    this.error = null;
    this.build();
    this.load();
  }

  close() {
    if (this.id && this.textarea) this.draft.set(this.id, this.textarea.value);
    this.id = "";
    this.conv = null;
    this.renderEmpty();
  }

  async load({ quiet = false } = {}) {
    const id = this.id;
    const n = ++this.loadSeq;
    if (!quiet) {
      this.loading = true;
      this.renderBody();
    }
    try {
      const res = await this.ctx.client.request("conversation", { conv: id });
      if (id !== this.id || n !== this.loadSeq) return;
      this.conv = res.conv;
      this.history = res.history || [];
      this.messages = (res.messages || []).slice().sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
      this.error = null;
    } catch (err) {
      if (id !== this.id || n !== this.loadSeq) return;
      if (quiet && err.code === "disconnected") return;
      this.error = err;
    } finally {
      if (id === this.id && n === this.loadSeq) this.loading = false;
    }
    // Re-render in place: rebuilding the pane would take the focus and
    // the caret out of a reply being typed.
    this.renderHeader();
    this.renderBody();
    this.renderComposer();
  }

  onEvent(ev) {
    if (!this.id || ev.conv?.id !== this.id) return;
    if (!this.conv || (ev.conv.version ?? 0) >= (this.conv.version ?? 0)) {
      this.conv = ev.conv;
      this.renderHeader();
    }
    // The event carries the conversation, not its new messages and audit
    // entries: fetch those, once per burst of events.
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.load({ quiet: true }), 250);
  }

  // --- rendering -------------------------------------------------------

  renderEmpty() {
    this.textarea = null;
    this.composerEl = null;
    this.headerEl = null;
    this.threadEl = null;
    this.asideEl = null;
    this.noticeEl = null;
    this.root.replaceChildren(
      h(
        "div",
        { class: "pane-empty", dataset: { testid: "conversation-empty" } },
        icon("inbox", "icon icon-xl"),
        h("h2", {}, "No conversation selected"),
        h("p", { class: "muted" }, "Pick a conversation from the queue to read it, reply, or set its owner."),
      ),
    );
  }

  build() {
    if (!this.id) return this.renderEmpty();
    this.textarea = h("textarea", {
      class: "reply-text",
      rows: "3",
      dataset: { testid: "reply-text" },
      onkeydown: (ev) => {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
          ev.preventDefault();
          this.send();
        }
      },
    });
    this.textarea.value = this.draft.get(this.id) ?? "";
    this.hintEl = h("div", { class: "composer-hint", dataset: { testid: "auto-ownership-hint" }, hidden: true });
    this.replyAs = h("span", { class: "muted" });
    this.headerEl = h("div", { class: "pane-header" });
    this.noticeEl = h("div", { class: "pane-notice-slot" });
    this.threadEl = h("div", { class: "thread", dataset: { testid: "thread" } });
    this.asideEl = h("aside", { class: "details" });
    this.composerEl = h(
      "div",
      { class: "composer" },
      this.hintEl,
      this.textarea,
      h(
        "div",
        { class: "composer-bar" },
        this.replyAs,
        h("span", { class: "grow" }),
        h("button", { class: "btn btn-primary", dataset: { testid: "reply-send" }, onclick: () => this.send() }, icon("send"), "Send"),
      ),
    );
    this.root.replaceChildren(
      h(
        "div",
        { class: "pane", dataset: { testid: "conversation", convId: this.id } },
        this.headerEl,
        this.noticeEl,
        h("div", { class: "pane-body" }, h("div", { class: "pane-main" }, this.threadEl, this.composerEl), this.asideEl),
      ),
    );
    this.renderHeader();
    this.renderBody();
    this.renderComposer();
  }

  renderHeader() {
    if (!this.headerEl || !this.conv) {
      this.headerEl?.replaceChildren(h("div", { class: "pane-title" }, h("div", { class: "sk sk-line" })));
      return;
    }
    const c = this.conv;
    const { client } = this.ctx;
    const owner = c.owner ? client.agent(c.owner) : null;

    this.ownerBtn = h(
      "button",
      {
        class: "owner-btn",
        dataset: { testid: "owner-select", owner: c.owner || "" },
        "aria-haspopup": "listbox",
        disabled: this.busy,
        onclick: () => this.openOwnerMenu(),
      },
      owner ? avatar(owner, "xs") : h("span", { class: "avatar avatar-xs avatar-none" }, icon("user")),
      h("span", { class: "owner-btn-text" }, owner ? owner.name : "Unowned"),
      icon("chevron"),
    );

    const actions = [];
    if (c.queue !== "pending") {
      actions.push(
        h("button", { class: "btn", dataset: { testid: "action-pending" }, disabled: this.busy, onclick: () => this.move("pending") }, icon("pause"), "Move to pending"),
      );
    }
    if (c.queue !== "new") {
      actions.push(
        h("button", { class: "btn", dataset: { testid: "action-new" }, disabled: this.busy, onclick: () => this.move("new") }, icon("inbox"), c.queue === "resolved" ? "Reopen" : "Move to new"),
      );
    }
    if (c.queue !== "resolved") {
      actions.push(
        h("button", { class: "btn btn-primary", dataset: { testid: "action-resolve" }, disabled: this.busy, onclick: () => this.move("resolved") }, icon("check"), "Resolve"),
      );
    }
    this.boomerangBtn = h(
      "button",
      { class: "btn", dataset: { testid: "boomerang" }, disabled: this.busy, "aria-haspopup": "true", onclick: () => this.openBoomerangMenu() },
      icon("boomerang"),
      c.boomerang ? `Back ${until(c.boomerang)}` : "Boomerang",
      icon("chevron"),
    );

    this.headerEl.replaceChildren(
      h(
        "div",
        { class: "pane-title" },
        h("span", { class: "pane-channel", title: c.channel }, channelIcon(c.channel)),
        h(
          "div",
          { class: "pane-title-text" },
          h("h2", { dataset: { testid: "conv-customer" } }, c.customer || "Unknown customer"),
          h(
            "div",
            { class: "pane-sub" },
            c.subject ? h("span", { class: "pane-subject" }, c.subject) : null,
            h("span", { class: "muted" }, `${c.channel} · #${c.id}`),
          ),
        ),
        h("span", { class: `pill pill-queue q-${c.queue}`, dataset: { testid: "conv-queue" } }, QUEUE_NAMES[c.queue] || c.queue),
        h("button", { class: "icon-btn pane-close", title: "Close", onclick: () => this.ctx.open("") }, icon("x")),
      ),
      h(
        "div",
        { class: "toolbar" },
        h("span", { class: "toolbar-label" }, "Owner"),
        this.ownerBtn,
        h("span", { class: `owner-label owner-label-pane${c.owner ? "" : " unowned"}`, dataset: { testid: "owner-label" } }, ownerLabel(c, (id) => client.agent(id).name)),
        h("span", { class: "grow" }),
        actions,
        this.boomerangBtn,
      ),
    );
    this.renderNotice();
    this.renderAside();
  }

  renderNotice() {
    if (!this.noticeEl) return;
    const n = this.notice;
    fill(this.noticeEl, 
      n
        ? h(
            "div",
            { class: `notice notice-${n.kind || "info"}`, role: "status", dataset: { testid: n.kind === "conflict" ? "conflict-notice" : "pane-notice" } },
            h("span", { class: "grow" }, n.text),
            h("button", { class: "icon-btn", title: "Dismiss", onclick: () => { this.notice = null; this.renderNotice(); } }, icon("x")),
          )
        : null,
    );
  }

  renderBody() {
    if (!this.threadEl) return;
    if (this.error) {
      this.threadEl.replaceChildren(
        h(
          "div",
          { class: "empty" },
          h("p", {}, this.error.code === "not_found" ? "This conversation does not exist in your workspace." : "The conversation could not be loaded."),
          h("p", { class: "muted" }, this.error.message),
          h("button", { class: "btn", onclick: () => this.load() }, "Try again"),
        ),
      );
      return;
    }
    if (this.loading && !this.messages.length) {
      this.threadEl.replaceChildren(h("div", { class: "msg-skeleton" }, h("div", { class: "sk sk-block" }), h("div", { class: "sk sk-block right" })));
      return;
    }
    const atBottom = this.threadEl.scrollHeight - this.threadEl.scrollTop - this.threadEl.clientHeight < 40;
    this.threadEl.replaceChildren(
      ...(this.messages.length
        ? this.messages.map((m) => this.message(m))
        : [h("div", { class: "empty muted" }, "No messages yet.")]),
    );
    if (atBottom || !this.threadEl.dataset.scrolled) {
      this.threadEl.scrollTop = this.threadEl.scrollHeight;
      this.threadEl.dataset.scrolled = "1";
    }
    this.renderAside();
  }

  message(m) {
    const customer = m.inbound;
    const who = customer ? this.conv?.customer || m.from?.name || "Customer" : m.from?.name || m.from?.id || "Agent";
    return h(
      "div",
      { class: `msg ${customer ? "msg-in" : "msg-out"}`, dataset: { testid: "message", messageId: m.id } },
      h(
        "div",
        { class: "msg-head" },
        h("span", { class: "msg-who" }, who),
        h("time", { class: "msg-time", datetime: m.at, title: absolute(m.at) }, clock(m.at)),
      ),
      h("div", { class: "msg-text" }, m.text),
    );
  }

  renderAside() {
    if (!this.asideEl || !this.conv) return;
    const c = this.conv;
    const rows = [
      ["Queue", QUEUE_NAMES[c.queue] || c.queue],
      ["Channel", c.channel],
      ["Created", h("span", { title: absolute(c.created_at) }, relative(c.created_at))],
      ["Last activity", h("span", { title: absolute(c.last_activity), dataset: { rel: c.last_activity } }, relative(c.last_activity))],
      c.owner && c.owner_since ? ["Owner since", h("span", { title: absolute(c.owner_since) }, relative(c.owner_since))] : null,
      c.boomerang ? ["Boomerang", h("span", { title: absolute(c.boomerang), dataset: { testid: "boomerang-at" } }, `${absolute(c.boomerang)} (${until(c.boomerang)})`)] : null,
    ].filter(Boolean);
    const entries = this.history.slice().reverse();
    this.asideEl.replaceChildren(
      h("div", { class: "details-section" }, h("div", { class: "section-title" }, "Details"), h("dl", { class: "facts" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
      h(
        "div",
        { class: "details-section grow-section" },
        h("div", { class: "section-title" }, icon("history"), "History"),
        h(
          "ol",
          { class: "history", dataset: { testid: "history" } },
          entries.length
            ? entries.map((e) => {
                const t = historyText(e);
                return h(
                  "li",
                  { class: `hist hist-${t.tone}`, dataset: { testid: "history-entry", reason: e.reason, kind: e.kind } },
                  h("span", { class: "hist-mark" }),
                  h(
                    "div",
                    { class: "hist-body" },
                    h("div", { class: "hist-text" }, t.text),
                    h("div", { class: "hist-meta" }, t.detail, " · ", h("time", { datetime: e.at, title: absolute(e.at) }, clock(e.at))),
                  ),
                );
              })
            : h("li", { class: "muted hist-empty" }, this.loading ? "Loading…" : "No ownership or queue changes yet."),
        ),
      ),
    );
  }

  renderComposer() {
    if (!this.composerEl || !this.conv) return;
    const c = this.conv;
    const { client } = this.ctx;
    const auto = !c.owner && client.settings?.auto_ownership?.[c.channel];
    this.hintEl.hidden = !auto;
    fill(this.hintEl, icon("user"), `Auto-Ownership is on for ${c.channel}: replying makes you the owner.`);
    this.textarea.placeholder = `Reply to ${c.customer || "the customer"}…  (Ctrl+Enter to send)`;
    this.replyAs.textContent = `Replying as ${client.me?.name || ""}`;
  }

  // --- menus -------------------------------------------------------------

  openOwnerMenu() {
    const { client } = this.ctx;
    const c = this.conv;
    popover(
      this.ownerBtn,
      (close) =>
        h(
          "div",
          { class: "owner-menu", role: "listbox" },
          h("div", { class: "menu-title" }, "Set owner"),
          this.ownerItem("", h("span", { class: "avatar avatar-xs avatar-none" }, icon("user")), "Unowned", "Nobody owns it", !c.owner, close),
          h("div", { class: "menu-sep" }),
          sortedAgents(client).map((a) =>
            this.ownerItem(
              a.id,
              dot(a),
              `${a.name}${a.id === client.me?.id ? " (you)" : ""}`,
              a.status === "offline" ? "Offline · notified when back" : STATUS_NAMES[a.status],
              c.owner === a.id,
              close,
            ),
          ),
        ),
      { testid: "owner-menu" },
    );
  }

  ownerItem(id, mark, name, sub, current, close) {
    return h(
      "button",
      {
        class: `menu-item${current ? " current" : ""}`,
        role: "option",
        "aria-selected": current ? "true" : "false",
        dataset: { testid: "owner-option", agentId: id },
        onclick: () => {
          close();
          if (!current) this.setOwner(id);
        },
      },
      mark,
      h("span", { class: "grow" }, h("span", { class: "menu-name" }, name), h("span", { class: "menu-sub" }, sub)),
      current ? icon("check") : null,
    );
  }

  openBoomerangMenu() {
    const c = this.conv;
    const inNew = c.queue === "new";
    popover(
      this.boomerangBtn,
      (close) => {
        const input = h("input", {
          type: "datetime-local",
          class: "input",
          dataset: { testid: "boomerang-custom" },
          min: localInput(new Date(Date.now() + 60_000)),
          value: localInput(new Date(Date.now() + 2 * 86400_000)),
        });
        return h(
          "div",
          { class: "boomerang-menu" },
          h("div", { class: "menu-title" }, inNew ? "Move to Pending, back to New in…" : "Back to New in…"),
          PRESETS.map(([preset, label]) =>
            h(
              "button",
              { class: "menu-item", dataset: { testid: "boomerang-preset", preset }, onclick: () => { close(); this.boomerang({ preset }, label); } },
              icon("clock"),
              h("span", { class: "grow" }, label),
            ),
          ),
          h("div", { class: "menu-sep" }),
          h(
            "div",
            { class: "menu-custom" },
            h("label", { class: "menu-sub" }, "Custom date and time"),
            h(
              "div",
              { class: "row-gap" },
              input,
              h(
                "button",
                {
                  class: "btn btn-small",
                  dataset: { testid: "boomerang-set" },
                  onclick: () => {
                    const at = new Date(input.value);
                    if (isNaN(at)) return input.focus();
                    close();
                    this.boomerang({ at: at.toISOString() }, absolute(at.toISOString()));
                  },
                },
                "Set",
              ),
            ),
          ),
          c.boomerang
            ? [
                h("div", { class: "menu-sep" }),
                h(
                  "button",
                  { class: "menu-item danger", dataset: { testid: "boomerang-cancel" }, onclick: () => { close(); this.cancelBoomerang(); } },
                  icon("x"),
                  h("span", { class: "grow" }, "Cancel boomerang"),
                ),
              ]
            : null,
        );
      },
      { testid: "boomerang-menu", align: "right" },
    );
  }

  // --- actions -------------------------------------------------------------

  async act(fn) {
    if (this.busy) return;
    this.busy = true;
    this.renderHeader();
    try {
      await fn();
    } finally {
      this.busy = false;
      this.renderHeader();
    }
  }

  setOwner(agent) {
    const { client } = this.ctx;
    const c = this.conv;
    return this.act(async () => {
      try {
        if (agent) await client.request("assign", { conv: c.id, agent, version: c.version });
        else await client.request("unassign", { conv: c.id, version: c.version });
        this.notice = null;
        const a = client.agent(agent);
        if (agent && a.status === "offline") this.notice = { text: `${a.name} is offline and will be notified when they are back.`, kind: "info" };
      } catch (err) {
        if (err.code === "conflict") {
          this.notice = {
            kind: "conflict",
            text: "Someone else changed this conversation a moment ago, so the owner was not changed. It has been reloaded: check it and try again.",
          };
        } else {
          this.ctx.toast(`Could not change the owner: ${err.message}`, "error");
        }
      }
      await this.load({ quiet: true });
    });
  }

  move(queue) {
    const c = this.conv;
    return this.act(async () => {
      try {
        await this.ctx.client.request("move", { conv: c.id, queue });
        this.ctx.toast(queue === "resolved" ? `Resolved ${c.customer}` : `Moved ${c.customer} to ${QUEUE_NAMES[queue]}`);
      } catch (err) {
        this.ctx.toast(`Could not move: ${err.message}`, "error");
      }
      await this.load({ quiet: true });
    });
  }

  boomerang(when, label) {
    const c = this.conv;
    const { client } = this.ctx;
    return this.act(async () => {
      try {
        // A boomerang brings a conversation back to New, so one in New
        // goes to Pending first (the usual "snooze").
        if (c.queue === "new") await client.request("move", { conv: c.id, queue: "pending" });
        await client.request("boomerang", { conv: c.id, ...when });
        this.ctx.toast(`${c.customer} comes back to New ${when.preset ? `in ${label}` : `on ${label}`}`);
      } catch (err) {
        this.ctx.toast(`Could not set the boomerang: ${err.field ? `${err.field}: ` : ""}${err.message}`, "error");
      }
      await this.load({ quiet: true });
    });
  }

  cancelBoomerang() {
    const c = this.conv;
    return this.act(async () => {
      try {
        await this.ctx.client.request("cancel_boomerang", { conv: c.id });
        this.ctx.toast("Boomerang cancelled");
      } catch (err) {
        this.ctx.toast(`Could not cancel the boomerang: ${err.message}`, "error");
      }
      await this.load({ quiet: true });
    });
  }

  async send() {
    const text = this.textarea?.value.trim();
    if (!text || !this.conv) return;
    const c = this.conv;
    const ta = this.textarea;
    ta.disabled = true;
    try {
      // A message id makes a retried send idempotent on the hub.
      await this.ctx.client.request("reply", { conv: c.id, text, message_id: messageID() });
      ta.value = "";
      this.draft.delete(c.id);
    } catch (err) {
      this.ctx.toast(`Reply not sent: ${err.message}`, "error");
    } finally {
      ta.disabled = false;
      ta.focus();
    }
    await this.load({ quiet: true });
  }
}

function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function messageID() {
  // crypto.randomUUID needs a secure context; getRandomValues does not.
  const b = crypto.getRandomValues(new Uint8Array(12));
  return "m-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
