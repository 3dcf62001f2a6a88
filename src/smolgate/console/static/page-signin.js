// Sign-in: the admin credential is exchanged for a session cookie (HttpOnly) and a CSRF token kept in memory.
import { signIn } from "./api.js";
import { field, h } from "./dom.js";
import { Page } from "./page.js";

class SignIn extends Page {
  title = "Sign in";
  async load() {
    const key = h("input", { type: "password", name: "admin_key", autocomplete: "current-password", spellcheck: "false" });
    const submit = h("button.primary", { type: "submit" }, "Sign in");
    const form = h(
      "form.card.narrow",
      { "aria-describedby": "signin-help" },
      h("p", { id: "signin-help" }, "Sign in with the gateway's admin key (server.admin_key or $SMOLGATE_ADMIN_KEY). On a gateway without one, a browser on the same machine signs in with the field left empty."),
      field("Admin key", key),
      h("div.row", {}, submit),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      this.busy("Signing in…");
      try {
        await signIn(key.value);
        key.value = "";
        this.done("Signed in.");
        window.dispatchEvent(new CustomEvent("sg-signed-in"));
      } catch (exc) {
        this.fail(exc);
        key.select();
      } finally {
        submit.disabled = false;
      }
    });
    this.body.append(form);
    this.done();
    key.focus();
  }
}
customElements.define("sg-signin", SignIn);
