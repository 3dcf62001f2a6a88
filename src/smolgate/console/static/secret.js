// The one place a virtual key's secret is shown: a modal dialog with a copy button. Closing it removes the
// secret from the page; nothing keeps a copy.
import { h } from "./dom.js";

export function showSecret(title, secret, note) {
  const input = h("input.secret", { type: "text", readonly: true, value: secret, "aria-label": "The new key's secret", spellcheck: "false" });
  const copied = h("span.muted", { role: "status", "aria-live": "polite" });
  const copy = h("button.primary", { type: "button" }, "Copy");
  copy.addEventListener("click", async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
      copied.textContent = "Copied.";
    } catch {
      copied.textContent = "Selected: press Ctrl+C (Cmd+C) to copy.";
    }
  });
  const close = h("button", { type: "button" }, "Done — I have stored it");
  const dlg = h(
    "dialog.secret-dialog",
    { "aria-labelledby": "secret-h" },
    h("h2", { id: "secret-h" }, title),
    h("p", {}, note),
    h("div.row", {}, input, copy),
    copied,
    h("div.row.end", {}, close),
  );
  const done = () => {
    input.value = "";
    dlg.remove();
  };
  close.addEventListener("click", () => dlg.close());
  dlg.addEventListener("close", done);
  document.body.append(dlg);
  dlg.showModal();
  input.select();
  return dlg;
}
