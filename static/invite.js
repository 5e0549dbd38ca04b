// An invite page: prove a key (or create a passkey right here) and be added to the
// room's list. The invite's id comes from the page (data-invite on #status).
import { signIn, proveWithPasskey } from "/static/proof.js";
import { registerPasskey } from "/static/passkey.js";

const status = document.getElementById("status");
const invite = encodeURIComponent(status.dataset.invite);
const urls = {
  challenge: `/i/${invite}/challenge`,
  verify: `/i/${invite}/verify`,
  done: (r) => {
    status.textContent = `Your key ${r.identity} is now on the room's list.`;
    const join = document.getElementById("join-now");
    join.href = `/r/${encodeURIComponent(r.room)}`;
    join.hidden = false;
    join.focus();
  },
};
signIn(urls);
document.getElementById("create-passkey").addEventListener("click", async (event) => {
  event.preventDefault();
  try {
    status.textContent = "Follow your browser's prompt to create the passkey…";
    await registerPasskey(event.target.dataset.label || "invited key");
    status.textContent = "Now confirm with the new passkey…";
    urls.done(await proveWithPasskey(urls));
  } catch (e) {
    status.textContent = `Not added: ${e.message}`;
  }
});
