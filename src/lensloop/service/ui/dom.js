// Small DOM helpers shared by the views: an element builder, a toast, colours, image tiles.

import { thumbnailUrl } from "./api.js";

/** Build an element: h("button", {class: "x", onclick: fn}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key === "text") element.textContent = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let toastTimer = 0;

/** Show a short message at the bottom of the page. */
export function toast(message, { error = false } = {}) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.classList.toggle("error", error);
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), error ? 6000 : 2500);
}

/** A message in place of a view that could not load. */
export function failure(error) {
  return h("p", { class: "error", role: "alert" }, `Could not load: ${error.message || error}`);
}

const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939",
  "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
];
export const NONE_COLOUR = "#c9ced6";

export function paletteColour(index) {
  if (index === null || index === undefined || index < 0) return NONE_COLOUR;
  return PALETTE[index % PALETTE.length];
}

export function formatNumber(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/**
 * An image tile: a toggle button with the thumbnail and a caption.
 * @param {object} image an Image of the API
 * @param {{selected: boolean, onToggle: Function, extra?: Node|string}} options
 */
export function tile(image, { selected, onToggle, extra }) {
  const pick = h(
    "button",
    { type: "button", class: "pick", "aria-pressed": selected ? "true" : "false", dataset: { id: image.id } },
    h("img", { src: thumbnailUrl(image.id), alt: altText(image), loading: "lazy", width: 128, height: 128 }),
  );
  pick.addEventListener("click", () => onToggle(image.id));
  const caption = h("figcaption", {});
  const figure = h("figure", { class: selected ? "tile selected" : "tile", dataset: { id: image.id } }, pick, caption);
  fillCaption(caption, image, extra);
  return figure;
}

export function fillCaption(caption, image, extra) {
  const parts = [
    h("span", { class: "muted" }, `#${image.id}`),
    image.label ? h("span", { class: "label" }, shortName(image.label)) : h("span", { class: "muted" }, "unlabelled"),
    image.predicted
      ? h("span", { class: image.label && image.label !== image.predicted ? "pred err" : "pred", title: "predicted" },
          `→ ${shortName(image.predicted)}${image.confidence != null ? ` ${Math.round(image.confidence * 100)}%` : ""}`)
      : null,
    extra || null,
    h("a", { class: "sim", href: `#/similar/${image.id}`, title: `Images similar to #${image.id}` }, "similar"),
  ];
  caption.replaceChildren(...parts.filter(Boolean));
}

export function altText(image) {
  const label = image.label ? `labelled ${image.label}` : "unlabelled";
  const predicted = image.predicted ? `, predicted ${image.predicted}` : "";
  return `Image ${image.id}, ${label}${predicted}`;
}

export function shortName(path) {
  const parts = String(path).split("/");
  return parts[parts.length - 1];
}

/** Mark the tiles under `root` whose id is in `selection`. */
export function markTiles(root, selection) {
  for (const figure of root.querySelectorAll("figure.tile")) {
    const on = selection.has(Number(figure.dataset.id));
    figure.classList.toggle("selected", on);
    figure.querySelector(".pick").setAttribute("aria-pressed", on ? "true" : "false");
  }
}

/** A line chart as SVG: series = [{name, colour, points: [[x, y], ...]}]. */
export function lineChart(series, { width = 360, height = 200, xLabel = "", yLabel = "", title = "" } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title || yLabel);
  const el = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const m = { l: 44, r: 10, t: 18, b: 30 };
  if (!all.length) {
    el("text", { x: 10, y: 20 }, "no data");
    return svg;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const sx = (x) => m.l + ((x - x0) / (x1 - x0)) * (width - m.l - m.r);
  const sy = (y) => height - m.b - ((y - y0) / (y1 - y0)) * (height - m.t - m.b);
  el("line", { x1: m.l, y1: height - m.b, x2: width - m.r, y2: height - m.b, stroke: "#999" });
  el("line", { x1: m.l, y1: m.t, x2: m.l, y2: height - m.b, stroke: "#999" });
  el("text", { x: 4, y: sy(y1) + 4 }, formatNumber(y1, 2));
  el("text", { x: 4, y: sy(y0) }, formatNumber(y0, 2));
  el("text", { x: m.l, y: height - 14 }, formatNumber(x0, 0));
  el("text", { x: width - m.r - 24, y: height - 14 }, formatNumber(x1, 0));
  el("text", { x: width / 2 - 20, y: height - 2 }, xLabel);
  el("text", { x: m.l, y: 12 }, title || yLabel);
  series.forEach((s, n) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (!pts.length) return;
    el("polyline", { fill: "none", stroke: s.colour, "stroke-width": 2, points: pts.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" ") });
    pts.forEach(([x, y]) => el("circle", { cx: sx(x), cy: sy(y), r: 3, fill: s.colour }));
    el("text", { x: width - m.r - 110, y: m.t + 12 * (n + 1), fill: s.colour }, s.name);
  });
  return svg;
}
