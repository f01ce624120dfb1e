// The dashboards page: panels from /api/dashboards, data from /api/panel/<dashboard>/<panel>, drawn
// as SVG lines, bars, stats or tables. No library: what a panel shows is in the DOM (data-state,
// data-points), which is what the headless-browser test reads.
"use strict";
const COLORS = ["#2e90fa", "#f79009", "#12b76a", "#f04438", "#7a5af8", "#ee46bc", "#06aed4", "#667085", "#a15c07", "#4e5ba6"];
let REFRESH_S = 10;

function el(tag, attrs = {}, ...children) {
  const svg = ["svg", "path", "line", "text", "g", "rect", "polyline"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  // Styles through the CSSOM: the page's CSP allows no inline style attribute.
  for (const [k, v] of Object.entries(attrs)) k === "style" ? Object.assign(node.style, v) : node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fmt(v, unit) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  let s;
  if (a >= 1e9) s = (v / 1e9).toFixed(1) + "G";
  else if (a >= 1e6) s = (v / 1e6).toFixed(1) + "M";
  else if (a >= 1e4) s = (v / 1e3).toFixed(1) + "k";
  else if (a >= 100 || Number.isInteger(v)) s = v.toFixed(0);
  else s = v.toPrecision(3);
  return unit ? `${s} ${unit}` : s;
}

function timeseries(data, unit) {
  const series = data.series.map(s => ({ name: s.name, points: s.points.filter(p => p[1] !== null) }))
    .filter(s => s.points.length);
  const all = series.flatMap(s => s.points);
  if (!all.length) return [null, 0];
  const W = 560, H = 180, L = 52, B = 20;
  let [x0, x1] = [Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0]))];
  let y1 = Math.max(...all.map(p => p[1])), y0 = Math.min(0, ...all.map(p => p[1]));
  if (x1 === x0) { x0 -= 30; x1 += 30; }
  if (y1 === y0) y1 = y0 + 1;
  const X = t => L + (W - L - 8) * (t - x0) / (x1 - x0);
  const Y = v => 6 + (H - B - 6) * (1 - (v - y0) / (y1 - y0));
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img" });
  for (const v of [y0, (y0 + y1) / 2, y1]) {
    svg.append(el("line", { x1: L, x2: W - 8, y1: Y(v), y2: Y(v), stroke: "#eaecf0" }));
    svg.append(el("text", { x: L - 4, y: Y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  const clock = t => new Date(t * 1000).toTimeString().slice(0, 5);
  svg.append(el("text", { x: L, y: H - 4 }, clock(x0)));
  svg.append(el("text", { x: W - 8, y: H - 4, "text-anchor": "end" }, clock(x1)));
  const legend = el("div", { class: "legend" });
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.map(p => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
    svg.append(el("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 1.6, "data-series": s.name }));
    const last = s.points[s.points.length - 1][1];
    legend.append(el("span", {}, el("i", { style: { background: color } }), `${s.name}: ${fmt(last, unit)}`));
  });
  const box = el("div");
  box.append(svg, legend);
  return [box, all.length];
}

function bars(data, unit) {
  const values = data.values.filter(v => v.value !== null);
  if (!values.length) return [null, 0];
  const max = Math.max(...values.map(v => v.value), 1e-9);
  const box = el("div");
  for (const v of values) {
    const bar = el("span", { style: { width: `${(100 * v.value / max).toFixed(1)}%`, display: "block" } });
    box.append(el("div", { class: "bar" }, el("span", { title: v.name }, v.name), el("div", {}, bar), el("span", {}, fmt(v.value, unit))));
  }
  return [box, values.length];
}

function stats(data, unit) {
  if (!data.values.length) return [null, 0];
  const box = el("div", { class: "stats" });
  for (const v of data.values) box.append(el("div", { class: "stat" }, el("b", {}, fmt(v.value, unit)), v.name));
  return [box, data.values.length];
}

function table(data) {
  if (!data.rows.length) return [null, 0];
  const t = el("table");
  t.append(el("tr", {}, ...data.columns.map(c => el("th", {}, c))));
  for (const row of data.rows) t.append(el("tr", {}, ...row.map(v => el("td", {}, v === null ? "" : typeof v === "number" ? fmt(v) : v))));
  return [t, data.rows.length];
}

async function refresh(dash, panel, node) {
  const minutes = document.getElementById("range").value;
  const body = node.querySelector(".body");
  let data;
  try {
    const r = await fetch(`/api/panel/${dash.uid}/${panel.id}?minutes=${minutes}`, { credentials: "same-origin" });
    data = await r.json();
  } catch (e) {
    data = { error: `the dashboard server did not answer: ${e}` };
  }
  body.replaceChildren();
  if (data.error) {
    node.dataset.state = "error";
    node.dataset.points = "0";
    body.append(el("div", { class: "error" }, data.error));
    return;
  }
  const draw = { timeseries, bars, stat: stats, table }[panel.kind];
  const [content, points] = draw(data, panel.unit);
  node.dataset.points = String(points);
  node.dataset.state = points ? "data" : "empty";
  body.append(content || el("div", { class: "note" }, "no data in this range yet"));
}

async function main() {
  const r = await fetch("/api/dashboards", { credentials: "same-origin" });
  const spec = await r.json();
  REFRESH_S = spec.refresh_s || REFRESH_S;
  const tabs = document.getElementById("tabs"), root = document.getElementById("dashboards");
  const wanted = new URLSearchParams(location.search).get("dashboard");
  const panels = [];
  spec.dashboards.forEach((d, i) => {
    const section = el("section", { class: "dashboard", id: d.uid, "data-dashboard": d.uid }, el("p", {}, d.description));
    const grid = el("div", { class: "grid" });
    for (const p of d.panels) {
      const node = el("div", { class: "panel", "data-panel": `${d.uid}/${p.id}`, "data-state": "loading", style: { gridColumn: `span ${p.width}` } },
        el("h2", { title: p.description || "" }, p.title), el("div", { class: "body" }, el("div", { class: "note" }, "loading…")));
      grid.append(node);
      panels.push([d, p, node]);
    }
    section.append(grid);
    root.append(section);
    const button = el("button", { "data-tab": d.uid }, d.title);
    button.onclick = () => show(d.uid);
    tabs.append(button);
    if ((wanted && wanted === d.uid) || (!wanted && i === 0)) show(d.uid);
  });
  async function all() {
    await Promise.all(panels.map(([d, p, n]) => refresh(d, p, n)));
    document.getElementById("updated").textContent = `updated ${new Date().toTimeString().slice(0, 8)}`;
    document.body.dataset.loaded = "true";
  }
  document.getElementById("range").onchange = all;
  await all();
  setInterval(all, REFRESH_S * 1000);
}

function show(uid) {
  for (const s of document.querySelectorAll("section.dashboard")) s.classList.toggle("active", s.id === uid);
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.tab === uid);
}

main();
