// The console's entry point: sign-in, the top bar, the connection banner,
// toasts, and the wiring of the queue lists, the conversation pane, the
// team list, the notification bell and the admin settings.

import { Client, decodeToken } from "./client.js";
import { h, icon, fill } from "./dom.js";
import { relative, until } from "./format.js";
import { QueuePanel } from "./queues.js";
import { ConversationPane } from "./conversation.js";
import { TeamList, avatar } from "./team.js";
import { NotificationBell } from "./notifications.js";
import { SettingsPanel } from "./settings.js";

const TOKEN_KEY = "presencehub.token";
const $ = (id) => document.getElementById(id);

// --- the token ---------------------------------------------------------------

// takeToken moves a token from the URL into sessionStorage and out of the
// address bar (so it is not bookmarked, shared or sent as a referrer). The
// fragment form never reaches the server at all.
function takeToken() {
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const query = new URLSearchParams(location.search);
  const fromURL = hash.get("token") || query.get("token");
  if (fromURL) {
    hash.delete("token");
    query.delete("token");
    const q = query.toString();
    const f = hash.toString();
    history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + (f ? `#${f}` : ""));
    storeToken(fromURL);
    return fromURL;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

function storeToken(token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Without storage the token lasts as long as the page.
  }
}

function tokenProblem(token) {
  const claims = decodeToken(token);
  if (!claims || token.split(".").length !== 3) return "That does not look like a presencehub token.";
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) return "That token has expired. Ask for a new one.";
  if (claims.role === "service") return "That is an integration token; agents sign in with their own.";
  return "";
}

// signedOutMessage explains a 4001 close from its reason: the agent's own
// logout, idle logout, or an admin forcing them offline.
function signedOutMessage(reason = "") {
  const r = reason.toLowerCase();
  if (r.includes("forced")) return "An admin signed you out.";
  if (r.includes("idle")) return "You were signed out after being idle.";
  if (r === "" || r === "logged out" || r === "logout") return "You are signed out.";
  return `You were signed out (${reason}).`;
}

// --- the sign-in screen ------------------------------------------------------

let app = null; // the running console, once signed in

function showLogin(message = "", { again = false } = {}) {
  $("app").hidden = !app;
  $("login").hidden = false;
  $("login").classList.toggle("over", !!app);
  $("login-message").textContent = message;
  $("login-message").hidden = !message;
  $("login-again").hidden = !again;
  $("login-error").hidden = true;
  $("login-token").value = "";
  $("login-token").focus();
}

function hideLogin() {
  $("login").hidden = true;
  $("app").hidden = false;
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("login-token").value.trim();
  const problem = token ? tokenProblem(token) : "Paste your access token.";
  if (problem) {
    $("login-error").textContent = problem;
    $("login-error").hidden = false;
    return;
  }
  storeToken(token);
  if (app) {
    // A different agent (or a fresh token for the same one): start clean.
    const same = decodeToken(token)?.sub === app.claims.sub && decodeToken(token)?.ws === app.claims.ws;
    if (same) {
      hideLogin();
      app.client.setToken(token);
      return;
    }
    location.reload();
    return;
  }
  hideLogin();
  start(token);
});

$("login-again").addEventListener("click", () => {
  if (!app) return;
  hideLogin();
  app.client.setToken(app.client.token);
});

// --- toasts ------------------------------------------------------------------

function toast(text, kind = "info", { action, onAction, timeout } = {}) {
  const el = h(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", dataset: { testid: "toast" } },
    h("span", { class: "grow" }, text),
    action
      ? h("button", { class: "link-btn", onclick: () => { el.remove(); onAction?.(); } }, action)
      : null,
    h("button", { class: "icon-btn", title: "Dismiss", onclick: () => el.remove() }, icon("x")),
  );
  $("toasts").append(el);
  setTimeout(() => el.remove(), timeout ?? (kind === "error" ? 9000 : 6000));
}

// --- the console -------------------------------------------------------------

function start(token) {
  const claims = decodeToken(token) || {};
  const client = new Client({ token });
  // For poking at the console from devtools.
  window.presencehub = client;

  let selected = "";
  let activeQueue = sessionStorage.getItem("presencehub.queue") === "pending" ? "pending" : "new";
  const panels = {};

  const ctx = {
    client,
    claims,
    toast,
    selected: () => selected,
    open(id, hint) {
      selected = id;
      for (const p of Object.values(panels)) p.renderList();
      if (id) pane.open(id, hint);
      else pane.close();
    },
    inViews: (id) => Object.values(panels).some((p) => p.view.items.some((c) => c.id === id)),
    onCounts: () => renderTabs(),
  };
  app = { client, claims, ctx };

  $("workspace").textContent = claims.ws || "";
  $("logout").append(icon("logout"));
  $("settings-open").append(icon("gear"));

  const pane = new ConversationPane(ctx, $("conversation"));
  panels.new = new QueuePanel(ctx, "new", $("panel-new"));
  panels.pending = new QueuePanel(ctx, "pending", $("panel-pending"));
  new TeamList(ctx, $("team"));
  new NotificationBell(ctx, $("bell"));
  new SettingsPanel(ctx, $("settings"), $("settings-open"));

  // Tabs.
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      activeQueue = tab.dataset.queue;
      sessionStorage.setItem("presencehub.queue", activeQueue);
      renderTabs();
    });
  }
  function renderTabs() {
    for (const tab of document.querySelectorAll(".tab")) {
      const q = tab.dataset.queue;
      const on = q === activeQueue;
      tab.classList.toggle("active", on);
      tab.setAttribute("aria-selected", on ? "true" : "false");
      $(`panel-${q}`).hidden = !on;
      const v = panels[q]?.view;
      const count = tab.querySelector(".tab-count");
      if (count && v) count.textContent = v.status === "loading" ? "" : String(v.counts.matching ?? 0);
    }
  }
  renderTabs();

  // Me, my status, log out.
  const statusSwitch = $("status-switch");
  function renderMe() {
    const me = client.me;
    if (!me) return;
    $("me").dataset.agentId = me.id;
    $("me").dataset.role = me.role;
    $("me").replaceChildren(
      avatar(me, "sm"),
      h("span", { class: "me-text" }, h("span", { class: "me-name" }, me.name), h("span", { class: "me-role" }, me.role === "admin" ? "Admin" : "Agent")),
    );
    const away = me.status === "away";
    statusSwitch.dataset.status = away ? "away" : "available";
    statusSwitch.setAttribute("aria-checked", away ? "false" : "true");
    statusSwitch.title = away ? "You are away. Click to become available." : "You are available. Click to go away.";
    statusSwitch.replaceChildren(
      h("span", { class: `switch-track ${away ? "" : "on"}` }, h("span", { class: "switch-thumb" })),
      h("span", { class: "status-text" }, away ? (me.manual_away ? "Away" : "Away (idle)") : "Available"),
    );
  }
  statusSwitch.addEventListener("click", async () => {
    const want = statusSwitch.dataset.status === "away" ? "available" : "away";
    statusSwitch.disabled = true;
    try {
      await client.request("status", { status: want });
    } catch (err) {
      toast(`Could not change your status: ${err.message}`, "error");
    } finally {
      statusSwitch.disabled = false;
    }
  });
  $("logout").addEventListener("click", async () => {
    try {
      await client.logout();
    } catch (err) {
      if (err.code !== "disconnected") toast(`Could not log out: ${err.message}`, "error");
    }
  });
  client.on("hello", renderMe);

  // Remove Ownership decides what going offline does to an agent's
  // conversations, and only admins see the settings: say when it is on.
  function renderPolicy() {
    $("remove-ownership").hidden = !client.settings?.remove_ownership;
  }
  client.on("hello", renderPolicy);
  client.on("settings", renderPolicy);
  client.on("presence", (ev) => ev.presence?.agent === client.me?.id && renderMe());
  client.on("agent", renderMe);

  // The connection banner.
  const banner = $("banner");
  let tick = 0;
  function renderConn() {
    const s = client.state;
    const conn = $("conn");
    conn.dataset.status = s.status;
    conn.textContent = { open: "Live", connecting: "Connecting…", waiting: "Offline", logged_out: "Signed out", token_expired: "Session expired", closed: "Closed", idle: "" }[s.status] || s.status;
    document.body.classList.toggle("disconnected", s.status !== "open");

    clearInterval(tick);
    if (s.status === "open" || s.status === "idle" || s.status === "closed" || s.status === "logged_out") {
      banner.hidden = true;
      return;
    }
    banner.hidden = false;
    const draw = () => {
      let text;
      if (s.status === "token_expired") {
        text = "Your session has expired. Sign in again with a new token to reconnect.";
      } else if (s.status === "connecting") {
        text = s.everConnected ? "Disconnected — reconnecting…" : "Connecting to the hub…";
      } else {
        const secs = Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000));
        text = `Disconnected — reconnecting in ${secs}s…`;
      }
      const doubt = !s.everConnected && s.attempt >= 3 && s.status !== "token_expired";
      banner.className = `banner ${s.status === "token_expired" ? "banner-error" : "banner-warn"}`;
      fill(banner, 
        icon("wifiOff"),
        h("span", { class: "banner-text" }, text),
        doubt ? h("span", { class: "banner-hint" }, "The hub may be down, or the token was refused.") : null,
        s.status === "waiting" ? h("button", { class: "link-btn", dataset: { testid: "banner-retry" }, onclick: () => client.reconnectNow() }, "Retry now") : null,
        s.status === "token_expired" || doubt
          ? h("button", { class: "link-btn", dataset: { testid: "banner-signin" }, onclick: () => showLogin("Your session has expired. Paste a new token.") }, "Use another token")
          : null,
      );
    };
    draw();
    if (s.status === "waiting") tick = setInterval(draw, 1000);
  }
  client.on("state", (s) => {
    renderConn();
    if (s.status === "logged_out") {
      showLogin(signedOutMessage(s.reason), { again: true });
    }
    if (s.status === "token_expired") toast("Your session has expired. Sign in again with a new token.", "error");
  });
  client.on("hello", ({ resync }) => {
    hideLogin();
    if (resync) toast("You were away a long time: the lists were reloaded.");
  });
  client.on("settings", (ev) => {
    if (ev.actor?.id && ev.actor.id !== client.me?.id) toast(`${ev.actor.name || "An admin"} changed the workspace settings`);
  });
  client.on("notifications", (n) => {
    document.title = n.total ? `(${n.total}) presencehub` : "presencehub";
  });

  // Activity ends automatic away; the client sends it at most every 30 s.
  let lastActivity = 0;
  const active = () => {
    const now = Date.now();
    if (now - lastActivity < 5000) return;
    lastActivity = now;
    client.activity();
  };
  for (const type of ["mousemove", "keydown", "mousedown", "wheel", "touchstart", "focus"]) {
    window.addEventListener(type, active, { passive: true, capture: true });
  }

  // Relative times age while the page is open.
  setInterval(() => {
    for (const el of document.querySelectorAll("[data-rel]")) el.textContent = relative(el.dataset.rel);
    for (const el of document.querySelectorAll("[data-until]")) {
      const icon = el.querySelector(".icon");
      el.replaceChildren(...(icon ? [icon] : []), until(el.dataset.until));
    }
  }, 15_000);

  renderConn();
  client.connect();
}

// --- go ------------------------------------------------------------------------

function boot() {
  const token = takeToken();
  const problem = token ? tokenProblem(token) : "";
  if (!token || problem) {
    showLogin(problem);
  } else {
    hideLogin();
    start(token);
  }
}

// A sign-in link opened in a tab already showing the console changes only
// the fragment, which reloads nothing.
window.addEventListener("hashchange", () => {
  if (!new URLSearchParams(location.hash.replace(/^#/, "")).has("token")) return;
  if (app) {
    takeToken();
    location.reload();
  } else {
    boot();
  }
});

boot();
