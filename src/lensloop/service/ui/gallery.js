// #/gallery?label=&predicted=&cluster=&split=&order=&min_uncertainty= : filtered images,
// loaded page by page as the sentinel at the bottom scrolls into view.

import { api } from "./api.js";
import { failure, fillCaption, h, markTiles, tile, toast } from "./dom.js";
import { onLabelled, onSelection, select, state, toggle } from "./store.js";

const PAGE = 60;
const FILTERS = ["label", "predicted", "cluster", "split", "sample", "order", "min_uncertainty", "max_uncertainty"];

export function gallery(root, params) {
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
  const images = new Map();
  const grid = h("div", { class: "grid", role: "list", "aria-label": "Images" });
  const sentinel = h("div", { class: "sentinel" }, "Loading…");
  const summary = h("span", { class: "summary", "aria-live": "polite" });
  const filterBar = h("form", { class: "filters", "aria-label": "Filters", onsubmit: (e) => e.preventDefault() });
  let cursor = null;
  let done = false;
  let loading = false;
  let total = 0;
  let alive = true;

  const go = (changes) => {
    const next = new URLSearchParams();
    for (const key of FILTERS) {
      const value = key in changes ? changes[key] : filters[key];
      if (value !== "" && value !== null && value !== undefined) next.set(key, value);
    }
    location.hash = `#/gallery${next.toString() ? `?${next}` : ""}`;
  };
  const choice = (name, title, options) => {
    const control = h("select", { name, onchange: (e) => go({ [name]: e.target.value }) },
      options.map(([value, text]) => h("option", { value, selected: value === filters[name] }, text)));
    return h("label", {}, title, control);
  };
  const classOptions = state.classes.map((c) => [c.path, `${c.path} (${c.count})`]);
  filterBar.append(
    choice("label", "Label", [["", "any"], ["__none__", "unlabelled"], ...classOptions]),
    choice("predicted", "Predicted", [["", "any"], ...state.classes.map((c) => [c.path, c.path])]),
    h("label", {}, "Cluster", h("select", { name: "cluster", disabled: true }, h("option", { value: "" }, "…"))),
    choice("split", "Split", [["", "any"], ["train", "train"], ["val", "val"], ["test", "test"], ["pool", "pool"]]),
    choice("order", "Order", [["", "id"], ["uncertainty", "most uncertain first"]]),
    h("button", { type: "button", id: "select-all", onclick: () => selectAll() }, "Select all matching (a)"),
    summary,
  );
  root.replaceChildren(filterBar, grid, sentinel);

  api.clusters().then((answer) => {
    if (!alive) return;
    const clusters = answer.clusters || [];
    const options = clusters.length
      ? [["", "any"], ...clusters.map((c) => [String(c.cluster), `${c.cluster} (${c.size})`])]
      : [["", "none yet"]];
    const select_ = h("select", { name: "cluster", disabled: !clusters.length, onchange: (e) => go({ cluster: e.target.value }) },
      options.map(([value, text]) => h("option", { value, selected: value === filters.cluster }, text)));
    const label = h("label", {}, "Cluster", select_);
    filterBar.querySelector("select[name=cluster]").parentElement.replaceWith(label);
    if (!clusters.length) {
      label.after(h("button", { type: "button", onclick: () => cluster() }, "Cluster the images"));
    }
  }).catch(() => {});

  async function cluster() {
    try {
      await api.makeClusters(null, null);
      toast("Clustered");
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (error) {
      toast(`Clustering failed: ${error.message}`, { error: true });
    }
  }

  function query(limit, after) {
    const params_ = { limit, cursor: after || undefined };
    for (const key of FILTERS) if (filters[key] !== "") params_[key] = filters[key];
    return params_;
  }

  async function more() {
    if (loading || done || !alive) return;
    loading = true;
    try {
      const page = await api.images(query(PAGE, cursor));
      if (!alive) return;
      total = page.total;
      for (const image of page.items) {
        images.set(image.id, image);
        grid.append(tile(image, { selected: state.selection.has(image.id), onToggle: toggle }));
      }
      for (const figure of grid.querySelectorAll("figure:not([role])")) figure.setAttribute("role", "listitem");
      cursor = page.next_cursor;
      done = !cursor;
      summary.textContent = `${total} image${total === 1 ? "" : "s"}`;
      sentinel.textContent = done ? (total ? "" : "No images match these filters.") : "Loading…";
    } catch (error) {
      sentinel.replaceChildren(failure(error));
      done = true;
    } finally {
      loading = false;
    }
    // A short page may leave the sentinel in view: keep going until it scrolls out.
    if (!done && alive && sentinel.getBoundingClientRect().top < window.innerHeight + 200) more();
  }

  async function selectAll() {
    const ids = [];
    let after = null;
    try {
      do {
        const page = await api.images(query(500, after));
        ids.push(...page.items.map((image) => image.id));
        after = page.next_cursor;
      } while (after && alive);
    } catch (error) {
      toast(`Could not select: ${error.message}`, { error: true });
      return;
    }
    select(ids);
    toast(`Selected ${ids.length} image${ids.length === 1 ? "" : "s"}; click one to leave it out`);
  }

  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) more();
  }, { rootMargin: "400px" });
  observer.observe(sentinel);
  more();

  const unsubscribe = [
    onSelection((selection) => markTiles(grid, selection)),
    onLabelled((ids, path) => {
      for (const id of ids) {
        const image = images.get(id);
        if (!image) continue;
        image.label = path;
        const figure = grid.querySelector(`figure[data-id="${id}"]`);
        if (figure) {
          fillCaption(figure.querySelector("figcaption"), image);
          figure.querySelector("img").alt = `Image ${id}, labelled ${path}`;
        }
      }
    }),
  ];

  return {
    selectAll,
    destroy() {
      alive = false;
      observer.disconnect();
      unsubscribe.forEach((f) => f());
    },
  };
}
