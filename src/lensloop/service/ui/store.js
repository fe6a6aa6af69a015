// What the views share: the project, its classes, the selection and labelling.

import { api } from "./api.js";
import { NONE_COLOUR, paletteColour, toast } from "./dom.js";

export const state = {
  project: null,
  classes: [], // [{path, name, depth, count}], in the API's order
  selection: new Set(),
};

const selectionListeners = new Set();
const labelListeners = new Set();
const classListeners = new Set();

/** Call `listener(selection)` whenever the selection changes; returns an unsubscribe. */
export function onSelection(listener) {
  selectionListeners.add(listener);
  return () => selectionListeners.delete(listener);
}

/** Call `listener(ids, label)` after images were labelled; returns an unsubscribe. */
export function onLabelled(listener) {
  labelListeners.add(listener);
  return () => labelListeners.delete(listener);
}

/** Call `listener(classes)` whenever the classes or their counts change. */
export function onClasses(listener) {
  classListeners.add(listener);
  return () => classListeners.delete(listener);
}

function changed() {
  for (const listener of selectionListeners) listener(state.selection);
}

export function toggle(id) {
  if (state.selection.has(id)) state.selection.delete(id);
  else state.selection.add(id);
  changed();
}

export function select(ids, { additive = true } = {}) {
  if (!additive) state.selection.clear();
  for (const id of ids) state.selection.add(id);
  changed();
}

export function clearSelection() {
  if (!state.selection.size) return;
  state.selection.clear();
  changed();
}

/** The 1-based key of a class (its position among the first nine), or null. */
export function classKey(path) {
  const index = state.classes.findIndex((c) => c.path === path);
  return index >= 0 && index < 9 ? index + 1 : null;
}

export function classForKey(key) {
  const cls = state.classes[key - 1];
  return cls ? cls.path : null;
}

export function classColour(path) {
  if (!path) return NONE_COLOUR;
  const index = state.classes.findIndex((c) => c.path === path);
  return paletteColour(index >= 0 ? index : state.classes.length + hash(path));
}

function hash(text) {
  let value = 0;
  for (const ch of text) value = (value * 31 + ch.charCodeAt(0)) % 997;
  return value;
}

export async function refreshClasses() {
  state.classes = await api.classes();
  for (const listener of classListeners) listener(state.classes);
}

/** Give `ids` the class `path`; tells the listeners and refreshes the class counts. */
export async function label(ids, path) {
  if (!ids.length) {
    toast("Select images first (click them, or a cluster), then press the class key.");
    return null;
  }
  try {
    const result = await api.label(ids, path);
    toast(`Labelled ${ids.length} image${ids.length === 1 ? "" : "s"} as ${path}`);
    for (const listener of labelListeners) listener(ids, path);
    await refreshClasses();
    return result;
  } catch (error) {
    toast(`Labelling failed: ${error.message}`, { error: true });
    return null;
  }
}
