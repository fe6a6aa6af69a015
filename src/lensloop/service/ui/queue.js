// #/queue[/ROUND|/selection] : one image at a time. Digits label it and move on; arrows or
// j/k move; s skips. Walks a selection round (the newest unless one is named) or the
// images currently selected.

import { api, fileUrl } from "./api.js";
import { failure, formatNumber, h, toast } from "./dom.js";
import { label, state } from "./store.js";

export function queue(root, params, arg) {
  let items = []; // Image objects, in rank order
  let position = 0;
  let alive = true;
  const title = h("h2", {}, "Queue");
  const stage = h("div", { class: "stage" });
  const details = h("div", {});
  const progress = h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0 }, h("div", {}));
  const status = h("p", { class: "muted", "aria-live": "polite", id: "queue-status" });
  const nav = h("div", { class: "toolbar" },
    h("button", { type: "button", onclick: () => move(-1), "aria-label": "Previous image (k)" }, "← Previous"),
    h("button", { type: "button", onclick: () => move(1), "aria-label": "Skip (s)" }, "Skip (s)"),
    h("button", { type: "button", onclick: () => move(1), "aria-label": "Next image (j)" }, "Next →"));
  const rounds = h("div", { class: "toolbar" });
  root.replaceChildren(title, rounds, h("div", { class: "queue" },
    h("div", {}, stage, nav), h("div", {}, status, progress, details)));

  loadRounds();
  load().catch((error) => alive && stage.replaceChildren(failure(error)));

  async function loadRounds() {
    let list = [];
    try {
      list = await api.rounds();
    } catch {
      return;
    }
    if (!alive) return;
    const n = h("input", { type: "number", min: 1, max: 1000, value: 20, name: "n", "aria-label": "Images in the new round", style: "width:5em" });
    const choose = h("select", { name: "round", "aria-label": "Round", onchange: (e) => (location.hash = `#/queue/${e.target.value}`) },
      h("option", { value: "", disabled: true, selected: !arg || arg === "selection" }, "choose a round"),
      state.selection.size ? h("option", { value: "selection", selected: arg === "selection" }, `current selection (${state.selection.size})`) : null,
      list.map((r) => h("option", { value: r.id, selected: String(r.id) === arg }, `round ${r.id}: ${r.strategy}, ${r.labelled}/${r.size} labelled`)));
    rounds.replaceChildren(
      h("label", {}, "Walk ", choose),
      h("span", { class: "muted" }, "or"),
      h("button", { type: "button", onclick: () => newRound(Number(n.value)) }, "Select a new round of"),
      n, h("span", { class: "muted" }, "images"));
  }

  async function newRound(size) {
    try {
      const round = await api.select(size || 20);
      toast(`Round ${round.id}: ${round.items.length} images to label`);
      location.hash = `#/queue/${round.id}`;
    } catch (error) {
      toast(`Could not select a round: ${error.message}`, { error: true });
    }
  }

  async function load() {
    if (arg === "selection") {
      const ids = [...state.selection];
      title.textContent = `Queue: the ${ids.length} selected images`;
      for (let start = 0; start < ids.length; start += 200) {
        const page = await api.images({ ids: ids.slice(start, start + 200).join(","), limit: 200 });
        const byId = new Map(page.items.map((image) => [image.id, image]));
        items.push(...ids.slice(start, start + 200).map((id) => byId.get(id)).filter(Boolean));
      }
    } else {
      let roundId = arg;
      if (!roundId) {
        const list = await api.rounds();
        if (!list.length) {
          stage.replaceChildren(h("p", { class: "muted" }, "No selection round yet: select one above, or select images in the gallery or map and walk the selection."));
          return;
        }
        roundId = list.reduce((a, b) => (b.id > a.id ? b : a)).id;
      }
      const round = await api.round(roundId);
      title.textContent = `Queue: round ${round.id} (${round.strategy})`;
      items = round.items.slice().sort((a, b) => a.rank - b.rank).map((item) => item.image);
    }
    if (!alive) return;
    const first = items.findIndex((image) => !image.label);
    position = first >= 0 ? first : 0;
    show();
  }

  function show() {
    if (!items.length) {
      stage.replaceChildren(h("p", { class: "muted" }, "Nothing to walk."));
      return;
    }
    const image = items[position];
    const labelled = items.filter((i) => i.label).length;
    status.textContent = `Image ${position + 1} of ${items.length} · ${labelled} labelled`;
    progress.setAttribute("aria-valuemax", items.length);
    progress.setAttribute("aria-valuenow", labelled);
    progress.firstChild.style.width = `${(100 * labelled) / items.length}%`;
    stage.replaceChildren(h("img", {
      src: fileUrl(image.id), id: "queue-image", dataset: { id: image.id },
      alt: `Image ${image.id}${image.label ? `, labelled ${image.label}` : ", unlabelled"}`,
    }));
    const rows = [
      ["id", `#${image.id}`], ["label", image.label || "unlabelled"],
      ["predicted", image.predicted ? `${image.predicted} (${formatNumber(image.confidence, 2)})` : "–"],
      ["uncertainty", formatNumber(image.uncertainty, 3)], ["cluster", image.cluster ?? "–"],
      ["size", `${image.width}×${image.height}, ${image.channels} ch, ${image.dtype}`],
      ["split", image.split || "–"], ["sample", image.sample || "–"], ["captured", image.captured_at || "–"],
      ...Object.entries(image.meta || {}).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v]),
    ];
    details.replaceChildren(
      h("dl", { id: "queue-details" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { field: k } }, String(v))])),
      h("p", {}, h("a", { href: `#/similar/${image.id}` }, "Similar images")));
    const next = items[position + 1];
    if (next) new Image().src = fileUrl(next.id);
  }

  function move(step) {
    if (!items.length) return;
    const target = position + step;
    if (target >= items.length) {
      toast(`End of the queue: ${items.filter((i) => i.label).length} of ${items.length} labelled`);
      position = items.length - 1;
    } else {
      position = Math.max(0, target);
    }
    show();
  }

  return {
    async assign(path) {
      const image = items[position];
      if (!image) return;
      const done = await label([image.id], path);
      if (done && alive) {
        image.label = path;
        move(1);
      }
    },
    onKey(event) {
      const keys = { ArrowRight: 1, ArrowDown: 1, j: 1, s: 1, ArrowLeft: -1, ArrowUp: -1, k: -1 };
      if (!(event.key in keys)) return false;
      move(keys[event.key]);
      return true;
    },
    destroy() {
      alive = false;
    },
  };
}
