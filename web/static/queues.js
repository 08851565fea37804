// The queue column: New and Pending as tabs with counts, an ownership
// filter per queue, and the live list of conversations.

import { h, icon, channelIcon } from "./dom.js";
import { relative, until, absolute, ownerLabel, QUEUE_NAMES } from "./format.js";
import { dot, sortedAgents } from "./team.js";
import { popover, refreshPopover } from "./menu.js";

const FILTERS = [
  ["all", "All"],
  ["unowned", "Unowned"],
  ["mine", "Owned by me"],
  ["others", "Owned by others"],
  ["agents", "Named agents"],
];

const COUNT_KEY = { all: "total", unowned: "unowned", mine: "mine", others: "others" };

/** One queue: its view, its filter bar and its list. */
export class QueuePanel {
  constructor(ctx, queue, root) {
    this.ctx = ctx;
    this.queue = queue;
    this.root = root;
    this.filter = loadFilter(ctx, queue);
    this.view = ctx.client.view({ queue, filter: this.filter, limit: 50 });
    this.view.on("change", () => this.render());
    ctx.client.on("presence", () => this.renderList());
    ctx.client.on("agent", () => this.renderList());
    ctx.client.on("hello", () => this.render());

    this.select = h(
      "select",
      {
        class: "filter-select",
        dataset: { testid: "filter-select", queue },
        "aria-label": `Filter ${QUEUE_NAMES[queue]} by owner`,
        onchange: () => this.setKind(this.select.value),
      },
      FILTERS.map(([kind, label]) => h("option", { value: kind }, label)),
    );
    this.agentsBtn = h("button", {
      class: "filter-agents",
      dataset: { testid: "filter-agents", queue },
      "aria-haspopup": "true",
      onclick: () => this.openAgents(),
    });
    this.summary = h("span", { class: "filter-summary", dataset: { testid: "queue-count", queue } });
    this.list = h("div", { class: "conv-list", role: "list", dataset: { testid: queue === "new" ? "queue-new" : "queue-pending", queue } });
    root.append(
      h("div", { class: "filter-bar" }, h("label", { class: "filter-label" }, "Owner"), this.select, this.agentsBtn, this.summary),
      this.list,
    );
    this.render();
  }

  setKind(kind) {
    if (kind === "agents") {
      const agents = this.filter.kind === "agents" ? this.filter.agents : [];
      this.setFilter({ kind, agents });
      if (!agents.length) this.openAgents();
      return;
    }
    this.setFilter({ kind });
  }

  setFilter(filter) {
    this.filter = filter;
    saveFilter(this.ctx, this.queue, filter);
    // Named agents with nobody chosen would select nothing; keep the old
    // subscription until someone is picked.
    if (filter.kind === "agents" && !filter.agents.length) {
      this.render();
      return;
    }
    this.view.setFilter(filter);
  }

  openAgents() {
    const build = (close) => {
      const chosen = new Set(this.filter.kind === "agents" ? this.filter.agents : []);
      return h(
        "div",
        { class: "agent-picker" },
        h("div", { class: "menu-title" }, "Conversations owned by"),
        sortedAgents(this.ctx.client).map((a) =>
          h(
            "label",
            { class: "menu-item check", dataset: { testid: "filter-agent-option", agentId: a.id } },
            h("input", {
              type: "checkbox",
              checked: chosen.has(a.id),
              onchange: (ev) => {
                if (ev.target.checked) chosen.add(a.id);
                else chosen.delete(a.id);
                this.setFilter({ kind: "agents", agents: [...chosen] });
                refreshPopover(this.agentsBtn, build);
              },
            }),
            dot(a),
            h("span", { class: "grow" }, a.name, a.id === this.ctx.client.me?.id ? " (you)" : ""),
          ),
        ),
        h(
          "div",
          { class: "menu-foot" },
          h("button", { class: "btn btn-small", onclick: () => close() }, "Done"),
        ),
      );
    };
    popover(this.agentsBtn, build, { testid: "filter-agents-menu" });
  }

  /** The counts for the tab label: what the current filter shows. */
  get count() {
    return this.view.counts.matching ?? 0;
  }

  render() {
    const { counts } = this.view;
    this.select.value = this.filter.kind;
    for (const opt of this.select.options) {
      const [, label] = FILTERS.find(([k]) => k === opt.value);
      const key = COUNT_KEY[opt.value];
      opt.textContent = key && this.view.status !== "loading" ? `${label} (${counts[key] ?? 0})` : label;
    }
    const chosen = this.filter.kind === "agents" ? this.filter.agents : [];
    this.agentsBtn.hidden = this.filter.kind !== "agents";
    this.agentsBtn.replaceChildren(
      chosen.length
        ? chosen.map((id) => this.ctx.client.agent(id).name).join(", ")
        : "Choose agents…",
      icon("chevron"),
    );
    this.summary.textContent = this.view.status === "loading" ? "" : `${counts.matching ?? 0} of ${counts.total ?? 0}`;
    this.renderList();
    this.ctx.onCounts?.();
  }

  renderList() {
    const v = this.view;
    const { client } = this.ctx;
    this.list.classList.toggle("stale", v.status === "stale");
    this.list.setAttribute("aria-busy", v.status === "loading" ? "true" : "false");
    if (v.status === "loading" && !v.items.length) {
      this.list.replaceChildren(...skeleton());
      return;
    }
    if (v.status === "error") {
      this.list.replaceChildren(
        h("div", { class: "empty" }, h("p", {}, "This list could not be loaded."), h("p", { class: "muted" }, v.error?.message || "")),
      );
      return;
    }
    if (this.filter.kind === "agents" && !this.filter.agents.length) {
      this.list.replaceChildren(h("div", { class: "empty" }, h("p", {}, "Pick one or more agents to see what they own.")));
      return;
    }
    if (!v.items.length) {
      this.list.replaceChildren(emptyState(this.queue, this.filter));
      return;
    }
    const selected = this.ctx.selected();
    const rows = v.items.map((c) => this.row(c, c.id === selected));
    if (v.next) {
      rows.push(
        h(
          "button",
          {
            class: "load-more",
            dataset: { testid: "load-more", queue: this.queue },
            onclick: () => v.loadMore().catch((err) => this.ctx.toast(err.message, "error")),
          },
          "Load more",
        ),
      );
    }
    this.list.replaceChildren(...rows);
  }

  row(c, selected) {
    const { client } = this.ctx;
    const owner = c.owner ? client.agent(c.owner) : null;
    return h(
      "div",
      {
        class: `conv-row${selected ? " selected" : ""}${c.owner === client.me?.id ? " mine" : ""}`,
        role: "listitem",
        tabindex: "0",
        dataset: { testid: "conv-row", convId: c.id, owner: c.owner || "", queue: c.queue },
        onclick: () => this.ctx.open(c.id, c),
        onkeydown: (ev) => {
          if (ev.key === "Enter") this.ctx.open(c.id, c);
        },
      },
      h("div", { class: "row-channel", title: c.channel }, channelIcon(c.channel)),
      h(
        "div",
        { class: "row-main" },
        h(
          "div",
          { class: "row-top" },
          h("span", { class: "row-customer", dataset: { testid: "conv-customer" } }, c.customer || "Unknown customer"),
          h(
            "time",
            { class: "row-time", datetime: c.last_activity, title: absolute(c.last_activity), dataset: { rel: c.last_activity } },
            relative(c.last_activity),
          ),
        ),
        h(
          "div",
          { class: "row-text" },
          c.subject ? h("span", { class: "row-subject" }, c.subject) : null,
          c.preview ? h("span", { class: "row-preview" }, c.subject ? ` — ${c.preview}` : c.preview) : null,
          !c.subject && !c.preview ? h("span", { class: "row-preview" }, "No messages yet") : null,
        ),
        h(
          "div",
          { class: "row-bottom" },
          h(
            "span",
            { class: `owner-label${c.owner ? "" : " unowned"}`, dataset: { testid: "owner-label" } },
            owner ? dot(owner) : null,
            ownerLabel(c, (id) => client.agent(id).name),
          ),
          c.boomerang
            ? h(
                "span",
                { class: "pill pill-boomerang", title: `Boomerang: back to New ${absolute(c.boomerang)}`, dataset: { until: c.boomerang } },
                icon("boomerang"),
                until(c.boomerang),
              )
            : null,
        ),
      ),
    );
  }
}

function emptyState(queue, filter) {
  const msg = {
    all: queue === "new" ? "No new conversations. Nice work." : "Nothing is pending.",
    unowned: "No unowned conversations here.",
    mine: "You own nothing in this queue.",
    others: "Nobody else owns anything here.",
    agents: "They own nothing in this queue.",
  }[filter.kind];
  return h("div", { class: "empty", dataset: { testid: "queue-empty" } }, icon("inbox", "icon icon-lg"), h("p", {}, msg));
}

function skeleton() {
  return Array.from({ length: 6 }, () =>
    h("div", { class: "conv-row skeleton" }, h("div", { class: "sk sk-icon" }), h("div", { class: "row-main" }, h("div", { class: "sk sk-line" }), h("div", { class: "sk sk-line short" }))),
  );
}

function storageKey(ctx, queue) {
  return `presencehub.filter.${ctx.claims?.ws || ""}.${ctx.claims?.sub || ""}.${queue}`;
}

function loadFilter(ctx, queue) {
  try {
    const f = JSON.parse(localStorage.getItem(storageKey(ctx, queue)) || "null");
    if (f && FILTERS.some(([k]) => k === f.kind)) return { kind: f.kind, ...(f.kind === "agents" ? { agents: f.agents || [] } : {}) };
  } catch {
    // A broken stored value falls back to the default.
  }
  return { kind: "all" };
}

function saveFilter(ctx, queue, filter) {
  try {
    localStorage.setItem(storageKey(ctx, queue), JSON.stringify(filter));
  } catch {
    // Private windows may refuse storage; the filter still works for now.
  }
}
