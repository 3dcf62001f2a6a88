// The console's shell: hash routes to pages (each a web component in its own module, loaded on first visit),
// the session check before any page, sign-out, and the status line every page reports through.
import { resume, signOut, session } from "./api.js";
import { toast } from "./page.js";

const PAGES = {
  signin: { title: "Sign in", module: "./page-signin.js", tag: "sg-signin" },
  overview: { title: "Overview", module: "./page-overview.js", tag: "sg-overview" },
  accounts: { title: "Accounts", module: "./page-accounts.js", tag: "sg-accounts" },
  keys: { title: "Keys", module: "./page-keys.js", tag: "sg-keys" },
  usage: { title: "Usage", module: "./page-usage.js", tag: "sg-usage" },
  routes: { title: "Models & routes", module: "./page-routes.js", tag: "sg-routes" },
  requests: { title: "Requests", module: "./page-requests.js", tag: "sg-requests" },
  playground: { title: "Playground", module: "./page-playground.js", tag: "sg-playground" },
  audit: { title: "Audit log", module: "./page-audit.js", tag: "sg-audit" },
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signoutBtn = document.getElementById("signout");
let signedIn = false;

function pageName() {
  const m = /^#\/([a-z]+)/.exec(location.hash);
  return m && PAGES[m[1]] ? m[1] : "overview";
}

async function show() {
  let name = pageName();
  if (!signedIn && name !== "signin") {
    import(PAGES[name].module).catch(() => {}); // fetched while the session is checked (errors surface below)
    signedIn = await resume();
  }
  if (!signedIn) name = "signin";
  else if (name === "signin") name = "overview";
  if (location.hash !== "#/" + name && !(name !== "signin" && location.hash.startsWith("#/" + name))) {
    history.replaceState(null, "", "#/" + name);
  }
  nav.hidden = !signedIn;
  signoutBtn.hidden = !signedIn;
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === "#/" + name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const page = PAGES[name];
  document.title = page.title + " · smolgate";
  await import(page.module);
  main.replaceChildren(document.createElement(page.tag));
  main.dataset.page = name;
  // Move focus to the new page (screen readers announce it; keyboard users start at its top).
  const heading = main.querySelector("h1");
  (heading || main).focus({ preventScroll: true });
}

window.addEventListener("sg-signed-in", () => {
  signedIn = true;
  if (location.hash === "#/overview") show();
  else location.hash = "#/overview";
});
window.addEventListener("hashchange", show);
window.addEventListener("sg-signed-out", () => {
  if (!signedIn) return;
  signedIn = false;
  session.csrf = null;
  toast("Your session ended: sign in again.", "error");
  show();
});
signoutBtn.addEventListener("click", async () => {
  await signOut();
  signedIn = false;
  location.hash = "#/signin";
  show();
});
show();
