// What every page shares: a base web component (heading, a status line, safe error display) and the toast.
import { h } from "./dom.js";

export function toast(message, kind = "info") {
  const t = document.getElementById("toast");
  t.className = kind;
  t.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    t.textContent = "";
    t.className = "";
  }, 6000);
}

export class Page extends HTMLElement {
  title = "";
  connectedCallback() {
    this.classList.add("page");
    this.heading = h("h1", { tabindex: "-1" }, this.title);
    this.statusLine = h("p.status", { role: "status", "aria-live": "polite" });
    this.body = h("div.page-body");
    this.replaceChildren(h("div.page-head", {}, this.heading, this.actions ? this.actions() : null), this.statusLine, this.body);
    this.load().catch((exc) => this.fail(exc));
  }

  /** Fill this.body; implemented by each page. */
  async load() {}

  busy(text = "Loading…") {
    this.statusLine.className = "status busy";
    this.statusLine.textContent = text;
    this.setAttribute("aria-busy", "true");
  }

  done(text = "") {
    performance.mark("sg-ready:" + this.localName); // bench/console.py reads when the page's data was shown
    this.statusLine.className = "status";
    this.statusLine.textContent = text;
    this.removeAttribute("aria-busy");
    this.dataset.ready = "1";
  }

  fail(exc) {
    if (exc?.name === "AbortError") return;
    this.statusLine.className = "status error";
    this.statusLine.textContent = exc?.message || String(exc);
    this.removeAttribute("aria-busy");
    this.dataset.ready = "1";
  }
}

/** An action button that disables itself while its async work runs and reports errors through `onError`. */
export function actionButton(label, work, { onError, cls = "", ariaLabel } = {}) {
  const b = h("button" + (cls ? "." + cls : ""), { type: "button", "aria-label": ariaLabel }, label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await work(b);
    } catch (exc) {
      (onError || ((e) => toast(e.message, "error")))(exc);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}
