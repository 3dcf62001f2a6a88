// Accessible tabs (WAI-ARIA tabs pattern): buttons in a tablist, arrow keys move between them.
import { h } from "./dom.js";

let n = 0;
export function tabs(label, items) {
  const id = "tabs" + ++n;
  const buttons = [];
  const panels = items.map(([title, content], i) => h("div.tabpanel", { role: "tabpanel", id: `${id}-p${i}`, "aria-labelledby": `${id}-t${i}`, tabindex: "0", hidden: i !== 0 }, content));
  const select = (i, focus) => {
    buttons.forEach((b, j) => {
      b.setAttribute("aria-selected", String(i === j));
      b.tabIndex = i === j ? 0 : -1;
      panels[j].hidden = i !== j;
    });
    if (focus) buttons[i].focus();
  };
  items.forEach(([title], i) => {
    const b = h("button.tab", { type: "button", role: "tab", id: `${id}-t${i}`, "aria-controls": `${id}-p${i}` }, title);
    b.addEventListener("click", () => select(i));
    b.addEventListener("keydown", (ev) => {
      const d = { ArrowRight: 1, ArrowLeft: -1 }[ev.key];
      if (d) select((i + d + items.length) % items.length, true);
    });
    buttons.push(b);
  });
  select(0);
  return h("div.tabs", {}, h("div.tablist", { role: "tablist", "aria-label": label }, buttons), panels);
}
