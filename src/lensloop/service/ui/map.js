// #/map?colour=label|predicted|cluster&backbone= : the embedding map. Select a region with
// a box or a lasso, or a whole class / cluster from the legend, then press a class key.

import { api, thumbnailUrl } from "./api.js";
import { NONE_COLOUR, failure, h, paletteColour, shortName } from "./dom.js";
import { classColour, onClasses, onLabelled, onSelection, select, state, toggle } from "./store.js";
import { Scatter } from "./scatter.js";

const COLOURINGS = [["label", "label"], ["predicted", "prediction"], ["cluster", "cluster"]];

export function map(root, params) {
  const colouring = params.get("colour") || "label";
  const backbone = params.get("backbone") || "";
  const canvas = h("canvas", { "aria-label": "Embedding map: each point is an image", role: "img" });
  const tooltip = h("div", { class: "tooltip", hidden: true });
  const box = h("div", { class: "map-canvas-box" }, canvas, tooltip);
  const legend = h("ul", { class: "legend" });
  const info = h("p", { class: "muted" }, "Loading the map…");
  const modes = {};
  const setMode = (mode) => {
    scatter.setMode(mode);
    for (const [name, button] of Object.entries(modes)) button.setAttribute("aria-pressed", String(name === mode));
  };
  for (const [mode, text] of [["pan", "Pan"], ["box", "Box select"], ["lasso", "Lasso"]]) {
    modes[mode] = h("button", { type: "button", "aria-pressed": String(mode === "pan"), dataset: { mode }, onclick: () => setMode(mode) }, text);
  }
  const go = (changes) => {
    const next = new URLSearchParams({ colour: colouring, ...(backbone ? { backbone } : {}), ...changes });
    location.hash = `#/map?${next}`;
  };
  const colourSelect = h("select", { name: "colour", onchange: (e) => go({ colour: e.target.value }) },
    COLOURINGS.map(([value, text]) => h("option", { value, selected: value === colouring }, text)));
  const backbones = state.project ? state.project.backbones || [] : [];
  const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Map tools" },
    h("label", {}, "Colour by ", colourSelect),
    backbones.length > 1
      ? h("label", {}, "Embedding ", h("select", { name: "backbone", onchange: (e) => go({ backbone: e.target.value }) },
          backbones.map((b) => h("option", { value: b, selected: b === backbone }, b))))
      : null,
    ...Object.values(modes),
    h("button", { type: "button", onclick: () => scatter.resetView() }, "Reset view"),
    h("span", { class: "muted" }, "wheel: zoom · drag: pan · Shift+drag: lasso · Alt+drag: box · Ctrl: add"),
  );
  const side = h("aside", { class: "map-side" }, info, h("h3", {}, "Legend"), legend);
  root.replaceChildren(toolbar, h("div", { class: "map-wrap" }, box, side));

  let points = [];
  const colourOf = (p) => {
    if (colouring === "cluster") return paletteColour(p.cluster);
    return classColour(p[colouring]);
  };
  const scatter = new Scatter(canvas, {
    onSelect: (ids, additive) => select(ids, { additive }),
    onToggle: (point) => toggle(point.id),
    onHover: (point, at) => showTooltip(point, at),
  });
  scatter.setColours(colourOf);
  scatter.setSelected(state.selection);

  function showTooltip(point, at) {
    if (!point) {
      tooltip.hidden = true;
      return;
    }
    if (tooltip.dataset.id !== String(point.id)) {
      tooltip.dataset.id = String(point.id);
      const line = [`#${point.id}`, point.label ? shortName(point.label) : "unlabelled"];
      if (point.predicted) line.push(`→ ${shortName(point.predicted)}`);
      if (point.cluster !== null && point.cluster !== undefined) line.push(`cluster ${point.cluster}`);
      tooltip.replaceChildren(
        h("img", { src: thumbnailUrl(point.id, 128), alt: `Image ${point.id}`, width: 128, height: 128 }),
        h("div", {}, line.join(" · ")),
      );
    }
    const width = box.clientWidth;
    tooltip.style.left = `${Math.min(at[0] + 14, width - 150)}px`;
    tooltip.style.top = `${Math.max(4, at[1] - 160)}px`;
    tooltip.hidden = false;
  }

  function drawLegend() {
    const counts = new Map();
    for (const p of points) {
      const key = p[colouring] ?? null;
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    const keys = [...counts.keys()].sort((a, b) => {
      if (a === null) return 1;
      if (b === null) return -1;
      return typeof a === "number" ? a - b : String(a).localeCompare(String(b));
    });
    legend.replaceChildren(...keys.map((key) => {
      const colour = key === null ? NONE_COLOUR : colouring === "cluster" ? paletteColour(key) : classColour(key);
      const name = key === null ? (colouring === "cluster" ? "no cluster" : "none") : colouring === "cluster" ? `cluster ${key}` : key;
      const ids = points.filter((p) => (p[colouring] ?? null) === key).map((p) => p.id);
      return h("li", {},
        h("span", { class: "swatch", style: `background:${colour}` }),
        h("button", { type: "button", class: "ghost", title: `Select the ${counts.get(key)} images of ${name}`, dataset: { key: key === null ? "" : String(key) },
          onclick: (e) => select(ids, { additive: e.ctrlKey || e.metaKey }) }, `${name} (${counts.get(key)})`));
    }));
  }

  let alive = true;
  api.map(backbone || undefined).then((answer) => {
    if (!alive) return;
    points = answer.points;
    scatter.setPoints(points);
    info.textContent = `${points.length} images, ${answer.method} layout. Click a legend entry to select it.`;
    drawLegend();
  }).catch((error) => {
    if (alive) info.replaceWith(failure(error));
  });

  const unsubscribe = [
    onSelection((selection) => scatter.setSelected(selection)),
    onClasses(() => scatter.redraw()),
    onLabelled((ids, path) => {
      const changed = new Set(ids);
      for (const p of points) if (changed.has(p.id)) p.label = path;
      drawLegend();
      scatter.redraw();
    }),
  ];
  return {
    destroy() {
      alive = false;
      scatter.destroy();
      unsubscribe.forEach((f) => f());
    },
  };
}
