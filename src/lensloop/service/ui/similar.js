// #/similar/ID : the image and its nearest neighbours in embedding space.

import { api } from "./api.js";
import { failure, h, markTiles, tile } from "./dom.js";
import { onSelection, state, toggle } from "./store.js";

export function similar(root, params, arg) {
  let alive = true;
  const k = Number(params.get("k")) || 24;
  const grid = h("div", { class: "grid", id: "similar-grid" });
  const head = h("div", { class: "grid" });
  root.replaceChildren(h("h2", {}, `Images similar to #${arg}`), head, h("h3", {}, "Nearest neighbours"), grid,
    h("p", {}, h("a", { href: `#/similar/${arg}?k=${k * 2}` }, `Show ${k * 2}`)));
  const unsubscribe = onSelection((selection) => {
    markTiles(grid, selection);
    markTiles(head, selection);
  });
  Promise.all([api.image(arg), api.similar(arg, k)]).then(([image, answer]) => {
    if (!alive) return;
    head.replaceChildren(tile(image, { selected: state.selection.has(image.id), onToggle: toggle }));
    const items = answer.items.filter((item) => item.image.id !== image.id);
    grid.replaceChildren(...items.map((item) => tile(item.image, {
      selected: state.selection.has(item.image.id), onToggle: toggle,
      extra: h("span", { class: "muted", title: "similarity" }, item.score.toFixed(3)),
    })));
    if (!items.length) grid.replaceChildren(h("p", { class: "muted" }, "No neighbours found."));
  }).catch((error) => alive && grid.replaceChildren(failure(error)));
  return {
    destroy() {
      alive = false;
      unsubscribe();
    },
  };
}
