// The key tools page: this browser's key (show, create with a backup, import) and
// the identity of any key a person pastes.
import { browserIdentity, importBrowserKey, newBrowserKeyWithBackup, pemToDer, identityOf, download } from "/static/proof.js";

const status = document.getElementById("status");
const show = (id, r) => { const el = document.getElementById(id); el.textContent = `${r.identity}\n${r.keyFingerprint} (${r.kind})`; el.hidden = false; };
const guard = (fn) => async (e) => { e.preventDefault(); try { status.textContent = ""; await fn(); } catch (err) { status.textContent = err.message; } };
document.getElementById("show-browser").addEventListener("click", guard(async () => show("browser-identity", await browserIdentity())));
document.getElementById("new-browser").addEventListener("click", guard(async () => {
  download("keygate-browser-key.pem", await newBrowserKeyWithBackup());
  show("browser-identity", await browserIdentity());
}));
document.getElementById("import").addEventListener("click", guard(async () => {
  await importBrowserKey(pemToDer(document.getElementById("import-pem").value));
  show("browser-identity", await browserIdentity());
}));
document.getElementById("lookup").addEventListener("submit", guard(async () => show("key-identity", await identityOf(document.getElementById("key").value))));
