// GuessLyfe reference page: the public HTTP API (/v1/...) and the websocket feed, nothing else.
// Every value from the API is shown as the decimal string it arrives as (money is never parsed into
// a float); the chart alone converts prices to screen coordinates. User text (questions) is only
// ever set as textContent.
"use strict";

const view = document.getElementById("view");
const feedBadge = document.getElementById("feed");
let config = { feedUrl: null };
let socket = null;
let lastSeq = null;
const rooms = new Set(["global:all"]);
const listeners = new Set(); // (message) => void, replaced on each page
const reorgs = [];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

async function api(path, token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const r = await fetch(path, { headers });
  const body = await r.json();
  if (!r.ok) throw new Error(`${r.status} ${body.message || ""} ${(body.errors || []).map((e) => e.message).join("; ")}`);
  return body;
}

function when(t) {
  // the API and the feed send ISO times; a bare number is read as epoch seconds
  if (t == null || t === "") return "";
  return /^\d+$/.test(String(t)) ? new Date(Number(t) * 1000).toISOString().replace(".000Z", "Z") : String(t);
}
function short(addr) { return addr ? `${addr.slice(0, 6)}…${addr.slice(-4)}` : ""; }
function price(p) { return p == null ? "—" : p; }
function end(m) { return m.endDate || ""; }

// ------------------------------------------------------------------ feed

function connectFeed() {
  if (!config.feedUrl) return;
  socket = new WebSocket(config.feedUrl);
  socket.onopen = () => {
    feedBadge.textContent = "feed: live";
    feedBadge.classList.add("live");
    const frame = { op: "subscribe", rooms: [...rooms] };
    if (lastSeq !== null) frame.since = lastSeq;
    socket.send(JSON.stringify(frame));
  };
  socket.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "event" && m.seq != null) lastSeq = m.seq;
    if (m.type === "event" && m.event === "chain:reorg") reorgs.push({ at: new Date().toISOString(), data: m.data });
    for (const f of listeners) f(m);
  };
  socket.onclose = () => {
    feedBadge.textContent = "feed: reconnecting";
    feedBadge.classList.remove("live");
    setTimeout(connectFeed, 2000);
  };
}

// The feed allows a connection 50 rooms: a page keeps only its own (and global:all), so leaving a
// market's page leaves its room.
function useRooms(wanted) {
  const want = new Set(["global:all", ...wanted]);
  const leave = [...rooms].filter((r) => !want.has(r));
  const add = [...want].filter((r) => !rooms.has(r));
  rooms.clear();
  for (const r of want) rooms.add(r);
  if (!socket || socket.readyState !== WebSocket.OPEN) return;  // onopen subscribes to `rooms`
  if (leave.length) socket.send(JSON.stringify({ op: "unsubscribe", rooms: leave }));
  if (add.length) socket.send(JSON.stringify({ op: "subscribe", rooms: add }));
}

// A page whose data arrives after the user has moved on draws nothing and listens to nothing.
let shown = 0;
function stale(visit) { return visit !== shown; }

// ------------------------------------------------------------------ pages

async function marketsPage(visit) {
  view.replaceChildren(el("h1", {}, "Markets"), el("p", { class: "muted" }, "Prices move as trades arrive over the feed."));
  const body = await api("/v1/markets?limit=50&sort=createdAt:desc");
  if (stale(visit)) return;
  const rows = new Map();
  const tbody = el("tbody", {});
  for (const m of body.data) {
    const tr = el("tr", { "data-market": String(m.id) },
      el("td", {}, el("a", { href: `#/market/${m.id}` }, `#${m.id}`)),
      el("td", { class: "q" }, m.question),
      el("td", { class: "num yes", "data-field": "yesPrice" }, price(m.yesPrice)),
      el("td", { class: "num", "data-field": "volume" }, m.volume),
      el("td", { class: "num", "data-field": "trades" }, String(m.trades)),
      el("td", {}, m.status));
    rows.set(String(m.id), tr);
    tbody.append(tr);
  }
  view.append(el("table", { id: "markets" },
    el("thead", {}, el("tr", {}, el("th", {}, "id"), el("th", {}, "question"), el("th", { class: "num" }, "yes price"),
      el("th", { class: "num" }, "volume"), el("th", { class: "num" }, "trades"), el("th", {}, "status"))),
    tbody), el("p", { class: "muted" }, `as of block ${body.asOf.blockNumber ?? "—"}`));
  listeners.add((msg) => {
    if (msg.type !== "event" || msg.event !== "market:trade") return;
    const tr = rows.get(String(msg.data.marketId));
    if (!tr) return;
    const p = msg.data.yesPrice ?? msg.data.yesPriceAfter;
    if (p != null) tr.querySelector('[data-field="yesPrice"]').textContent = p;
    const trades = tr.querySelector('[data-field="trades"]');
    trades.textContent = String(Number(trades.textContent) + 1);
    tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash");
  });
}

function chart(points) {
  const w = 1000, h = 220, pad = 10;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#127a4b");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  const draw = () => {
    const n = Math.max(points.length - 1, 1);
    line.setAttribute("points", points.map((p, i) =>
      `${pad + (i * (w - 2 * pad)) / n},${h - pad - Number(p) * (h - 2 * pad)}`).join(" "));
  };
  draw();
  return { svg, add(p) { points.push(p); draw(); } };
}

function tradeRow(t) {
  return el("tr", { "data-tx": t.txHash },
    el("td", {}, when(t.time)), el("td", {}, short(t.trader)), el("td", {}, t.side),
    el("td", { class: t.outcome === "yes" ? "yes" : "no" }, t.outcome),
    el("td", { class: "num" }, t.collateral), el("td", { class: "num" }, price(t.yesPriceAfter)),
    el("td", {}, el("code", {}, short(t.txHash))));
}

async function marketPage(id, visit) {
  const [m, history, trades] = await Promise.all([
    api(`/v1/markets/${id}`), api(`/v1/markets/${id}/history?limit=500`), api(`/v1/markets/${id}/trades?limit=20`)]);
  if (stale(visit)) return;
  const d = m.data;
  const c = chart(history.data.map((p) => p.yesPrice));
  const tbody = el("tbody", {}, trades.data.map(tradeRow));
  const yes = el("div", { class: "v yes", id: "yes-price" }, price(d.yesPrice));
  view.replaceChildren(
    el("h1", {}, `#${d.id} `, d.question),
    el("div", { class: "cards" },
      el("div", { class: "card" }, el("div", { class: "k" }, "yes price"), yes),
      el("div", { class: "card" }, el("div", { class: "k" }, "volume (USDC)"), el("div", { class: "v" }, d.volume)),
      el("div", { class: "card" }, el("div", { class: "k" }, "status"), el("div", { class: "v" }, d.status)),
      el("div", { class: "card" }, el("div", { class: "k" }, "ends"), el("div", { class: "v" }, end(d).slice(0, 16)))),
    el("h2", {}, "Yes price, one point per trade"), c.svg,
    el("h2", {}, "Latest trades"),
    el("table", { id: "trades" }, el("thead", {}, el("tr", {}, ...["time", "trader", "side", "outcome", "collateral",
      "yes after", "tx"].map((h) => el("th", {}, h)))), tbody));
  useRooms([`market:${id}`]);
  listeners.add((msg) => {
    if (msg.type !== "event" || msg.event !== "market:trade" || String(msg.data.marketId) !== String(id)) return;
    const t = msg.data;
    const after = t.yesPriceAfter;  // the feed's trade speaks the HTTP trade's names and formats
    tbody.prepend(tradeRow({ time: t.time, trader: t.trader, side: t.side, outcome: t.outcome,
      collateral: t.collateral, yesPriceAfter: after, txHash: t.txHash }));
    tbody.firstChild.classList.add("flash");
    if (after != null) { yes.textContent = after; c.add(after); }
  });
}

async function walletPage(address, visit) {
  const input = el("input", { name: "address", placeholder: "0x… wallet address", value: address || "" });
  const form = el("form", { onsubmit: (e) => { e.preventDefault(); location.hash = `#/wallet/${input.value.trim()}`; } },
    input, el("button", { type: "submit" }, "Show"));
  view.replaceChildren(el("h1", {}, "Wallet"), form);
  if (!address) return;
  const [positions, holdings] = await Promise.all([
    api(`/v1/users/${address}/positions?limit=50`), api(`/v1/users/${address}/holdings?limit=50`)]);
  if (stale(visit)) return;
  view.append(el("h2", {}, "Market positions"), el("table", { id: "positions" },
    el("thead", {}, el("tr", {}, ...["market", "yes shares", "no shares", "cost", "value", "PnL"].map((h) => el("th", {}, h)))),
    el("tbody", {}, positions.data.map((p) => el("tr", {},
      el("td", {}, el("a", { href: `#/market/${p.marketId}` }, `#${p.marketId}`)),
      el("td", { class: "num" }, p.yesShares ?? ""), el("td", { class: "num" }, p.noShares ?? ""),
      el("td", { class: "num" }, p.costBasis ?? ""), el("td", { class: "num" }, p.currentValue ?? ""),
      el("td", { class: "num" }, p.totalPnl ?? ""))))));
  view.append(el("h2", {}, "Creator share holdings"), el("table", { id: "holdings" },
    el("thead", {}, el("tr", {}, ...["creator", "shares", "value", "claimable dividends", "warming up"]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, holdings.data.map((h) => el("tr", {}, el("td", {}, short(h.creator)),
      el("td", { class: "num" }, h.shares), el("td", { class: "num" }, h.value),
      el("td", { class: "num" }, h.claimableDividends),
      // shares bought on UTC day e earn dividends from 00:00 of day e+2 (docs/contracts.md)
      el("td", {}, (h.pendingLots ?? []).map((l) => `${l.shares} from ${l.earnsFrom}`).join(", ")))))));
}

async function operatorPage(visit) {
  const cards = el("div", { class: "cards", id: "indexer" });
  const token = el("input", { name: "token", placeholder: "admin token (POST /v1/auth/verify) to see the keeper's queue",
    value: sessionStorage.getItem("gl-admin-token") || "" });
  const queue = el("div", { id: "queue" });
  const reorgList = el("ul", { id: "reorgs" });
  const refresh = async () => {
    const r = await fetch("/ready");
    const b = await r.json();
    const ix = (b.checks && b.checks.indexer) || {};
    const as = b.asOf || {};
    cards.replaceChildren(...[["status", b.status || b.message], ["indexed block", as.blockNumber],
      ["lag (blocks)", ix.lag_blocks], ["head age (s)", ix.head_age_s], ["safe block", as.safeBlock],
      ["finalized block", as.finalizedBlock], ["reorgs seen", String(reorgs.length)]]
      .map(([k, v]) => el("div", { class: "card" }, el("div", { class: "k" }, k), el("div", { class: "v" }, String(v ?? "—")))));
    reorgList.replaceChildren(...reorgs.slice(-10).map((x) => el("li", {}, `${x.at}: back to block ${x.data.commonAncestor ?? "?"}`)));
    const t = token.value.trim();
    if (!t) { queue.replaceChildren(el("p", { class: "muted" }, "Paste an admin token to see the keeper's queue.")); return; }
    sessionStorage.setItem("gl-admin-token", t);
    try {
      const q = await api("/v1/admin/keeper/queue", t);
      queue.replaceChildren(el("table", {}, el("thead", {}, el("tr", {}, ...["id", "market", "outcome", "status", "by", "reason"]
        .map((h) => el("th", {}, h)))), el("tbody", {}, q.data.map((x) => el("tr", {}, el("td", {}, String(x.id)),
        el("td", {}, String(x.marketId)), el("td", {}, x.outcome), el("td", {}, x.status),
        el("td", {}, x.requestedBy || ""), el("td", { class: "q" }, x.reason || ""))))));
    } catch (e) { queue.replaceChildren(el("p", { class: "err" }, String(e.message))); }
  };
  view.replaceChildren(el("h1", {}, "Operator"), el("h2", {}, "Indexer"), cards, el("h2", {}, "Reorgs since this page opened"),
    reorgList, el("h2", {}, "Keeper queue"), el("form", { onsubmit: (e) => { e.preventDefault(); refresh(); } }, token,
      el("button", { type: "submit" }, "Load")), queue);
  await refresh();
  const timer = setInterval(() => { if (!stale(visit)) refresh(); else clearInterval(timer); }, 3000);
}

async function route() {
  const visit = ++shown;
  listeners.clear();
  useRooms([]);
  const [, page, arg] = (location.hash || "#/").split("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === (page || "markets"));
  try {
    if (page === "market") await marketPage(arg, visit);
    else if (page === "wallet") await walletPage(arg, visit);
    else if (page === "operator") await operatorPage(visit);
    else await marketsPage(visit);
  } catch (e) {
    if (!stale(visit)) view.replaceChildren(el("p", { class: "err" }, `Could not load: ${e.message}`));
  }
  if (!stale(visit)) document.body.dataset.ready = page || "markets";
}

window.addEventListener("hashchange", route);
(async () => {
  config = await (await fetch("/static/config.json")).json();
  connectFeed();
  await route();
})();
