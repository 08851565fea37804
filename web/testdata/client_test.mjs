// Tests of static/client.js against a scripted WebSocket, run by node's
// built-in test runner (web_test.go runs it when node is installed):
//   node --test web/testdata/client_test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import { Client, matches, decodeToken, Close } from "../static/client.js";

// FakeSocket stands in for the browser's WebSocket: the test plays the hub.
class FakeSocket {
  static all = [];
  constructor(url, protocol) {
    this.url = new URL(url);
    this.protocol = protocol;
    this.sent = [];
    this.closed = null;
    FakeSocket.all.push(this);
    queueMicrotask(() => this.onopen?.());
  }
  send(s) {
    this.sent.push(JSON.parse(s));
  }
  close(code = 1000, reason = "") {
    if (this.closed) return;
    this.closed = { code, reason };
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }
  // hub side
  push(...msgs) {
    this.onmessage?.({ data: msgs.map((m) => JSON.stringify(m)).join("\n") });
  }
  drop(code, reason = "") {
    this.closed = { code, reason };
    this.onclose?.({ code, reason });
  }
  lastRequest(op) {
    return [...this.sent].reverse().find((m) => m.op === op);
  }
  reply(req, result) {
    this.push({ type: "reply", id: req.id, ok: true, result });
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));

function hello(extra = {}) {
  return {
    type: "hello", v: 1, seq: 10,
    me: { id: "bea", name: "Bea", role: "agent", status: "online" },
    agents: [
      { id: "al", name: "Al", role: "agent", status: "away" },
      { id: "bea", name: "Bea", role: "agent", status: "online" },
    ],
    settings: { remove_ownership: false, offline_grace: 60 },
    notifications: { total: 0, by_who: [], items: [] },
    channels: ["email"], limits: {}, resumed: false, resync: false, missed: [],
    ...extra,
  };
}

function conv(id, queue, owner, at = "2026-11-21T10:00:00Z", version = 1) {
  return { id, channel: "email", customer: id.toUpperCase(), queue, owner, version, last_activity: at };
}

function convEvent(seq, c, prev) {
  return { type: "event", seq, at: "2026-11-21T10:00:00Z", kind: "conversation", reason: "manual_assign", conv: c, prev };
}

async function connected(opts = {}) {
  FakeSocket.all = [];
  const client = new Client({ token: "t", url: "ws://hub.test/ws", WebSocket: FakeSocket, requestTimeout: 200, ...opts });
  client.connect();
  const ws = FakeSocket.all.at(-1);
  await tick();
  ws.push(hello());
  return { client, ws };
}

test("matches follows the protocol's filters", () => {
  const s = (queue, owner) => ({ queue, owner });
  assert.equal(matches("new", { kind: "all" }, "bea", s("new", "")), true);
  assert.equal(matches("new", { kind: "all" }, "bea", s("pending", "")), false);
  assert.equal(matches("new", { kind: "unowned" }, "bea", s("new", "al")), false);
  assert.equal(matches("new", { kind: "mine" }, "bea", s("new", "bea")), true);
  assert.equal(matches("new", { kind: "others" }, "bea", s("new", "bea")), false);
  assert.equal(matches("new", { kind: "others" }, "bea", s("new", "al")), true);
  assert.equal(matches("new", { kind: "others" }, "bea", s("new", "")), false);
  assert.equal(matches("new", { kind: "agents", agents: ["al"] }, "bea", s("new", "al")), true);
  assert.equal(matches("new", { kind: "agents", agents: ["al"] }, "bea", s("new", "")), false);
  assert.equal(matches("new", { kind: "all" }, "bea", null), false);
});

test("decodeToken reads claims and refuses junk", () => {
  const payload = Buffer.from(JSON.stringify({ sub: "bea", name: "Béa", exp: 1 })).toString("base64url");
  assert.deepEqual(decodeToken(`x.${payload}.y`), { sub: "bea", name: "Béa", exp: 1 });
  assert.equal(decodeToken("not a token"), null);
});

test("connects with access_token and the protocol, and keeps hello's snapshot", async () => {
  const { client, ws } = await connected();
  assert.equal(ws.url.searchParams.get("access_token"), "t");
  assert.equal(ws.url.searchParams.get("since"), null);
  assert.equal(ws.protocol, "presencehub.v1");
  assert.equal(client.state.status, "open");
  assert.equal(client.me.id, "bea");
  assert.equal(client.agents.get("al").status, "away");
  assert.equal(client.seq, 10);
  client.close();
});

test("splits frames on newlines and answers requests by id", async () => {
  const { client, ws } = await connected();
  const a = client.request("settings");
  const b = client.request("assign", { conv: "c1", agent: "al", version: 3 });
  const [ra, rb] = ws.sent.slice(-2);
  assert.equal(rb.op, "assign");
  assert.equal(rb.version, 3);
  assert.notEqual(ra.id, rb.id);
  // Both replies in one frame, in the other order.
  ws.push(
    { type: "reply", id: rb.id, ok: false, error: { code: "conflict", message: "changed" } },
    { type: "reply", id: ra.id, ok: true, result: { settings: { offline_grace: 30 } } },
  );
  assert.deepEqual(await a, { settings: { offline_grace: 30 } });
  await assert.rejects(b, (err) => err.code === "conflict" && err.message === "changed");
  client.close();
});

test("a request with no reply times out", async () => {
  const { client } = await connected();
  await assert.rejects(client.request("settings"), (err) => err.code === "timeout");
  client.close();
});

test("a request with no reply means a dead socket: it is dropped and the client reconnects", async () => {
  const { client, ws } = await connected();
  await assert.rejects(client.request("history", { conv: "c1" }), { code: "timeout" });
  assert.equal(ws.closed?.code, 4000, "the silent socket is closed");
  assert.equal(client.state.status, "waiting", "the client waits to reconnect");
  assert.equal(client.state.code, 1006);
  client.close();
});

test("workspace events update agents, settings and notifications", async () => {
  const { client, ws } = await connected();
  let notified = 0;
  client.on("notifications", () => notified++);
  ws.push(
    { type: "event", seq: 11, kind: "presence", at: "2026-11-21T10:01:00Z", presence: { agent: "al", from: "away", to: "online", reason: "available" } },
    { type: "event", seq: 12, kind: "settings", settings: { remove_ownership: true } },
    { type: "event", seq: 13, kind: "notification", notification: { seq: 13, agent: "bea", conversation: "c7", by: { id: "al", name: "Al", role: "agent" } } },
  );
  assert.equal(client.agents.get("al").status, "online");
  assert.equal(client.settings.remove_ownership, true);
  assert.equal(client.notifications.total, 1);
  assert.deepEqual(client.notifications.by_who, [{ by: { id: "al", name: "Al", role: "agent" }, count: 1 }]);
  assert.equal(notified, 1);
  assert.equal(client.seq, 13);

  const read = client.markNotificationsRead(13);
  ws.reply(ws.lastRequest("notifications_read"), { read: 1 });
  await read;
  assert.equal(client.notifications.total, 0);
  client.close();
});

test("a view applies enter, leave and change, and its counts", async () => {
  const { client, ws } = await connected();
  const view = client.view({ queue: "new", filter: { kind: "mine" } });
  const sub = ws.lastRequest("subscribe");
  assert.deepEqual(sub.filter, { kind: "mine" });
  assert.equal(sub.queue, "new");
  // An event racing the reply: after the page's seq, so it is news.
  ws.push(convEvent(21, conv("c3", "new", "bea", "2026-11-21T10:05:00Z"), { queue: "new", owner: "" }));
  ws.reply(sub, {
    view: sub.view, seq: 20, next: "",
    items: [conv("c1", "new", "bea", "2026-11-21T10:00:00Z"), conv("c2", "new", "bea", "2026-11-21T10:01:00Z")],
    counts: { total: 5, unowned: 2, mine: 2, others: 1, matching: 2 },
  });
  await tick();
  assert.deepEqual(view.items.map((c) => c.id), ["c3", "c2", "c1"]);
  assert.equal(view.counts.matching, 3);

  // Left: given away to Al.
  ws.push(convEvent(22, conv("c1", "new", "al"), { queue: "new", owner: "bea" }));
  assert.deepEqual(view.items.map((c) => c.id), ["c3", "c2"]);
  assert.equal(view.counts.matching, 2);
  assert.equal(view.counts.mine, 2);
  assert.equal(view.counts.others, 2);
  // Changed: still mine, newer activity moves it up.
  ws.push(convEvent(23, conv("c2", "new", "bea", "2026-11-21T10:09:00Z", 2), { queue: "new", owner: "bea" }));
  assert.deepEqual(view.items.map((c) => c.id), ["c2", "c3"]);
  assert.equal(view.items[0].version, 2);
  // Left the queue: moved to pending.
  ws.push(convEvent(24, conv("c3", "pending", "bea"), { queue: "new", owner: "bea" }));
  assert.deepEqual(view.items.map((c) => c.id), ["c2"]);
  assert.equal(view.counts.total, 4);
  // Duplicates (at or before the view's seq) change nothing.
  ws.push(convEvent(24, conv("c9", "new", "bea"), { queue: "new", owner: "" }));
  assert.deepEqual(view.items.map((c) => c.id), ["c2"]);
  view.close();
  client.close();
});

test("changing the filter re-subscribes the view", async () => {
  const { client, ws } = await connected();
  const view = client.view({ queue: "pending", filter: { kind: "all" } });
  const first = ws.lastRequest("subscribe");
  ws.reply(first, { view: first.view, seq: 10, items: [conv("c1", "pending", "")], counts: { total: 1, matching: 1 } });
  await tick();
  view.setFilter({ kind: "agents", agents: ["al"] });
  const unsub = ws.lastRequest("unsubscribe");
  assert.equal(unsub.view, first.view);
  const second = ws.lastRequest("subscribe");
  assert.notEqual(second.view, first.view);
  assert.deepEqual(second.filter, { kind: "agents", agents: ["al"] });
  assert.equal(second.since, undefined);
  // A late reply to the old subscription must not overwrite the new one.
  ws.reply(second, { view: second.view, seq: 12, items: [], counts: { total: 1, matching: 0 } });
  await tick();
  assert.deepEqual(view.items, []);
  view.close();
  client.close();
});

test("after a drop it reconnects with since and resumes its views", async () => {
  const { client, ws } = await connected();
  const states = [];
  client.on("state", (s) => states.push(s.status));
  const view = client.view({ queue: "new", filter: { kind: "all" } });
  const sub = ws.lastRequest("subscribe");
  ws.reply(sub, { view: sub.view, seq: 30, items: [conv("c1", "new", "")], counts: { total: 1, unowned: 1, matching: 1 } });
  await tick();
  ws.push(convEvent(31, conv("c1", "new", "al"), { queue: "new", owner: "" }));
  const pending = client.request("settings");

  ws.drop(1006);
  await assert.rejects(pending, (err) => err.code === "disconnected");
  assert.equal(client.state.status, "waiting");
  assert.ok(client.state.retryAt > Date.now() - 1);
  assert.equal(view.status, "stale");

  client.reconnectNow();
  const ws2 = FakeSocket.all.at(-1);
  assert.notEqual(ws2, ws);
  assert.equal(ws2.url.searchParams.get("since"), "31");
  await tick();
  ws2.push(hello({ seq: 40, resumed: true }));
  const again = ws2.lastRequest("subscribe");
  assert.equal(again.since, 31);
  ws2.reply(again, {
    view: again.view, seq: 40, resumed: true,
    events: [
      { seq: 33, kind: "conversation", conv: conv("c2", "new", ""), prev: null },
      { seq: 35, kind: "conversation", conv: conv("c1", "pending", "al"), prev: { queue: "new", owner: "al" } },
    ],
  });
  await tick();
  assert.deepEqual(view.items.map((c) => c.id), ["c2"]);
  assert.equal(view.status, "ready");
  assert.equal(client.state.status, "open");
  assert.ok(states.includes("waiting") && states.at(-1) === "open");
  view.close();
  client.close();
});

test("a resync reply replaces the view", async () => {
  const { client, ws } = await connected();
  const view = client.view({ queue: "new" });
  const sub = ws.lastRequest("subscribe");
  ws.reply(sub, { view: sub.view, seq: 30, items: [conv("c1", "new", "")], counts: { total: 1, matching: 1 } });
  await tick();
  ws.drop(Close.GOING_AWAY);
  client.reconnectNow();
  const ws2 = FakeSocket.all.at(-1);
  await tick();
  ws2.push(hello({ seq: 9000, resumed: true }));
  const again = ws2.lastRequest("subscribe");
  ws2.reply(again, { view: again.view, seq: 9000, resync: true, items: [conv("c8", "new", "")], counts: { total: 1, matching: 1 } });
  await tick();
  assert.deepEqual(view.items.map((c) => c.id), ["c8"]);
  view.close();
  client.close();
});

test("4001 stops reconnecting; 4002 asks for a token", async () => {
  {
    const { client, ws } = await connected();
    ws.drop(Close.LOGGED_OUT, "logged out");
    assert.equal(client.state.status, "logged_out");
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(FakeSocket.all.length, 1, "reconnected after 4001");
    client.close();
  }
  {
    const { client, ws } = await connected();
    let asked = 0;
    client.on("token_expired", () => asked++);
    ws.drop(Close.TOKEN_EXPIRED);
    assert.equal(client.state.status, "token_expired");
    assert.equal(asked, 1);
    client.setToken("t2");
    const ws2 = FakeSocket.all.at(-1);
    assert.equal(ws2.url.searchParams.get("access_token"), "t2");
    client.close();
  }
});

test("backoff grows with each failure and stays jittered and bounded", async () => {
  FakeSocket.all = [];
  const client = new Client({ token: "t", url: "ws://hub.test/ws", WebSocket: FakeSocket });
  client.connect();
  const delays = [];
  for (let i = 0; i < 10; i++) {
    const ws = FakeSocket.all.at(-1);
    const before = Date.now();
    ws.drop(1006);
    delays.push(client.state.retryAt - before);
    client.reconnectNow();
  }
  const step = (i) => Math.min(30_000, 500 * 2 ** i);
  delays.forEach((d, i) => {
    assert.ok(d >= step(i) / 2 - 5 && d <= step(i) + 5, `attempt ${i}: delay ${d} outside [${step(i) / 2}, ${step(i)}]`);
  });
  client.close();
});
