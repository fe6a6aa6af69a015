// #/models[/REF] : the model versions; one model's metrics, confusion matrix, per-class
// scores, learning curve, training history and a predicted-vs-actual grid.

import { api } from "./api.js";
import { failure, formatNumber, h, lineChart, markTiles, shortName, tile } from "./dom.js";
import { onSelection, state, toggle } from "./store.js";

export function models(root, params, arg) {
  let alive = true;
  const list = h("div", {});
  const detail = h("div", { id: "model-detail" });
  root.replaceChildren(h("h2", {}, "Models"), list, detail);
  const unsubscribe = onSelection((selection) => markTiles(detail, selection));

  api.models().then((versions) => {
    if (!alive) return;
    if (!versions.length) {
      list.replaceChildren(h("p", { class: "muted" }, "No model yet: train one with `lensloop train`."));
      return;
    }
    const metricNames = [...new Set(versions.flatMap((m) => Object.keys(m.metrics || {})))].slice(0, 6);
    const chosen = arg || String((versions.find((m) => (m.aliases || []).includes("champion")) ||
      versions.reduce((a, b) => (b.version > a.version ? b : a))).version);
    list.replaceChildren(h("table", { class: "data", id: "model-list" },
      h("thead", {}, h("tr", {}, ["version", "task", "aliases", "created", "n_train", ...metricNames].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, versions.map((m) => h("tr", { "aria-current": String(m.version) === chosen ? "true" : null },
        h("td", {}, h("a", { href: `#/models/${m.version}` }, `v${m.version}`)),
        h("td", {}, m.task), h("td", {}, (m.aliases || []).join(", ")),
        h("td", {}, (m.created_at || "").slice(0, 19).replace("T", " ")),
        h("td", {}, formatNumber(m.n_train)),
        metricNames.map((k) => h("td", {}, formatNumber((m.metrics || {})[k])))))),
    ));
    return showModel(chosen);
  }).catch((error) => alive && list.replaceChildren(failure(error)));

  async function showModel(ref) {
    const model = await api.model(ref);
    if (!alive) return;
    const cards = h("div", { class: "cards" }, Object.entries(model.metrics || {}).map(([k, v]) =>
      h("div", { class: "card" }, h("div", { class: "v" }, formatNumber(v)), h("div", { class: "k" }, k))));
    const grid = h("div", { class: "grid", id: "prediction-grid" });
    const gridNote = h("p", { class: "muted" });
    const errorsOnly = h("input", { type: "checkbox", id: "errors-only" });
    let pair = null; // [actual, predicted] picked in the confusion matrix
    let predictions = [];
    const drawGrid = () => {
      const shown = predictions.filter((p) => (!pair || (p.actual === pair[0] && p.predicted === pair[1])));
      gridNote.textContent = pair
        ? `${shown.length} images of ${pair[0]} predicted as ${pair[1]} (click the cell again for all)`
        : `${shown.length} predictions${errorsOnly.checked ? " that are wrong" : ""}`;
      grid.replaceChildren(...shown.map((p) => tile(
        { ...p.image, predicted: p.predicted, confidence: p.confidence, label: p.actual ?? p.image.label },
        { selected: state.selection.has(p.image.id), onToggle: toggle })));
    };
    const loadPredictions = async () => {
      try {
        const answer = await api.predictions(ref, { errors_only: errorsOnly.checked, limit: 200 });
        predictions = answer.items;
        drawGrid();
      } catch (error) {
        grid.replaceChildren(failure(error));
      }
    };
    errorsOnly.addEventListener("change", loadPredictions);

    const confusion = model.confusion && model.classes ? confusionTable(model.classes, model.confusion, (actual, predicted, cell) => {
      const same = pair && pair[0] === actual && pair[1] === predicted;
      for (const td of detail.querySelectorAll("table.confusion td.active")) td.classList.remove("active");
      pair = same ? null : [actual, predicted];
      if (!same) cell.classList.add("active");
      drawGrid();
    }) : h("p", { class: "muted" }, "No confusion matrix for this model.");

    const perClass = model.per_class ? h("table", { class: "data", id: "per-class" },
      h("thead", {}, h("tr", {}, ["class", "precision", "recall", "f1", "support"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, Object.entries(model.per_class).map(([name, s]) => h("tr", {},
        h("th", { scope: "row" }, name), ["precision", "recall", "f1", "support"].map((k) => h("td", {}, formatNumber(s[k]))))))) : null;

    const charts = h("div", { class: "charts" });
    const curve = model.learning_curve || [];
    if (curve.length) {
      charts.append(h("div", { class: "chart", id: "learning-curve" }, lineChart([
        { name: "accuracy", colour: "#1f77b4", points: curve.map((p) => [p.n_train, p.accuracy]) },
        { name: "macro F1", colour: "#ff7f0e", points: curve.map((p) => [p.n_train, p.macro_f1]) },
      ], { xLabel: "labelled training images", title: "Learning curve (over versions)" })));
    }
    const history = model.history || [];
    if (history.length) {
      charts.append(h("div", { class: "chart", id: "history" }, lineChart([
        { name: "train loss", colour: "#2ca02c", points: history.map((p) => [p.epoch, p.train_loss]) },
        { name: "val loss", colour: "#d62728", points: history.map((p) => [p.epoch, p.val_loss]) },
      ], { xLabel: "epoch", title: "Training history" })));
    }

    detail.replaceChildren(...[
      h("h3", {}, `Version ${model.version}${(model.aliases || []).length ? ` (${model.aliases.join(", ")})` : ""} · ${model.task}`),
      cards,
      h("h3", {}, "Confusion matrix"), h("p", { class: "muted" }, "Rows: actual class; columns: predicted. Click a cell to see its images."),
      confusion, perClass ? h("h3", {}, "Per class") : null, perClass, charts,
      h("h3", {}, "Predicted vs actual"),
      h("div", { class: "toolbar" }, h("label", {}, errorsOnly, " errors only")), gridNote, grid,
    ].filter(Boolean));
    await loadPredictions();
  }

  return {
    destroy() {
      alive = false;
      unsubscribe();
    },
  };
}

function confusionTable(classes, matrix, onPick) {
  const max = Math.max(1, ...matrix.flat());
  return h("table", { class: "data confusion", id: "confusion" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "actual ╲ predicted"), classes.map((c) => h("th", { scope: "col", title: c }, shortName(c))))),
    h("tbody", {}, matrix.map((row, i) => h("tr", {},
      h("th", { scope: "row", title: classes[i] }, shortName(classes[i])),
      row.map((count, j) => {
        const strength = count / max;
        const colour = i === j ? `rgba(16, 122, 58, ${0.1 + 0.6 * strength})` : `rgba(180, 35, 24, ${count ? 0.1 + 0.6 * strength : 0})`;
        const cell = h("td", { class: i === j ? "diag" : null, style: `background:${colour}` });
        const button = h("button", {
          type: "button", class: "ghost", title: `${count} images of ${classes[i]} predicted as ${classes[j]}`,
          onclick: () => onPick(classes[i], classes[j], cell),
        }, String(count));
        cell.append(button);
        return cell;
      })))));
}
