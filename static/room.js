// The room page: copy a key's DID to send or paste elsewhere.
for (const button of document.querySelectorAll("button.copy[data-copy]")) {
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = "Copied";
    } catch {
      // No clipboard (an http:// page other than localhost): show the DID to copy by hand.
      button.closest("td").querySelector("details").open = true;
    }
    setTimeout(() => (button.textContent = "Copy DID"), 2000);
  });
}
