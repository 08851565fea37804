// The admin settings panel. Every change is sent at once with
// update_settings; the hub's settings event then updates every open
// console of the workspace, this one included.

import { h, icon } from "./dom.js";
import { duration, relative, absolute } from "./format.js";

const BOOMERANGS = [
  [0, "None"],
  [900, "15 minutes"],
  [3600, "1 hour"],
  [14400, "4 hours"],
  [86400, "24 hours"],
  [259200, "3 days"],
  [604800, "1 week"],
];

const FIELD_NAMES = {
  remove_ownership: "Remove Ownership",
  offline_grace: "Offline grace",
  idle_away: "Idle → away",
  idle_logout: "Idle → logout",
  default_boomerang: "Default boomerang",
  auto_ownership: "Auto-Ownership",
  release_offline: "Release offline agents' conversations",
};

export class SettingsPanel {
  constructor(ctx, root, openButton) {
    this.ctx = ctx;
    this.root = root;
    this.openButton = openButton;
    this.errors = new Map(); // field -> message
    this.drafts = new Map(); // field -> the value the hub refused, kept on screen
    this.saving = new Set();
    this.saved = new Set();
    this.log = [];
    this.released = null;

    const { client } = ctx;
    openButton.addEventListener("click", () => this.toggle());
    client.on("hello", () => {
      const admin = client.me?.role === "admin";
      openButton.hidden = !admin;
      if (!admin) this.close();
      else if (this.isOpen) this.render();
    });
    client.on("settings", () => {
      if (!this.isOpen) return;
      this.render();
      this.loadLog();
    });
    root.addEventListener("mousedown", (ev) => {
      if (ev.target === root) this.close();
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.isOpen && !document.querySelector(".popover")) this.close();
    });
  }

  get isOpen() {
    return !this.root.hidden;
  }

  toggle() {
    if (this.isOpen) this.close();
    else this.open();
  }

  open() {
    this.root.hidden = false;
    this.errors.clear();
    this.released = null;
    this.render();
    this.loadLog();
  }

  close() {
    this.root.hidden = true;
  }

  async loadLog() {
    try {
      const res = await this.ctx.client.request("admin_log", { limit: 20 });
      this.log = res.entries || [];
      this.renderLog();
    } catch {
      // The log is a convenience; the settings work without it.
    }
  }

  async save(field, patch, draft) {
    this.errors.delete(field);
    this.drafts.delete(field);
    this.saving.add(field);
    this.renderStatus(field);
    try {
      const res = await this.ctx.client.request("update_settings", { settings: patch });
      if (res.settings) this.ctx.client.settings = res.settings;
      this.saved.add(field);
      setTimeout(() => {
        this.saved.delete(field);
        this.renderStatus(field);
      }, 1500);
    } catch (err) {
      const at = (err.field || field).replace(/^settings\./, "").split(".")[0];
      const name = FIELD_NAMES[at] ? at : field;
      // The hub's message may start with the field's own name; the error
      // already sits next to the field.
      this.errors.set(name, (err.message || err.code).replace(new RegExp(`^(settings\\.)?${at}(\\.\\w+)?: `), ""));
      if (draft !== undefined) this.drafts.set(name, draft);
    } finally {
      this.saving.delete(field);
    }
    this.render();
  }

  render() {
    if (!this.isOpen) return;
    const { client } = this.ctx;
    const s = client.settings || {};
    const focused = document.activeElement?.dataset?.testid;
    const keep = focused && this.root.contains(document.activeElement) ? document.activeElement : null;

    const body = h(
      "div",
      { class: "drawer", role: "dialog", "aria-label": "Workspace settings", dataset: { testid: "settings-panel" } },
      h(
        "div",
        { class: "drawer-head" },
        icon("gear"),
        h("h2", {}, "Workspace settings"),
        h("span", { class: "grow" }),
        h("button", { class: "icon-btn", title: "Close", dataset: { testid: "settings-close" }, onclick: () => this.close() }, icon("x")),
      ),
      h(
        "div",
        { class: "drawer-body" },
        section(
          "Routing & Automation",
          this.field(
            "remove_ownership",
            "Remove Ownership",
            "When an agent goes offline, their conversations in New become unowned within 2 minutes. Pending conversations keep their owner; an inbound or boomerang that brings one back to New while its owner is offline unowns it.",
            toggle("settings-remove-ownership", !!s.remove_ownership, (on) => this.save("remove_ownership", { remove_ownership: on })),
            { inline: true },
          ),
          this.field(
            "release_offline",
            "Release offline agents' conversations now",
            "Turning Remove Ownership on does not touch agents who are already offline. This unowns the New conversations of every offline agent now.",
            h(
              "div",
              { class: "row-gap" },
              h("button", { class: "btn", dataset: { testid: "settings-release-offline" }, onclick: () => this.release() }, "Release now"),
              this.released !== null
                ? h("span", { class: "muted", dataset: { testid: "settings-release-result" } }, `${this.released} conversation${this.released === 1 ? "" : "s"} released`)
                : null,
            ),
          ),
        ),
        section(
          "Presence",
          this.field(
            "offline_grace",
            "Offline grace",
            "How long an agent whose last tab closed stays online before going offline (0 to 90 seconds). A reconnect within it goes unnoticed.",
            number("settings-offline-grace", this.shown("offline_grace", s.offline_grace ?? 60), "seconds", 0, 90, 1, (v) => this.save("offline_grace", { offline_grace: v }, v)),
          ),
          this.field(
            "idle_away",
            "Idle → away",
            "Minutes without activity before an agent shows as away (0 = never).",
            number("settings-idle-away", this.shown("idle_away", Math.round((s.idle_away ?? 600) / 60)), "minutes", 0, 1440, 1, (v) => this.save("idle_away", { idle_away: v * 60 }, v)),
          ),
          this.field(
            "idle_logout",
            "Idle → logout",
            "Minutes without activity before an agent is logged out, which counts as going offline (0 = never).",
            number("settings-idle-logout", this.shown("idle_logout", Math.round((s.idle_logout ?? 0) / 60)), "minutes", 0, 1440, 1, (v) => this.save("idle_logout", { idle_logout: v * 60 }, v)),
          ),
        ),
        section(
          "Auto-Ownership",
          h("p", { class: "section-help" }, "Per channel: an agent who replies to an unowned conversation becomes its owner. Owned conversations keep their owner."),
          this.field(
            "auto_ownership",
            null,
            null,
            client.channels.length
              ? h(
                  "div",
                  { class: "channel-list" },
                  client.channels.map((ch) =>
                    h(
                      "div",
                      { class: "channel-row" },
                      h("span", { class: "grow" }, ch),
                      toggle("settings-auto-ownership", !!s.auto_ownership?.[ch], (on) => this.save("auto_ownership", { auto_ownership: { [ch]: on } }), { channel: ch }),
                    ),
                  ),
                )
              : h("p", { class: "muted" }, "No channels yet: they appear when the first conversation of each arrives."),
          ),
        ),
        section(
          "Pending",
          this.field(
            "default_boomerang",
            "Default boomerang",
            "When a conversation is moved to Pending without a boomerang, bring it back to New after this long.",
            boomerangSelect(s.default_boomerang ?? 0, (v) => this.save("default_boomerang", { default_boomerang: v })),
          ),
        ),
        section("Admin log", h("ol", { class: "admin-log", dataset: { testid: "admin-log" } })),
      ),
    );
    this.root.replaceChildren(body);
    this.renderLog();
    if (keep) {
      const again = this.root.querySelector(`[data-testid="${keep.dataset.testid}"]${keep.dataset.channel ? `[data-channel="${keep.dataset.channel}"]` : ""}`);
      if (again && again.tagName === keep.tagName) {
        if ("value" in keep && keep.type !== "checkbox") again.value = keep.value;
        again.focus();
      }
    }
  }

  /** The value a field shows: what the hub refused while its error is up,
   * so the admin can correct it, else the current setting. */
  shown(name, current) {
    return this.errors.has(name) && this.drafts.has(name) ? this.drafts.get(name) : current;
  }

  // field lays out one setting. A switch sits on the label's line (inline);
  // other controls go under the help text.
  field(name, label, help, control, { inline = false } = {}) {
    const err = this.errors.get(name);
    return h(
      "div",
      { class: `field${err ? " has-error" : ""}`, dataset: { field: name } },
      label
        ? h(
            "div",
            { class: "field-head" },
            h("label", { class: "field-label" }, label),
            h("span", { class: "field-status", dataset: { status: name } }, this.statusText(name)),
            inline ? control : null,
          )
        : null,
      help ? h("p", { class: "field-help" }, help) : null,
      inline ? null : control,
      err ? h("div", { class: "field-error", role: "alert", dataset: { testid: "settings-error", field: name } }, err) : null,
    );
  }

  statusText(name) {
    if (this.saving.has(name)) return "Saving…";
    if (this.saved.has(name)) return "Saved";
    return "";
  }

  renderStatus(name) {
    const el = this.root.querySelector(`[data-status="${name}"]`);
    if (el) el.textContent = this.statusText(name);
  }

  renderLog() {
    const ol = this.root.querySelector('[data-testid="admin-log"]');
    if (!ol) return;
    ol.replaceChildren(
      ...(this.log.length
        ? this.log.map((e) =>
            h(
              "li",
              {},
              h("span", { class: "log-text" }, h("strong", {}, e.actor?.name || e.actor?.id || "System"), " ", logText(e)),
              h("time", { class: "muted", datetime: e.at, title: absolute(e.at) }, relative(e.at)),
            ),
          )
        : [h("li", { class: "muted" }, "No changes yet.")]),
    );
  }

  async release() {
    this.errors.delete("release_offline");
    try {
      const res = await this.ctx.client.request("release_offline");
      this.released = res.released ?? 0;
    } catch (err) {
      this.errors.set("release_offline", err.message);
    }
    this.render();
    this.loadLog();
  }
}

function section(title, ...children) {
  return h("section", { class: "settings-section" }, h("h3", {}, title), children);
}

function toggle(testid, on, onChange, data = {}) {
  const input = h("input", {
    type: "checkbox",
    role: "switch",
    checked: on,
    "aria-checked": on ? "true" : "false",
    dataset: { testid, ...data },
    onchange: (ev) => onChange(ev.target.checked),
  });
  return h("label", { class: "switch" }, input, h("span", { class: "switch-track" }, h("span", { class: "switch-thumb" })));
}

function number(testid, value, unit, min, max, step, onChange) {
  const input = h("input", {
    type: "number",
    class: "input input-num",
    value: String(value),
    min: String(min),
    max: String(max),
    step: String(step),
    dataset: { testid },
    onchange: (ev) => {
      const v = Number(ev.target.value);
      // Out-of-range values go to the hub anyway: its answer is the rule,
      // and its error is shown next to the field.
      if (ev.target.value !== "" && Number.isFinite(v)) onChange(Math.round(v));
    },
    onkeydown: (ev) => {
      if (ev.key === "Enter") ev.target.dispatchEvent(new Event("change"));
    },
  });
  return h("div", { class: "num-field" }, input, h("span", { class: "unit" }, unit));
}

function boomerangSelect(value, onChange) {
  const options = BOOMERANGS.slice();
  if (!options.some(([v]) => v === value)) options.push([value, duration(value)]);
  const sel = h(
    "select",
    { class: "input", dataset: { testid: "settings-default-boomerang" }, onchange: (ev) => onChange(Number(ev.target.value)) },
    options.map(([v, label]) => h("option", { value: String(v), selected: v === value }, label)),
  );
  return sel;
}

function logText(e) {
  const name = FIELD_NAMES[e.field] || e.field.replace(/^auto_ownership\./, "Auto-Ownership for ");
  if (e.field === "release_offline" || e.field === "admin_release") return `released offline agents' conversations (${e.new})`;
  if (e.old === "false" && e.new === "true") return `turned ${name} on`;
  if (e.old === "true" && e.new === "false") return `turned ${name} off`;
  return `changed ${name} from ${e.old || "—"} to ${e.new}`;
}
