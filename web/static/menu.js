// Popover menus: one open at a time, closed by a click outside or Escape.

import { h } from "./dom.js";

let current = null;

function closeCurrent() {
  if (!current) return;
  const { pop, anchor, onClose } = current;
  current = null;
  pop.remove();
  anchor.setAttribute("aria-expanded", "false");
  onClose?.();
}

document.addEventListener("mousedown", (ev) => {
  if (current && !current.pop.contains(ev.target) && !current.anchor.contains(ev.target)) closeCurrent();
});
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && current) {
    const anchor = current.anchor;
    closeCurrent();
    anchor.focus();
  }
});

/**
 * Opens a popover under anchor with the content build() returns; a second
 * call on the same anchor closes it. align is "left" or "right".
 * Returns a function that closes it.
 */
export function popover(anchor, build, { align = "left", testid, onClose, cls = "" } = {}) {
  if (current && current.anchor === anchor) {
    closeCurrent();
    return () => {};
  }
  closeCurrent();
  const pop = h("div", { class: `popover ${cls}`, role: "menu", dataset: testid ? { testid } : {} });
  pop.append(build(closeCurrent));
  document.body.append(pop);
  place(pop, anchor, align);
  anchor.setAttribute("aria-expanded", "true");
  current = { pop, anchor, onClose };
  return closeCurrent;
}

/** Re-renders the open popover of anchor, if it is open. */
export function refreshPopover(anchor, build) {
  if (!current || current.anchor !== anchor) return;
  current.pop.replaceChildren(build(closeCurrent));
}

export { closeCurrent as closePopover };

function place(pop, anchor, align) {
  const r = anchor.getBoundingClientRect();
  pop.style.top = `${Math.round(r.bottom + 4 + window.scrollY)}px`;
  const width = pop.offsetWidth;
  let left = align === "right" ? r.right - width : r.left;
  left = Math.max(8, Math.min(left, window.innerWidth - width - 8));
  pop.style.left = `${Math.round(left + window.scrollX)}px`;
  const maxH = window.innerHeight - r.bottom - 16;
  if (maxH > 120) pop.style.maxHeight = `${maxH}px`;
}
