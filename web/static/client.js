/**
 * presencehub WebSocket client (protocol v1, see docs/protocol.md).
 *
 * A plain ES module with no dependencies; it runs in any browser and in
 * anything else that has a WHATWG WebSocket.
 *
 * Usage:
 *
 *   import { Client } from "./client.js";
 *
 *   const client = new Client({ token });        // url defaults to ws(s)://<host>/ws
 *   client.on("state", (s) => banner(s));       // connection state, see below
 *   client.on("hello", ({ resumed, resync }) => renderWorkspace(client));
 *   client.on("presence", (ev) => redrawAgent(ev.presence.agent));
 *   client.connect();
 *
 *   // A view is a live, filtered list of one queue. It subscribes on every
 *   // (re)connect, resumes with `since` after a drop, and applies the
 *   // protocol's enter / leave / change rules to its items and counts.
 *   const view = client.view({ queue: "new", filter: { kind: "mine" } });
 *   view.on("change", () => render(view.items, view.counts));
 *   view.setFilter({ kind: "agents", agents: ["al", "bea"] });   // re-subscribes
 *
 *   // Every operation of the protocol is a request that resolves with the
 *   // reply's `result` or rejects with a ProtocolError (code, field, message).
 *   try {
 *     await client.request("assign", { conv: "c7", agent: "bea", version: 6 });
 *   } catch (err) {
 *     if (err.code === "conflict") reload();
 *   }
 *
 * Methods of Client:
 *
 *   connect()                  open (and keep open) the connection
 *   request(op, fields, {timeout}) → Promise<result>   any operation
 *   view({queue, filter, limit}) → View                 a live queue list
 *   activity()                 signal activity (sent at most every 30 s)
 *   markNotificationsRead(upTo) mark read up to a seq (0 = all)
 *   logout()                   log out; the hub then closes with 4001
 *   agent(id)                  the agent record (or a stand-in)
 *   setToken(token)            new token; reconnects after 4001 / 4002
 *   reconnectNow()             skip the rest of a backoff wait
 *   close()                    close for good
 *
 * Methods of View: setFilter(filter), loadMore(), close(), matches(state);
 * fields items, counts, status, next, seq.
 *
 * What the client keeps for you, updated from `hello` and from events:
 * `me`, `agents` (a Map by id), `settings`, `channels`, `limits`,
 * `notifications` (the grouped unread list) and `seq` (the highest
 * sequence number seen, from hello, replies and events).
 *
 * Events it emits (`client.on(type, fn)` returns a function that removes fn):
 *
 *   state         {status, attempt, retryAt, code, reason, everConnected}
 *                 status is one of "idle", "connecting", "open",
 *                 "waiting" (down, retrying at retryAt), "logged_out"
 *                 (close 4001: do not reconnect), "token_expired" (close
 *                 4002 or an expired token: call setToken, then connect)
 *                 and "closed" (close() was called).
 *   hello         {hello, resumed, resync}
 *   event         every event, live or from a view's resume
 *   conversation, presence, settings, notification, agent
 *                 the events of that kind
 *   notifications the grouped unread list changed
 *   error         a frame that could not be parsed (the socket stays up)
 *
 * Reconnecting: after any close other than 4001, 4002 and an explicit
 * close(), the client reconnects with exponential backoff (0.5 s doubling
 * up to 30 s) and jitter (each delay is 50 to 100 % of its step), and
 * resumes: it connects with `?since=<seq>`, takes the snapshot in `hello`,
 * and re-subscribes every view with its own `since`, applying the events
 * the reply carries; a view whose reply says `resync` replaces its items.
 * A close with 4008 (slow consumer) reconnects at once. The window's
 * "offline" event drops the socket at once (a dead network can leave it
 * looking open for minutes); "online" skips the rest of a backoff wait.
 *
 * Liveness: a network can die without the browser noticing (and page
 * JavaScript never sees the hub's pings). When nothing has arrived for
 * 25 s, the client sends a `ping` (which, unlike other requests, does not
 * count as the agent's activity); a ping or any other request that gets no
 * reply in time means the socket is dead: it is dropped and the client
 * reconnects, so the banner shows instead of a "Live" that is not.
 */

/** Close codes of the protocol. */
export const Close = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  LOGGED_OUT: 4001,
  TOKEN_EXPIRED: 4002,
  SLOW_CONSUMER: 4008,
  RATE_LIMITED: 4029,
});

/** The error a request rejects with: the hub's error reply, or a local one
 * ("timeout", "disconnected"). */
export class ProtocolError extends Error {
  constructor(code, message, field) {
    super(message || code);
    this.name = "ProtocolError";
    this.code = code;
    this.field = field;
  }
}

/** Reads the claims of a JWT without checking it (the hub checks it); the
 * console uses them to show who the token is for and to notice expiry
 * before trying. Returns null for anything that is not a JWT. */
export function decodeToken(token) {
  try {
    const part = token.split(".")[1];
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** Whether a conversation state ({queue, owner}) matches a queue and an
 * ownership filter for the agent `me`: the rule the hub uses to route
 * conversation events to views. */
export function matches(queue, filter, me, state) {
  if (!state || state.queue !== queue) return false;
  const owner = state.owner || "";
  switch (filter.kind) {
    case "all":
      return true;
    case "unowned":
      return owner === "";
    case "mine":
      return owner !== "" && owner === me;
    case "others":
      return owner !== "" && owner !== me;
    case "agents":
      return owner !== "" && (filter.agents || []).includes(owner);
    default:
      return false;
  }
}

/** An RFC 3339 time as [milliseconds since the epoch, nanoseconds past
 * that millisecond]: Date.parse stops at the millisecond, and the hub's
 * times (and its list order) go to the nanosecond. */
function timeKey(iso) {
  const s = String(iso || "");
  const m = /^([^.]*)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/i.exec(s);
  if (!m) return [Date.parse(s) || 0, 0];
  const frac = (m[2] || "").padEnd(9, "0").slice(0, 9);
  return [(Date.parse(m[1] + m[3]) || 0) + Number(frac.slice(0, 3)), Number(frac.slice(3))];
}

/** A minimal event emitter: on() returns the function that undoes it. */
class Emitter {
  #handlers = new Map();

  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(fn);
    return () => this.#handlers.get(type)?.delete(fn);
  }

  emit(type, value) {
    for (const fn of this.#handlers.get(type) || []) {
      try {
        fn(value);
      } catch (err) {
        // One broken listener must not stop the others or the socket.
        console.error(`presencehub: ${type} listener failed`, err);
      }
    }
  }
}

const BACKOFF_BASE = 500;
const BACKOFF_MAX = 30_000;
const HELLO_TIMEOUT = 10_000;
const ACTIVITY_EVERY = 30_000;
const HEARTBEAT_EVERY = 25_000;
const HEARTBEAT_TIMEOUT = 10_000;

function defaultURL() {
  const loc = globalThis.location;
  if (!loc) return "ws://127.0.0.1:8080/ws";
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/ws`;
}

/** A connection to the hub that survives drops. See the module comment. */
export class Client extends Emitter {
  /**
   * @param {object} opts
   * @param {string} opts.token              the agent's JWT
   * @param {string} [opts.url]              ws(s) URL of /ws; defaults to this page's host
   * @param {number} [opts.requestTimeout]   ms before a request rejects with "timeout" (15000)
   * @param {typeof WebSocket} [opts.WebSocket] a WebSocket constructor (for tests)
   */
  constructor({ token, url, requestTimeout = 15_000, WebSocket: WS } = {}) {
    super();
    this.token = token;
    this.url = url || defaultURL();
    this.requestTimeout = requestTimeout;
    this.WS = WS || globalThis.WebSocket;

    this.seq = 0;
    this.me = null;
    this.agents = new Map();
    this.settings = null;
    this.channels = [];
    this.limits = {};
    this.notifications = { total: 0, by_who: [], items: [] };
    /** True while the unread notifications are those hello brought: they
     * were made while this agent was not connected. */
    this.notificationsFromHello = false;

    this.state = { status: "idle", attempt: 0, retryAt: 0, code: 0, reason: "", everConnected: false };

    this.ws = null;
    this.views = new Map();
    this.pending = new Map();
    this.nextID = 1;
    this.nextView = 1;
    this.haveSnapshot = false;
    this.retryTimer = 0;
    this.helloTimer = 0;
    this.lastSent = 0;
    this.lastHeard = 0;
    this.heartbeatTimer = 0;

    this.onOnline = () => {
      if (this.state.status === "waiting") this.reconnectNow();
    };
    // When the browser says the network is gone, the socket may not notice
    // for minutes (nothing to send, no close to receive), and the console
    // would read "Live" meanwhile. Drop it now: the banner shows, retries
    // start (and fail fast while offline), and "online" reconnects at once.
    this.onOffline = () => this.#drop(this.ws, "offline");
    globalThis.addEventListener?.("online", this.onOnline);
    globalThis.addEventListener?.("offline", this.onOffline);
  }

  /** Opens the connection (and keeps it open until close() or a 4001). */
  connect() {
    if (this.ws) return;
    clearTimeout(this.retryTimer);
    const claims = decodeToken(this.token || "");
    if (claims && typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) {
      this.#setState({ status: "token_expired", code: Close.TOKEN_EXPIRED, reason: "token expired" });
      this.emit("token_expired");
      return;
    }
    const u = new URL(this.url, globalThis.location?.href);
    u.searchParams.set("access_token", this.token);
    if (this.haveSnapshot && this.seq > 0) u.searchParams.set("since", String(this.seq));
    this.#setState({ status: "connecting" });

    const ws = new this.WS(u.toString(), "presencehub.v1");
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      // The hub speaks first; no hello in time means something between us
      // and it is broken, so start over rather than wait forever.
      this.helloTimer = setTimeout(() => ws.close(4000, "no hello"), HELLO_TIMEOUT);
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      this.#frame(typeof ev.data === "string" ? ev.data : "");
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.#closed(ev.code, ev.reason);
    };
    ws.onerror = () => {
      // onclose follows with the details.
    };
  }

  /** Replaces the token (after a 4002, or on sign-in) and reconnects. */
  setToken(token) {
    this.token = token;
    if (this.state.status === "token_expired" || this.state.status === "logged_out") {
      this.#setState({ attempt: 0 });
      this.connect();
    }
  }

  /** Skips the rest of the backoff wait. */
  reconnectNow() {
    if (this.ws || this.state.status === "closed") return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  /** Closes the connection for good (no reconnect). */
  close() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.helloTimer);
    clearInterval(this.heartbeatTimer);
    globalThis.removeEventListener?.("online", this.onOnline);
    globalThis.removeEventListener?.("offline", this.onOffline);
    const ws = this.ws;
    this.ws = null;
    this.#failPending("disconnected");
    if (ws) ws.close(Close.NORMAL, "bye");
    this.#setState({ status: "closed" });
  }

  /** True when requests can be sent. */
  get open() {
    return this.state.status === "open";
  }

  /**
   * Sends a request and resolves with the reply's result.
   * @param {string} op      the operation, e.g. "assign"
   * @param {object} [fields] the request's other fields
   * @param {{timeout?: number}} [opts]
   * @returns {Promise<object>}
   */
  request(op, fields = {}, { timeout = this.requestTimeout } = {}) {
    if (!this.ws || !this.open) {
      return Promise.reject(new ProtocolError("disconnected", "not connected to the hub"));
    }
    const id = this.nextID++;
    const frame = JSON.stringify({ ...fields, id, op });
    const ws = this.ws;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ProtocolError("timeout", `${op}: no reply within ${timeout / 1000} s`));
        // The hub answers every request; silence means the socket is dead.
        this.#drop(ws, "no reply from the hub");
      }, timeout);
      this.pending.set(id, { resolve, reject, timer, op });
      try {
        this.ws.send(frame);
        this.lastSent = Date.now();
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new ProtocolError("disconnected", String(err)));
      }
    });
  }

  /** Tells the hub the agent is active (ends automatic away). Call it on
   * mouse and key activity as often as you like: it sends at most once per
   * 30 s, and not at all when another message went out recently. */
  activity() {
    if (!this.open || Date.now() - this.lastSent < ACTIVITY_EVERY) return;
    this.request("activity").catch(() => {});
  }

  /** Marks notifications read up to seq (0 = all) and updates the list. */
  async markNotificationsRead(upTo = 0) {
    const res = await this.request("notifications_read", { up_to: upTo });
    const items = this.notifications.items.filter((n) => upTo !== 0 && n.seq > upTo);
    this.#setNotifications(items, false);
    return res;
  }

  /** Logs out: the hub answers, then closes the socket with 4001. */
  logout() {
    return this.request("logout");
  }

  /** The agent with id, or a stand-in so callers can always read .name. */
  agent(id) {
    return this.agents.get(id) || { id, name: id, role: "agent", status: "offline" };
  }

  /**
   * A live view of one queue. It subscribes now if connected, and on every
   * (re)connect. Call view.close() when done with it.
   * @param {{queue: "new"|"pending", filter?: object, limit?: number}} opts
   */
  view({ queue, filter = { kind: "all" }, limit = 50 }) {
    const v = new View(this, queue, filter, limit);
    this.views.set(v, true);
    if (this.open) v.subscribe();
    return v;
  }

  // --- internals -------------------------------------------------------

  #setState(patch) {
    this.state = { ...this.state, ...patch };
    this.emit("state", this.state);
  }

  #frame(data) {
    // The hub packs several messages into one frame, one per line.
    for (const line of data.split("\n")) {
      if (!line.trim()) continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch (err) {
        this.emit("error", new ProtocolError("bad_frame", `unparsable message: ${err.message}`));
        continue;
      }
      switch (msg.type) {
        case "hello":
          this.#hello(msg);
          break;
        case "reply":
          this.#reply(msg);
          break;
        case "event":
          this.#event(msg);
          break;
      }
    }
  }

  #hello(h) {
    clearTimeout(this.helloTimer);
    const resumed = !!h.resumed && !h.resync && this.haveSnapshot;
    // hello is the workspace as of h.seq, so it replaces what we had; its
    // `missed` events are the same changes as deltas, passed on for anyone
    // who wants to show them but not applied a second time.
    this.me = h.me;
    this.agents = new Map((h.agents || []).map((a) => [a.id, a]));
    if (h.me && !this.agents.has(h.me.id)) this.agents.set(h.me.id, h.me);
    this.settings = h.settings || null;
    this.channels = h.channels || [];
    this.limits = h.limits || {};
    const n = h.notifications || { total: 0, by_who: [], items: [] };
    this.notifications = { total: n.total || 0, by_who: n.by_who || [], items: n.items || [] };
    this.notificationsFromHello = this.notifications.total > 0;
    this.seq = h.resync ? h.seq : Math.max(this.seq, h.seq || 0);
    this.haveSnapshot = true;

    this.#setState({ status: "open", attempt: 0, retryAt: 0, code: 0, reason: "", everConnected: true });
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => this.#heartbeat(), HEARTBEAT_EVERY / 5);
    this.emit("hello", { hello: h, resumed, resync: !!h.resync });
    this.emit("notifications", this.notifications);
    for (const ev of h.missed || []) this.emit("event", ev);

    for (const v of this.views.keys()) v.subscribe({ resume: resumed });
  }

  #reply(r) {
    const p = this.pending.get(r.id);
    if (!p) return; // timed out already
    this.pending.delete(r.id);
    clearTimeout(p.timer);
    if (r.ok) {
      if (r.result && typeof r.result.seq === "number") this.seq = Math.max(this.seq, r.result.seq);
      p.resolve(r.result || {});
    } else {
      const e = r.error || {};
      p.reject(new ProtocolError(e.code || "internal", e.message, e.field));
    }
  }

  #event(ev) {
    if (typeof ev.seq === "number") this.seq = Math.max(this.seq, ev.seq);
    switch (ev.kind) {
      case "presence":
      case "agent":
        this.#agentChanged(ev);
        break;
      case "settings":
        if (ev.settings) this.settings = ev.settings;
        break;
      case "notification":
        this.#notified(ev.notification);
        break;
      case "conversation":
        break;
    }
    // Events arrive in sequence order, so every view already past its
    // subscribe reply has seen everything that matched it up to here.
    for (const v of this.views.keys()) v.deliver(ev);
    this.emit("event", ev);
    if (ev.kind) this.emit(ev.kind, ev);
  }

  #agentChanged(ev) {
    let rec = ev.agent_record;
    if (!rec && ev.presence) {
      const old = this.agents.get(ev.presence.agent);
      if (old) rec = { ...old, status: ev.presence.to, status_since: ev.at };
    }
    if (!rec) return;
    this.agents.set(rec.id, rec);
    if (this.me && rec.id === this.me.id) this.me = { ...this.me, ...rec };
  }

  #notified(n) {
    if (!n || (this.me && n.agent !== this.me.id)) return;
    if (this.notifications.items.some((x) => x.seq === n.seq)) return;
    // One that arrives live was not made while the agent was away, so the
    // list no longer is only that.
    this.#setNotifications([n, ...this.notifications.items], false);
  }

  #setNotifications(items, fromHello) {
    const byWho = new Map();
    for (const n of items) {
      const key = n.by?.id || n.by?.role || "";
      const g = byWho.get(key) || { by: n.by, count: 0 };
      g.count++;
      byWho.set(key, g);
    }
    this.notifications = { total: items.length, by_who: [...byWho.values()], items };
    this.notificationsFromHello = fromHello && items.length > 0;
    this.emit("notifications", this.notifications);
  }

  #failPending(code) {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ProtocolError(code, `${p.op}: connection lost before the reply`));
      this.pending.delete(id);
    }
  }

  /** Sends a ping when nothing has arrived for a while; its timeout (like
   * any request's) drops a dead socket. */
  #heartbeat() {
    if (!this.open || this.pinging || Date.now() - this.lastHeard < HEARTBEAT_EVERY) return;
    this.pinging = true;
    this.request("ping", {}, { timeout: HEARTBEAT_TIMEOUT })
      .catch(() => {}) // a timeout has dropped the socket already
      .finally(() => { this.pinging = false; });
  }

  /** Drops ws (if it is still the current socket) as closed abnormally. */
  #drop(ws, reason) {
    if (!ws || ws !== this.ws) return;
    this.ws = null; // from here on its own close event is ignored
    ws.close(4000, reason);
    this.#closed(1006, reason);
  }

  #closed(code, reason) {
    clearTimeout(this.helloTimer);
    clearInterval(this.heartbeatTimer);
    this.ws = null;
    this.#failPending("disconnected");
    for (const v of this.views.keys()) v.suspend();

    if (code === Close.LOGGED_OUT) {
      this.#setState({ status: "logged_out", code, reason });
      return;
    }
    if (code === Close.TOKEN_EXPIRED) {
      this.#setState({ status: "token_expired", code, reason });
      this.emit("token_expired");
      return;
    }
    if (this.state.status === "closed") return;

    let attempt = this.state.attempt;
    // A slow consumer only needs to catch up: go again at once.
    if (code === Close.SLOW_CONSUMER) attempt = 0;
    const step = Math.min(BACKOFF_MAX, BACKOFF_BASE * 2 ** attempt);
    let delay = step / 2 + Math.random() * (step / 2);
    if (code === Close.RATE_LIMITED) delay = Math.max(delay, 5_000);
    if (code === Close.SLOW_CONSUMER) delay = Math.random() * 250;
    const retryAt = Date.now() + delay;
    this.#setState({ status: "waiting", attempt: attempt + 1, retryAt, code, reason });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}

/**
 * A live, filtered list of one queue (new or pending). Read `items`
 * (newest activity first), `counts` ({total, unowned, mine, others,
 * matching}) and `status` ("loading", "ready", "stale" while disconnected,
 * "error"); listen with view.on("change", fn). Make one with client.view().
 */
export class View extends Emitter {
  constructor(client, queue, filter, limit) {
    super();
    this.client = client;
    this.queue = queue;
    this.filter = filter;
    this.limit = limit;
    this.id = "";
    this.items = [];
    this.counts = { total: 0, unowned: 0, mine: 0, others: 0, matching: 0 };
    this.next = "";
    this.seq = 0;
    this.status = "loading";
    this.error = null;
    this.buffer = null;
    this.countsTimer = 0;
  }

  /** Changes the ownership filter and re-subscribes. */
  setFilter(filter) {
    this.filter = filter;
    this.#unsubscribe();
    this.items = [];
    this.next = "";
    this.status = "loading";
    this.emit("change", { type: "reset" });
    if (this.client.open) this.subscribe();
  }

  /** Stops the view. */
  close() {
    this.#unsubscribe();
    clearTimeout(this.countsTimer);
    this.client.views.delete(this);
  }

  /** Loads the next page of the queue (items past the first page). */
  async loadMore() {
    if (!this.next) return;
    const res = await this.client.request("page", {
      queue: this.queue,
      filter: this.filter,
      limit: this.limit,
      cursor: this.next,
    });
    const have = new Set(this.items.map((c) => c.id));
    for (const c of res.items || []) if (!have.has(c.id)) this.items.push(c);
    this.#sort();
    this.next = res.next || "";
    this.emit("change", { type: "page" });
  }

  /** True when a conversation state matches this view. */
  matches(state) {
    return matches(this.queue, this.filter, this.client.me?.id, state);
  }

  // Called by the client -----------------------------------------------

  /** Subscribes (again). With resume, asks for the events after the
   * view's seq; otherwise asks for a first page. */
  async subscribe({ resume = false } = {}) {
    // Only a view that was showing a list when the connection dropped can
    // resume; one whose filter changed meanwhile needs a first page.
    resume = resume && this.status === "stale" && this.seq > 0;
    this.#unsubscribe();
    const id = `v${this.client.nextView++}`;
    this.id = id;
    this.buffer = [];
    if (!resume) this.status = "loading";
    const req = { view: id, queue: this.queue, filter: this.filter, limit: this.limit };
    if (resume) req.since = this.seq;
    let res;
    try {
      res = await this.client.request("subscribe", req);
    } catch (err) {
      if (this.id !== id) return;
      this.buffer = null;
      this.status = err.code === "disconnected" ? "stale" : "error";
      this.error = err;
      this.emit("change", { type: "error", error: err });
      return;
    }
    if (this.id !== id) return; // the filter changed meanwhile
    const buffered = this.buffer || [];
    this.buffer = null;
    this.error = null;
    if (res.resumed && !res.resync) {
      this.status = "ready";
      for (const ev of res.events || []) {
        this.#apply(ev);
        this.client.emit("event", ev);
        this.client.emit("conversation", ev);
      }
      this.seq = Math.max(this.seq, res.seq || 0);
    } else {
      this.items = (res.items || []).slice();
      this.#sort();
      this.counts = { ...this.counts, ...(res.counts || {}) };
      this.next = res.next || "";
      this.seq = res.seq || 0;
      this.status = "ready";
    }
    // Events that raced the reply: only those after its seq are news.
    for (const ev of buffered) if (ev.seq > this.seq) this.#apply(ev);
    this.emit("change", { type: res.resumed && !res.resync ? "resumed" : "reset" });
    if (res.resumed && !res.resync) this.#refreshCountsSoon();
  }

  /** Marks the view stale while the connection is down. */
  suspend() {
    this.id = "";
    this.buffer = null;
    if (this.status === "ready") this.status = "stale";
    this.emit("change", { type: "stale" });
  }

  /** Takes one event from the client, in sequence order. */
  deliver(ev) {
    if (this.buffer) {
      this.buffer.push(ev);
      return;
    }
    if (this.status !== "ready") return;
    if (ev.kind === "conversation" && ev.seq > this.seq) {
      const change = this.#apply(ev);
      if (change) this.emit("change", change);
    }
    if (typeof ev.seq === "number") this.seq = Math.max(this.seq, ev.seq);
  }

  #apply(ev) {
    this.seq = Math.max(this.seq, ev.seq || 0);
    if (ev.kind !== "conversation" || !ev.conv) return null;
    const conv = ev.conv;
    const was = ev.prev ? this.matches(ev.prev) : false;
    const now = this.matches(conv);
    this.#count(ev.prev, -1, was);
    this.#count(conv, +1, now);
    if (this.filter.kind !== "all") this.#refreshCountsSoon();

    const i = this.items.findIndex((c) => c.id === conv.id);
    if (now) {
      if (i >= 0) this.items[i] = conv;
      else this.items.push(conv);
      this.#sort();
      return { type: was ? "update" : "enter", conv, event: ev };
    }
    if (i >= 0) this.items.splice(i, 1);
    return was || i >= 0 ? { type: "leave", conv, event: ev } : null;
  }

  // #count adjusts the queue's counts for a state leaving (-1) or entering
  // (+1) this view's queue. Exact for the "all" filter, which sees every
  // change of the queue; other filters do not see changes that never touch
  // them, so their per-owner counts are refreshed from the hub shortly
  // after (see #refreshCountsSoon).
  #count(state, delta, matching) {
    if (!state || state.queue !== this.queue) return;
    const c = this.counts;
    const owner = state.owner || "";
    const me = this.client.me?.id;
    const key = owner === "" ? "unowned" : owner === me ? "mine" : "others";
    c.total = Math.max(0, c.total + delta);
    c[key] = Math.max(0, c[key] + delta);
    if (matching) c.matching = Math.max(0, c.matching + delta);
  }

  #refreshCountsSoon() {
    clearTimeout(this.countsTimer);
    this.countsTimer = setTimeout(async () => {
      if (!this.client.open || this.status !== "ready") return;
      const id = this.id;
      try {
        const res = await this.client.request("page", { queue: this.queue, filter: this.filter, limit: 1 });
        // Only counts at least as new as what the view shows are better.
        if (this.id === id && res.seq >= this.seq && res.counts) {
          this.counts = { ...res.counts };
          this.emit("change", { type: "counts" });
        }
      } catch {
        // The next event or reconnect tries again.
      }
    }, 1_000);
  }

  // #sort keeps the hub's order: latest activity first, then id. The hub
  // orders by the nanosecond, so conversations active within the same
  // millisecond (an import, a burst of inbound) must not be tied here.
  #sort() {
    const key = new Map(this.items.map((c) => [c, timeKey(c.last_activity)]));
    this.items.sort((a, b) => {
      const [am, an] = key.get(a);
      const [bm, bn] = key.get(b);
      return bm - am || bn - an || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    });
  }

  #unsubscribe() {
    const id = this.id;
    this.id = "";
    this.buffer = null;
    if (id && this.client.open) this.client.request("unsubscribe", { view: id }).catch(() => {});
  }
}
