// Words and times as the console shows them.

/** "just now", "4m", "3h", "2d", or a date for anything older than a week. */
export function relative(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!t) return "";
  const s = Math.round((now - t) / 1000);
  if (s < 45) return s < -45 ? inFuture(-s) : "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h}h ago`;
  const d = Math.round(h / 24);
  if (d < 7) return `${d}d ago`;
  return new Date(t).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function inFuture(s) {
  if (s < 3600) return `in ${Math.max(1, Math.round(s / 60))}m`;
  if (s < 86400) return `in ${Math.round(s / 3600)}h`;
  return `in ${Math.round(s / 86400)}d`;
}

/** A time until a future instant: "in 14m", "in 3h", "in 2d". */
export function until(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!t) return "";
  const s = Math.round((t - now) / 1000);
  if (s <= 0) return "due now";
  return inFuture(s);
}

/** The full local date and time, for tooltips. */
export function absolute(iso) {
  const t = Date.parse(iso);
  if (!t) return "";
  return new Date(t).toLocaleString(undefined, {
    weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

/** A clock time for today, else a short date and time. */
export function clock(iso) {
  const t = Date.parse(iso);
  if (!t) return "";
  const d = new Date(t);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay
    ? d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** Seconds as the settings show them: "Never", "90 s", "10 min", "4 h". */
export function duration(sec) {
  if (!sec) return "Never";
  if (sec < 60) return `${sec} s`;
  if (sec < 3600) return `${Math.round(sec / 60)} min`;
  if (sec % 86400 === 0) return `${sec / 86400} d`;
  if (sec % 3600 === 0) return `${sec / 3600} h`;
  return `${Math.round(sec / 60)} min`;
}

export const QUEUE_NAMES = { new: "New", pending: "Pending", resolved: "Resolved" };

export const STATUS_NAMES = { online: "Online", away: "Away", offline: "Offline" };

/** The owner label of DOMAIN.md: "Waiting on NAME" in new, "Owned by
 * NAME" in pending, "Unowned" when there is no owner. */
export function ownerLabel(conv, nameOf) {
  if (!conv.owner) return "Unowned";
  const name = nameOf(conv.owner);
  if (conv.queue === "new") return `Waiting on ${name}`;
  if (conv.queue === "pending") return `Owned by ${name}`;
  return `Owned by ${name}`;
}

function actorName(actor) {
  if (!actor) return "Someone";
  if (actor.role === "system") return "System";
  if (actor.role === "service") return actor.name || "Integration";
  return actor.name || actor.id || "Someone";
}

/**
 * One audit entry as a sentence, plus a short detail line:
 *   {text: "Auto Unassignment: Bea logged out", detail: "System", tone: "system"}
 */
export function historyText(e) {
  const by = actorName(e.actor);
  const from = e.from_name || e.from || "";
  const to = e.to_name || e.to || "";
  const system = e.actor?.role === "system";
  const out = (text, detail = by, tone = system ? "system" : "agent") => ({ text, detail, tone });

  if (e.kind === "owner") {
    switch (e.reason) {
      case "manual_assign":
        if (e.actor?.id && e.actor.id === e.to) return out(from ? `${by} took ownership from ${from}` : `${by} took ownership`);
        return out(from ? `${by} reassigned from ${from} to ${to}` : `${by} assigned to ${to}`);
      case "manual_unassign":
        return out(from ? `${by} unassigned ${from}` : `${by} set the conversation to Unowned`);
      case "auto_ownership":
        return out(`Auto-Ownership: ${to} replied`);
      case "logout":
        return out(`Auto Unassignment: ${from} logged out`, "Remove Ownership");
      case "inbound":
        return out(`Unassigned: customer replied while ${from} was offline`, "Remove Ownership");
      case "boomerang":
        return out(`Unassigned: boomerang returned it to New while ${from} was offline`, "Remove Ownership");
      case "resolved":
        return out("Resolved: ownership removed", from ? `${from} was the owner` : by);
      case "admin_release":
        return out("Admin released offline agents' conversations", from ? `${by} · ${from} unassigned` : by, "admin");
    }
    return out(to ? `Owner set to ${to}` : `Owner removed`);
  }
  if (e.kind === "queue") {
    const q = QUEUE_NAMES[e.to] || e.to;
    switch (e.reason) {
      case "boomerang":
        return out(`Boomerang returned to ${q}`);
      case "inbound":
        return out(`Customer replied: moved from ${QUEUE_NAMES[e.from] || e.from} to ${q}`, "Customer", "customer");
      case "resolved":
        return out(`${by} resolved the conversation`);
      case "created":
        return out("Conversation started", by, "customer");
      case "move":
        return out(`${by} moved to ${q}`);
    }
    return out(`Moved to ${q}`);
  }
  return out(`${e.kind}: ${e.reason}`);
}

/** "3 conversations assigned to you while you were away: Al (2), Ann (1)" */
export function notificationSummary(group, whileAway) {
  const n = group.total;
  if (!n) return "No new assignments";
  const who = (group.by_who || [])
    .map((g) => `${g.by?.role === "system" ? "System" : g.by?.name || g.by?.id || "Someone"} (${g.count})`)
    .join(", ");
  const what = `${n} conversation${n === 1 ? "" : "s"} assigned to you`;
  return `${what}${whileAway ? " while you were away" : ""}: ${who}`;
}

/** Up to two initials of a name, for avatars. */
export function initials(name) {
  const parts = String(name || "?").trim().split(/\s+/);
  return ((parts[0]?.[0] || "?") + (parts.length > 1 ? parts[parts.length - 1][0] : "")).toUpperCase();
}

/** A stable hue for a name, so the same agent gets the same avatar colour. */
export function hue(s) {
  let x = 0;
  for (const ch of String(s)) x = (x * 31 + ch.charCodeAt(0)) >>> 0;
  return x % 360;
}
