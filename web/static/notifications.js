// The notification bell: unread assignments, grouped by who made them.

import { h, icon } from "./dom.js";
import { relative, absolute, notificationSummary } from "./format.js";
import { popover, refreshPopover } from "./menu.js";

export class NotificationBell {
  constructor(ctx, root) {
    this.ctx = ctx;
    this.count = h("span", { class: "badge", dataset: { testid: "notif-count" }, hidden: true });
    this.button = h(
      "button",
      {
        class: "top-btn bell",
        title: "Notifications",
        "aria-label": "Notifications",
        "aria-haspopup": "true",
        dataset: { testid: "notif-bell" },
        onclick: () => this.toggle(),
      },
      icon("bell"),
      this.count,
    );
    root.replaceChildren(this.button);
    const { client } = ctx;
    client.on("notifications", () => this.render());
    client.on("hello", ({ resumed }) => {
      // Assignments made while this agent was away arrive as one grouped
      // list on connect; say so once, not once per assignment.
      const n = client.notifications;
      if (!resumed && client.notificationsFromHello && n.total) {
        ctx.toast(notificationSummary(n, true), "info", { action: "View", onAction: () => this.toggle() });
      }
    });
    client.on("notification", (ev) => {
      const n = ev.notification;
      if (n?.agent === client.me?.id) {
        ctx.toast(`${n.by?.name || "Someone"} assigned ${n.customer || n.conversation} to you`, "info", {
          action: "Open",
          onAction: () => ctx.open(n.conversation),
        });
      }
    });
  }

  render() {
    const n = this.ctx.client.notifications.total;
    this.count.hidden = n === 0;
    this.count.textContent = n > 99 ? "99+" : String(n);
    this.button.classList.toggle("has-unread", n > 0);
    refreshPopover(this.button, (close) => this.panel(close));
  }

  toggle() {
    popover(this.button, (close) => this.panel(close), { align: "right", testid: "notif-panel", cls: "notif-pop" });
  }

  panel(close) {
    const { client } = this.ctx;
    const group = client.notifications;
    return h(
      "div",
      { class: "notif-panel" },
      h(
        "div",
        { class: "notif-head" },
        h("strong", {}, "Notifications"),
        h("span", { class: "grow" }),
        group.total
          ? h("button", { class: "link-btn", dataset: { testid: "notif-mark-read" }, onclick: () => this.markRead() }, "Mark all read")
          : null,
      ),
      h("div", { class: "notif-summary", dataset: { testid: "notif-summary" } }, notificationSummary(group, client.notificationsFromHello)),
      group.items.length
        ? h(
            "ul",
            { class: "notif-list" },
            group.items.map((it) =>
              h(
                "li",
                {},
                h(
                  "button",
                  {
                    class: "notif-item",
                    dataset: { testid: "notif-item", convId: it.conversation, seq: it.seq },
                    onclick: () => {
                      close();
                      this.ctx.open(it.conversation);
                    },
                  },
                  h("span", { class: "notif-dot" }),
                  h(
                    "span",
                    { class: "grow" },
                    h("span", { class: "notif-text" }, h("strong", {}, it.by?.name || "System"), " assigned you ", h("strong", {}, it.customer || it.conversation)),
                    it.subject ? h("span", { class: "notif-sub" }, it.subject) : null,
                  ),
                  h("time", { class: "muted", datetime: it.at, title: absolute(it.at), dataset: { rel: it.at } }, relative(it.at)),
                ),
              ),
            ),
          )
        : h("div", { class: "empty muted" }, icon("bell", "icon icon-lg"), h("p", {}, "You're all caught up.")),
    );
  }

  async markRead() {
    const items = this.ctx.client.notifications.items;
    const upTo = items.reduce((m, n) => Math.max(m, n.seq), 0);
    try {
      await this.ctx.client.markNotificationsRead(upTo);
    } catch (err) {
      this.ctx.toast(`Could not mark read: ${err.message}`, "error");
    }
  }
}
