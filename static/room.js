// The room page: copy a key's DID, a join link or an invite link to send or paste
// elsewhere.
for (const button of document.querySelectorAll("button.copy[data-copy]")) {
  const label = button.textContent;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = "Copied";
    } catch {
      // No clipboard (an http:// page other than localhost): show the text selected,
      // to copy by hand.
      const details = button.closest("td")?.querySelector("details");
      if (details) details.open = true;
      const shown = details?.querySelector("code") ?? button.previousElementSibling;
      if (shown) window.getSelection().selectAllChildren(shown);
    }
    setTimeout(() => (button.textContent = label), 2000);
  });
}

// The sections are tabs: one shows at a time, chosen by the link's #section (so a
// reload, the back button and a shared link keep it). After a form, its section
// shows; with errors, the section that has them. Without script every section shows.
const panels = [...document.querySelectorAll("section.panel")];
const tabs = [...document.querySelectorAll("nav.sections a")];
function show(id) {
  const panel = panels.find((p) => p.id === id) ?? panels.find((p) => p.querySelector(".error")) ?? panels[0];
  if (!panel) return;
  for (const p of panels) p.hidden = p !== panel;
  for (const t of tabs) {
    if (t.getAttribute("href") === `#${panel.id}`) t.setAttribute("aria-current", "true");
    else t.removeAttribute("aria-current");
  }
}
if (panels.length) {
  show(location.hash.slice(1));
  // The #section picks the tab; the page itself starts at the top.
  setTimeout(() => scrollTo(0, 0), 0);
  addEventListener("hashchange", () => {
    show(location.hash.slice(1));
    scrollTo(0, 0);
  });
}
