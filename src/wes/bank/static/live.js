"use strict";
const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en-US");
let updates = 0;

function text(id, value) {
  const el = $(id);
  if (el.textContent !== value) el.textContent = value;
}

function cell(value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  return td;
}

function rows(id, items, columns, emptyText) {
  const body = $(id);
  const fresh = document.createDocumentFragment();
  for (const item of items) {
    const tr = document.createElement("tr");
    for (const [value, cls] of columns(item)) tr.appendChild(cell(value, cls));
    fresh.appendChild(tr);
  }
  if (!items.length) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "empty");
    td.colSpan = 5;
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  body.replaceChildren(fresh);
}

function chart(history, windowSeconds) {
  const svg = $("chart");
  const max = Math.max(1, ...history);
  const width = 600 / Math.max(1, history.length);
  const bars = history.map((n, i) => {
    const rect = document.createElementNS(SVG, "rect");
    const h = n ? Math.max(2, (n / max) * 86) : 0;
    rect.setAttribute("x", (i * width + 1).toFixed(1));
    rect.setAttribute("width", Math.max(1, width - 2).toFixed(1));
    rect.setAttribute("y", (90 - h).toFixed(1));
    rect.setAttribute("height", h.toFixed(1));
    const tip = document.createElementNS(SVG, "title");
    const ago = history.length - 1 - i;
    tip.textContent = (ago ? ago + " s ago: " : "this second: ") + n;
    rect.appendChild(tip);
    return rect;
  });
  svg.replaceChildren(...bars);
  text("chart-note", "last " + history.length + " s, peak " + number.format(max) +
       "; the rate above averages the last " + windowSeconds + " s");
}

function render(d) {
  const kinds = d.kinds || {};
  text("node-note", "everything on this page is owned by node " + d.node +
       "; the sessions of other users run on its peers");
  rows("peer-rows", d.peers, (p) => [[p], [p === d.node ? "this node" : "peer"]], "no peers");
  text("channels", number.format(d.channels));
  text("actors", number.format(d.actors));
  text("rate", d.rate.toFixed(1));
  text("commands", number.format(kinds.command || 0));
  text("reads", number.format(kinds.read || 0));
  text("errors", number.format(d.error_total));
  text("saves-failing", number.format(d.saves_failing.length) + (d.saves_failing_full ? "+" : ""));
  text("saves-failing-note", d.saves_failing_full ? "(the list is full: more may be failing)" : "");
  chart(d.history, d.window);
  rows("counts", d.counts,
       (c) => [[c.kind], [c.name], [number.format(c.count), "num"]], "no events yet");
  rows("error-rows", d.errors,
       (e) => [[new Date(e.time * 1000).toLocaleTimeString("en-GB")], [e.channel], [e.kind],
               [e.type, "type"], [e.message, "msg"]], "no errors");
  rows("failing-rows", d.saves_failing,
       (f) => [[f.channel], [number.format(f.failures), "num"],
               [new Date(f.since * 1000).toLocaleTimeString("en-GB")],
               [f.type, "type"], [f.message, "msg"]], "every save works");
}

function status(ok, detail) {
  $("status").className = "status " + (ok ? "live" : "down");
  text("status-text", detail);
}

async function poll() {
  try {
    const response = await fetch("api/live", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    updates += 1;
    document.body.dataset.updates = String(updates);
    status(true, "live · updated " + new Date().toLocaleTimeString("en-GB"));
  } catch (err) {
    status(false, "disconnected (" + err.message + "), retrying");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
