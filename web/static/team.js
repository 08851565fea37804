// The team list (every agent of the workspace with a presence dot) and the
// dot and avatar every other part of the console uses.

import { h, icon } from "./dom.js";
import { STATUS_NAMES, relative, initials, hue } from "./format.js";

const ORDER = { online: 0, away: 1, offline: 2 };

/** A presence dot: green online, orange away, gray offline. */
export function dot(agent, extra = {}) {
  const status = agent?.status || "offline";
  const manual = agent?.manual_away ? " (set by agent)" : "";
  return h("span", {
    class: `dot dot-${status}`,
    title: `${STATUS_NAMES[status] || status}${status === "away" ? manual : ""}`,
    dataset: { testid: "agent-dot", agentId: agent?.id || "", status },
    ...extra,
  });
}

/** A round avatar with initials and a presence dot. */
export function avatar(agent, size = "md") {
  return h(
    "span",
    { class: `avatar avatar-${size}`, style: { "--h": hue(agent?.id || "") } },
    initials(agent?.name || agent?.id),
    dot(agent),
  );
}

/** Agents sorted as a team list reads: online, away, offline, then by name. */
export function sortedAgents(client) {
  return [...client.agents.values()]
    .filter((a) => a.role !== "service")
    .sort((a, b) => (ORDER[a.status] ?? 3) - (ORDER[b.status] ?? 3) || a.name.localeCompare(b.name));
}

/** The sidebar's team list. */
export class TeamList {
  constructor(ctx, root) {
    this.ctx = ctx;
    this.root = root;
    const { client } = ctx;
    client.on("hello", () => this.render());
    client.on("presence", () => this.render());
    client.on("agent", () => this.render());
  }

  render() {
    const { client } = this.ctx;
    const agents = sortedAgents(client);
    const online = agents.filter((a) => a.status === "online").length;
    const isAdmin = client.me?.role === "admin";
    this.root.replaceChildren(
      h("div", { class: "side-title" }, icon("users"), "Team", h("span", { class: "side-meta" }, `${online} online`)),
      h(
        "ul",
        { class: "team", dataset: { testid: "agents" } },
        agents.map((a) =>
          h(
            "li",
            { class: `team-row status-${a.status}`, dataset: { testid: "agent-row", agentId: a.id, status: a.status } },
            avatar(a, "sm"),
            h(
              "span",
              { class: "team-name" },
              h("span", { class: "team-label" }, a.name, a.id === client.me?.id ? h("span", { class: "you" }, " (you)") : null),
              h(
                "span",
                { class: "team-status", title: a.status_since ? new Date(a.status_since).toLocaleString() : "" },
                statusLine(a),
              ),
            ),
            a.role === "admin" ? h("span", { class: "role-tag", title: "Admin" }, "admin") : null,
            isAdmin && a.id !== client.me?.id && a.status !== "offline"
              ? h(
                  "button",
                  {
                    class: "icon-btn team-force",
                    title: `Force ${a.name} offline`,
                    dataset: { testid: "force-offline", agentId: a.id },
                    onclick: () => this.forceOffline(a),
                  },
                  icon("logout"),
                )
              : null,
          ),
        ),
      ),
    );
  }

  async forceOffline(a) {
    if (!confirm(`Force ${a.name} offline? Their open consoles are signed out.`)) return;
    try {
      await this.ctx.client.request("force_offline", { agent: a.id });
      this.ctx.toast(`${a.name} was signed out`);
    } catch (err) {
      this.ctx.toast(`Could not sign ${a.name} out: ${err.message}`, "error");
    }
  }
}

function statusLine(a) {
  const name = STATUS_NAMES[a.status] || a.status;
  if (a.status === "away" && a.manual_away) return "Away";
  if (a.status === "away") return "Away (idle)";
  if (a.status === "offline" && a.status_since) {
    return ["Offline · ", h("span", { dataset: { rel: a.status_since } }, relative(a.status_since))];
  }
  return name;
}
