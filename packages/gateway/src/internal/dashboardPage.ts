/**
 * The dashboard page's markup, style and script: one document, nothing
 * fetched but `/status/stream` (and the demo's `/admin/outage` when its
 * buttons are on). Standard APIs only (EventSource, fetch, SVG), so it runs
 * in any current browser; every value from the stream is written with
 * `textContent` or as an attribute, never parsed as markup.
 */

/** What the page is built with. */
export interface PageOptions {
  /** Colours by source and breaker state (`Palette`). */
  readonly colours: {
    readonly source: Readonly<Record<string, string>>
    readonly breakerState: Readonly<Record<string, string>>
  }
  /** Source labels, in the order the chart stacks them. */
  readonly sources: ReadonlyArray<readonly [string, string]>
  /** Show the demo's outage buttons. */
  readonly controls: boolean
}

const style = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f6f7f9;color:#1d2127}
header{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;padding:10px 16px;background:#1d2127;color:#fff}
header h1{font-size:16px;margin:0}
.badge{padding:2px 8px;border-radius:10px;font-size:12px;background:#555}
.badge.ok{background:#38761d}.badge.bad{background:#cc0000}
#controls{display:flex;flex-wrap:wrap;gap:6px;margin-left:auto}
button{font:inherit;padding:4px 10px;border-radius:4px;border:1px solid #888;background:#fff;cursor:pointer}
main{padding:12px 16px;display:grid;gap:12px;grid-template-columns:repeat(auto-fill,minmax(300px,1fr))}
section{background:#fff;border-radius:6px;box-shadow:0 1px 2px rgba(0,0,0,.15);padding:10px 12px;min-width:0}
section.wide{grid-column:1/-1}
h2{font-size:14px;margin:0 0 6px}
.tile{border-left:8px solid #ccc}
.tile .state{font-weight:bold;text-transform:uppercase;font-size:12px;padding:1px 6px;border-radius:3px}
.row{display:flex;justify-content:space-between;gap:8px;font-size:13px}
.row>span:last-child{white-space:nowrap;text-align:right}
.muted{color:#666;font-size:12px}
.bar{position:relative;height:8px;background:#eee;border-radius:4px;margin:2px 0 6px}
.bar>.fill{position:absolute;left:0;top:0;bottom:0;border-radius:4px;background:#3d85c6}
.bar>.limit{position:absolute;top:-3px;bottom:-3px;width:2px;background:#cc0000}
ul{list-style:none;margin:0;padding:0}
li{padding:2px 0;font-size:13px}
#chart{width:100%;height:180px;display:block}
#legend{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px;margin-top:4px}
#legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}
#transitions li{border-bottom:1px solid #eee;font-family:ui-monospace,monospace;font-size:12px}
@media (max-width:600px){main{padding:8px;grid-template-columns:1fr}header{padding:8px}}
`

// The script is plain ES2017 in a string: no bundler, no template literals (this file's own are the page's).
const script = `
"use strict";
var C = window.DASHBOARD;
var H = 180; // seconds the chart shows
var $ = function (id) { return document.getElementById(id); };
var el = function (tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
};
var traffic = new Map(); // second (epoch ms) -> counts by source
var lastSeq = 0;
var snap = null;
var received = 0;

var secs = function (ms) { return ms <= 0 ? "now" : (ms / 1000).toFixed(1) + " s"; };
var pct = function (r) { return (r * 100).toFixed(0) + "%"; };
// Countdowns are drawn from a snapshot only: the gateway's time (its Clock) at the snapshot, advanced by the
// browser's monotonic clock since it arrived. The browser's wall clock, which may be off, is never read.
var serverNow = function () { return snap.at + (performance.now() - received); };
var until = function (iso) { return iso === null ? null : Date.parse(iso) - serverNow(); };

function bar(value, limit) {
  var b = el("div", "bar");
  var f = el("div", "fill");
  f.style.width = Math.min(100, value * 100) + "%";
  if (limit !== null && value >= limit) f.style.background = C.colours.breakerState.open;
  b.appendChild(f);
  if (limit !== null) { var l = el("div", "limit"); l.style.left = Math.min(100, limit * 100) + "%"; b.appendChild(l); }
  return b;
}

function row(label, value) {
  var r = el("div", "row");
  r.appendChild(el("span", "", label));
  r.appendChild(el("span", "", value));
  return r;
}

function tile(d) {
  var t = el("section", "tile");
  var cb = d.circuitBreaker;
  var state = cb === null ? "none" : cb.state;
  t.dataset.deployment = d.name;
  t.dataset.state = state;
  t.style.borderLeftColor = C.colours.breakerState[state] || "#ccc";
  var h = el("h2", "", d.name + " ");
  var s = el("span", "state", state);
  s.style.background = C.colours.breakerState[state] || "#eee";
  if (state === "open" || state === "forced-open") s.style.color = "#fff";
  h.appendChild(s);
  t.appendChild(h);
  t.appendChild(el("div", "muted", d.provider + " · " + d.model + (d.canServe ? " · can serve" : " · cannot serve")));
  if (cb !== null) {
    if (cb.retryAt !== null) t.appendChild(row("half-open in", secs(until(cb.retryAt))));
    var th = d.thresholds;
    if (th !== null && th.kind === "consecutive") {
      t.appendChild(row("failures in a row", cb.consecutiveFailures + " / " + th.failures));
      t.appendChild(bar(cb.consecutiveFailures / th.failures, 1));
    }
    // Rates and a window exist in failure-rate mode only; a consecutive breaker counts failures in a row.
    if (d.rates !== null && th !== null && th.kind === "failure-rate") {
      var rated = d.rates.rated ? "" : " (not rated yet: " + cb.calls + "/" + th.minimumCalls + " calls)";
      t.appendChild(row("failure rate" + rated, pct(d.rates.failureRate) + " / " + pct(th.failureRate)));
      t.appendChild(bar(d.rates.failureRate, th.failureRate));
      t.appendChild(row("slow rate", pct(d.rates.slowCallRate) + (th.slowCallRate === null ? "" : " / " + pct(th.slowCallRate))));
      t.appendChild(bar(d.rates.slowCallRate, th.slowCallRate));
      t.appendChild(row("window", cb.calls + " calls, " + cb.failures + " failed, " + cb.slowCalls + " slow"));
    }
    t.appendChild(row("refused while open", cb.notPermitted + " (openings " + cb.openings + ")"));
  }
  t.appendChild(row("latency p50 / p99", d.latency === null ? "–" : d.latency.p50 + " / " + d.latency.p99 + " ms"));
  if (d.bulkhead !== null) {
    t.appendChild(row("bulkhead in use / queued", d.bulkhead.running + "/" + d.bulkhead.maxConcurrent + " · " + d.bulkhead.queued + "/" + d.bulkhead.maxQueue));
  }
  if (d.adaptiveLimit !== null) {
    t.appendChild(row("adaptive limit", d.adaptiveLimit.running + " / " + d.adaptiveLimit.limit + (d.adaptiveLimit.queued > 0 ? " · " + d.adaptiveLimit.queued + " waiting" : "")));
  }
  var lim = function (name, l) {
    // A bucket refills continuously: show whole requests and tokens.
    if (l.requests !== null) t.appendChild(row(name + " requests left", Math.floor(l.requests.available) + " / " + l.requests.capacity));
    if (l.tokens !== null) t.appendChild(row(name + " tokens left", Math.floor(l.tokens.available) + " / " + l.tokens.capacity));
    if (l.pausedUntil !== null) t.appendChild(row(name + " paused", secs(until(l.pausedUntil))));
  };
  if (d.rateLimiter !== null) lim("limiter", d.rateLimiter);
  if (d.keyRateLimiters !== null) Object.keys(d.keyRateLimiters).forEach(function (k) { lim("limiter of " + k, d.keyRateLimiters[k]); });
  if (d.keys !== null) {
    t.appendChild(el("div", "muted", "keys (" + d.keys.healthy + " healthy)"));
    var ul = el("ul");
    d.keys.keys.forEach(function (k) {
      var li = el("li", "key");
      li.dataset.key = k.name;
      li.dataset.state = k.state;
      var left = until(k.cooldownUntil);
      li.textContent = (k.state === "healthy" ? "● " : "○ ") + k.name + ": " + k.state +
        (left !== null && left > 0 ? " for " + secs(left) : "") +
        (k.lastError !== null ? " (" + k.lastError + ")" : "") + " · " + k.picks + " picks";
      ul.appendChild(li);
    });
    t.appendChild(ul);
  }
  return t;
}

function renderTiles() {
  var box = $("tiles");
  box.replaceChildren.apply(box, snap.deployments.map(tile));
  var ready = $("ready");
  ready.textContent = snap.ready ? "ready" : "not ready";
  ready.className = "badge " + (snap.ready ? "ok" : "bad");
}

function addTraffic(seconds) {
  seconds.forEach(function (s) { traffic.set(s.at, s.counts); });
  var oldest = snap.at - (H + 5) * 1000;
  traffic.forEach(function (_, at) { if (at < oldest) traffic.delete(at); });
}

function renderChart() {
  var svg = $("chart");
  var W = 600, HH = 160;
  var end = Math.floor(snap.at / 1000) * 1000 - 1000; // the last complete second
  var cols = [];
  var max = 1;
  for (var i = 0; i < H; i++) {
    var c = traffic.get(end - (H - 1 - i) * 1000) || {};
    var sum = 0;
    C.sources.forEach(function (s) { sum += c[s[0]] || 0; });
    max = Math.max(max, sum);
    cols.push(c);
  }
  var x = function (i) { return (i / H) * W; };
  var y = function (v) { return HH - (v / max) * (HH - 10); };
  var base = new Array(H).fill(0);
  var NS = "http://www.w3.org/2000/svg";
  var shapes = [];
  C.sources.forEach(function (s) {
    var up = [], down = [];
    var any = false;
    for (var i = 0; i < H; i++) {
      var v = cols[i][s[0]] || 0;
      if (v > 0) any = true;
      up.push(x(i) + "," + y(base[i] + v), x(i + 1) + "," + y(base[i] + v));
      down.unshift(x(i + 1) + "," + y(base[i]), x(i) + "," + y(base[i]));
      base[i] += v;
    }
    if (!any) return;
    var p = document.createElementNS(NS, "polygon");
    p.setAttribute("points", up.concat(down).join(" "));
    p.setAttribute("fill", C.colours.source[s[0]]);
    p.dataset.source = s[0];
    shapes.push(p);
  });
  svg.replaceChildren.apply(svg, shapes);
  $("scale").textContent = "top: " + max.toFixed(0) + " req/s";
  // The legend carries each source's rate over the last 5 complete seconds.
  C.sources.forEach(function (s) {
    var n = 0;
    for (var i = H - 5; i < H; i++) n += cols[i][s[0]] || 0;
    var item = document.querySelector('#legend [data-source="' + s[0] + '"]');
    item.dataset.rate = String(n / 5);
    item.lastChild.textContent = s[1] + " " + (n / 5).toFixed(1) + "/s";
  });
}

function addTransition(t) {
  if (t.seq <= lastSeq) return;
  lastSeq = t.seq;
  var list = $("transitions");
  var li = el("li", "", new Date(t.at).toISOString().slice(11, 23) + "  " + t.kind + " " + t.subject + ": " + t.from + " → " + t.to + " (" + t.reason + ")");
  li.dataset.kind = t.kind;
  li.dataset.to = t.to;
  list.insertBefore(li, list.firstChild);
  while (list.children.length > 50) list.removeChild(list.lastChild);
}

function onSnapshot(s) {
  snap = s;
  received = performance.now();
  addTraffic(s.traffic);
  renderTiles();
  renderChart();
}

function connect() {
  var conn = $("conn");
  var source = new EventSource("status/stream");
  source.addEventListener("open", function () { conn.textContent = "live"; conn.className = "badge ok"; });
  source.addEventListener("error", function () { conn.textContent = "reconnecting"; conn.className = "badge bad"; });
  source.addEventListener("hello", function (e) {
    var m = JSON.parse(e.data);
    traffic.clear();
    m.transitions.forEach(addTransition);
    onSnapshot(m.snapshot);
  });
  source.addEventListener("snapshot", function (e) { onSnapshot(JSON.parse(e.data).snapshot); });
  source.addEventListener("transition", function (e) { addTransition(JSON.parse(e.data).transition); });
}

function legend() {
  var box = $("legend");
  C.sources.forEach(function (s) {
    var item = el("span");
    item.dataset.source = s[0];
    item.dataset.rate = "0";
    var sw = el("i");
    sw.style.background = C.colours.source[s[0]];
    item.appendChild(sw);
    item.appendChild(el("span", "", s[1]));
    box.appendChild(item);
  });
}

function controls() {
  var box = $("controls");
  if (box === null) return;
  var send = function (method, body) {
    return function () {
      var init = { method: method };
      if (body !== undefined) { init.body = JSON.stringify(body); init.headers = { "content-type": "application/json" }; }
      fetch("admin/outage", init).then(function (r) { $("said").textContent = r.ok ? "" : "admin: " + r.status; },
        function (e) { $("said").textContent = "admin: " + e; });
    };
  };
  $("down").addEventListener("click", send("POST", { deployment: "primary", seconds: 60 }));
  $("storm").addEventListener("click", send("POST", { deployment: "primary", seconds: 30, kind: "rate-limit" }));
  $("up").addEventListener("click", send("DELETE"));
}

legend();
controls();
connect();
`

const controlsMarkup = `<div id="controls">
<button id="down" type="button">Primary down (60 s)</button>
<button id="storm" type="button">429 storm (30 s)</button>
<button id="up" type="button">Primary up</button>
<span id="said" class="muted"></span>
</div>`

/** `</` cannot end the inline script early when a value carries it. */
const inlineJson = (value: unknown): string => JSON.stringify(value).replace(/</g, "\\u003c")

/** The page. */
export const render = (options: PageOptions): string =>
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>resilient-ai dashboard</title>
<link rel="icon" href="data:,">
<style>${style}</style>
</head>
<body>
<header>
<h1>resilient-ai gateway</h1>
<span id="conn" class="badge">connecting</span>
<span id="ready" class="badge">…</span>
${options.controls ? controlsMarkup : ""}
</header>
<main>
<section class="wide">
<h2>Requests per second by who answered (last 3 min) <span id="scale" class="muted"></span></h2>
<svg id="chart" viewBox="0 0 600 160" preserveAspectRatio="none" role="img" aria-label="requests per second by source"></svg>
<div id="legend"></div>
</section>
<div id="tiles" style="display:contents"></div>
<section class="wide">
<h2>Last transitions</h2>
<ul id="transitions"></ul>
</section>
</main>
<script>window.DASHBOARD = ${inlineJson({ colours: options.colours, sources: options.sources })};</script>
<script>${script}</script>
</body>
</html>
`
