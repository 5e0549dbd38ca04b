// The host pages' main flows in headless Chromium (playwright-core driving Debian's
// chromium): sign in with a browser key, create a room, add a key, see it listed;
// an invite opened in a second browser profile enrols that profile's key, the host
// sees it appear; removing it ejects the second browser's live session.
//
//   node tests/js/host_pages.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints "ok" and exits 0 on success; on failure saves a screenshot of every open
// page into ARTIFACT_DIR and exits 1.

import {
  acceptInvite, base, browser, createRoom, expect, pages, run, virtualAuthenticator,
} from "./browser_kit.mjs";

await run("browser flow", async () => {
  const hostCtx = await browser.newContext({ permissions: ["clipboard-read", "clipboard-write"] });
  const host = await hostCtx.newPage();
  pages.host = host;

  // Sign in with this browser's key.
  await host.goto(`${base}/signin`);
  await host.click("#browser-key");
  await host.waitForURL(`${base}/rooms`);
  expect(await host.isVisible("text=You own no rooms yet"), "the empty state of My rooms");

  // Create a room.
  await host.fill("#name", "Browser room");
  await host.click("button:text-is(\"Create room\")");
  await host.waitForURL(/\/rooms\/[A-Za-z0-9]+$/);
  const roomUrl = host.url();
  const room = roomUrl.split("/").pop();

  // Add a key by pasting it; it is listed.
  const pasted = "did:key:zDnaerx9CtbPJ1q36T5Ln5wYt3MQYeGRG5ehnPAmxcf5mDZpv";
  await host.click("nav.sections a:has-text(\"Add keys\")");
  await host.fill("#keys", pasted);
  await host.fill("#label", "Pasted key");
  await host.click("button:text-is(\"Add\")");
  await host.waitForSelector(`button.copy[data-copy="${pasted}"]`);
  expect(await host.isVisible("text=Added 1 key."), "the added notice");
  // Its DID is one click from the clipboard.
  await host.click(`button.copy[data-copy="${pasted}"]`);
  await host.waitForSelector(`button.copy[data-copy="${pasted}"]:text-is("Copied")`);
  expect((await host.evaluate(() => navigator.clipboard.readText())) === pasted, "the DID is on the clipboard");

  // A mixed list pasted at once, one key per line in every format: each is added, and
  // a line that is no key is named without losing the others.
  const made = await host.evaluate(async () => {
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]);
    const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", pair.publicKey);
    const other = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]);
    const spki = btoa(String.fromCharCode(...new Uint8Array(await crypto.subtle.exportKey("spki", other.publicKey))));
    const pem = `-----BEGIN PUBLIC KEY-----\n${spki.match(/.{1,64}/g).join("\n")}\n-----END PUBLIC KEY-----`;
    return { jwk: JSON.stringify({ kty, crv, x, y }), pem };
  });
  const mixed = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl mixed-ssh",
    made.jwk,
    "0x52908400098527886e0f7030069857d2e4169ee7",
    made.pem,
    "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
    "this is not a key",
  ].join("\n");
  await host.click("nav.sections a:has-text(\"Add keys\")");
  await host.fill("#keys", mixed);
  await host.click("button:text-is(\"Add\")");
  await host.waitForSelector(".notice");
  const said = (await host.textContent("main")) || "";
  expect(/Added 5 keys/.test(said), `five keys of five formats added: ${said.slice(0, 400)}`);
  expect(/pasted line 9: not a key format keygate understands/.test(said), "the bad line is named by its number");
  expect((await host.locator("tr.entry").count()) === 7, "seven keys listed (the owner, one pasted before, five now)");

  // The room page's sections are one bar away, and the header says who is signed in.
  for (const [link, section] of [["Live now", "#live"], ["Invites", "#invites"], ["Who may enter", "#who"]]) {
    await host.click(`nav.sections a:has-text("${link}")`);
    expect(host.url().endsWith(section), `${link} leads to ${section}`);
    await host.waitForSelector(`${section} h2`);
    // One tab at a time: the other sections are out of the way.
    expect((await host.locator("section.panel:visible").count()) === 1, `only ${section} shows`);
  }
  expect(await host.isVisible("header >> text=Sign out"), "sign out is in the header");

  // Create an invite for Guest.
  await host.click("nav.sections a:has-text(\"Invites\")");
  await host.fill("#invite-label", "Guest");
  await host.click("button:text-is(\"Create invite link\")");
  const notice = await host.textContent(".notice");
  const invite = notice.match(/\/i\/([A-Za-z0-9]+)/)[1];

  // A second browser profile opens the invite and proves its own browser key.
  const guestCtx = await browser.newContext();
  const guest = await guestCtx.newPage();
  pages.guest = guest;
  await acceptInvite(guest, invite);
  const guestDid = (await guest.textContent("#status")).match(/did:key:\S+/)[0];

  // The host sees it appear.
  await host.goto(roomUrl);
  await host.waitForSelector(`button.copy[data-copy="${guestDid}"]`);
  expect(await host.isVisible("text=Guest"), "the invite's label");

  // The guest joins the room over the socket with the same browser key...
  await guest.evaluate(async ({ room }) => {
    const { browserKey } = await import("/static/proof.js");
    const pair = await browserKey();
    const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
    const ws = new WebSocket(`${location.origin.replace("http", "ws")}/ws`);
    window.kgEvents = [];
    await new Promise((resolve, reject) => {
      ws.onmessage = async (e) => {
        const msg = JSON.parse(e.data);
        window.kgEvents.push(msg);
        if (msg.type === "challenge") {
          const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, new TextEncoder().encode(JSON.stringify(msg.payload)));
          const b64 = btoa(String.fromCharCode(...new Uint8Array(sig))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
          ws.send(JSON.stringify({ type: "auth", method: "webcrypto", payload: msg.payload, signature: b64, publicKey: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } }));
        } else if (msg.type === "welcome") resolve();
        else if (msg.type === "error") reject(new Error(msg.code));
      };
      ws.onopen = () => ws.send(JSON.stringify({ type: "request", roomId: room }));
    });
    window.kgSocket = ws;
  }, { room });

  // ...shows up on the live page, and is ejected when the host removes the key.
  await host.goto(`${roomUrl}/live`);
  await host.waitForSelector(`text=${guestDid}`);
  await host.goto(roomUrl);
  const row = host.locator("tr", { has: host.locator(`button.copy[data-copy="${guestDid}"]`) });
  await row.locator("text=Remove").click();
  await host.waitForURL(roomUrl);
  expect((await host.locator(`button.copy[data-copy="${guestDid}"]`).count()) === 0, "the removed key is gone from the list");
  await guest.waitForFunction(() => window.kgEvents.some((m) => m.type === "error" && m.code === "revoked"), null, { timeout: 5000 });

  // A third profile, with only a (virtual) platform authenticator, creates a passkey
  // right on a new invite's page and is enrolled with it.
  await host.goto(roomUrl);
  await host.click("nav.sections a:has-text(\"Invites\")");
  await host.fill("#invite-label", "Passkey person");
  await host.click("button:text-is(\"Create invite link\")");
  const invite2 = (await host.textContent(".notice")).match(/\/i\/([A-Za-z0-9]+)/)[1];
  const pkCtx = await browser.newContext();
  const pk = await pkCtx.newPage();
  pages.passkey = pk;
  await virtualAuthenticator(pkCtx, pk);
  await pk.goto(`${base}/i/${invite2}`);
  await pk.click("#create-passkey");
  await pk.waitForSelector("text=is now on the room's list");
  const passkeyDid = (await pk.textContent("#status")).match(/did:key:\S+/)[0];
  await host.goto(roomUrl);
  await host.waitForSelector(`button.copy[data-copy="${passkeyDid}"]`);
  expect(await host.isVisible("text=Passkey person"), "the passkey invitee's label");

  // The same passkey signs in to the host pages.
  await pk.goto(`${base}/signin`);
  await pk.click("#passkey");
  await pk.waitForURL(`${base}/rooms`);

  // It is discoverable: with this browser's memory of it and its session gone, it
  // still signs in without anything typed, and creates a room.
  await pk.evaluate(() => localStorage.removeItem("keygate-passkeys"));
  await pkCtx.clearCookies();
  await pk.goto(`${base}/signin`);
  await pk.click("#passkey");
  await pk.waitForURL(`${base}/rooms`);
  await pk.fill("#name", "Passkey room");
  await pk.click("button:text-is(\"Create room\")");
  await pk.waitForURL(/\/rooms\/[A-Za-z0-9]+$/);

  // Refused in a room whose list does not have it, the passkey's page says so at
  // the top, with the identity to send the host.
  const passkeyRoom = (await createRoom(host, "Without the passkey")).split("/").pop();
  await pk.goto(`${base}/r/${passkeyRoom}`);
  await pk.waitForSelector("#call-root[data-ready=true]");
  await pk.click("#join-passkey");
  const refusal = pk.locator("#banner[role=alert]", { hasText: "not on the room's list" });
  await refusal.waitFor({ timeout: 20000 });
  expect((await refusal.textContent()).includes(passkeyDid), "the refusal names the passkey's identity");

  // On 127.0.0.1 the browser refuses passkeys ("invalid domain"): the page says why
  // and links to the same page on localhost.
  await pk.goto(`${base.replace("localhost", "127.0.0.1")}/passkey`);
  const alert = pk.locator("[role=alert]", { hasText: "Passkeys need a name, not an address" });
  await alert.waitFor();
  expect((await alert.locator("a").getAttribute("href")) === `${base}/passkey`, "the alert links to localhost");

  // On a phone-width screen nothing is wider than the screen, the focus is visible,
  // and text has WCAG AA contrast with what is behind it.
  await host.setViewportSize({ width: 390, height: 844 });
  for (const url of [`${base}/rooms`, roomUrl, `${roomUrl}/audit`, `${base}/r/${roomUrl.split("/").pop()}`, `${base}/keys`]) {
    await host.goto(url);
    const wide = await host.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    const over = await host.evaluate(() =>
      [...document.querySelectorAll("body *")]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
        .filter((e) => {
          for (let a = e.parentElement; a; a = a.parentElement) if (/auto|scroll/.test(getComputedStyle(a).overflowX)) return false;
          return true;
        })
        .slice(0, 5)
        .map((e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`),
    );
    expect(wide <= 0, `${url} is ${wide} px wider than a 390 px screen: ${over.join(", ")}`);
    await host.keyboard.press("Tab");
    const outline = await host.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    expect(outline !== "none", `${url}: the focused element shows no outline`);
    const low = await host.evaluate(() => {
      const lum = (rgb) => {
        const [r, g, b] = rgb.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map((v) => {
          v /= 255;
          return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const background = (el) => {
        for (let e = el; e; e = e.parentElement) {
          const c = getComputedStyle(e).backgroundColor;
          if (c && !c.startsWith("rgba(0, 0, 0, 0)") && c !== "transparent") return c;
        }
        return "rgb(255, 255, 255)";
      };
      const bad = [];
      for (const el of document.querySelectorAll("body *")) {
        const text = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
        if (!text || el.closest("video, option, [hidden]") || !el.getClientRects().length) continue;
        const [a, b] = [lum(getComputedStyle(el).color), lum(background(el))];
        const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        if (ratio < 4.5) bad.push(`${el.tagName.toLowerCase()}.${el.className} ${ratio.toFixed(2)}`);
      }
      return bad;
    });
    expect(low.length === 0, `${url}: text below 4.5:1 contrast: ${low.join(", ")}`);
  }
  await host.setViewportSize({ width: 1280, height: 800 });

  // The audit log tells the story, and shows one kind of event on request.
  await host.goto(`${roomUrl}/audit`);
  await host.waitForSelector("tr.whitelist-remove");
  await host.selectOption("#event", "whitelist-add");
  await host.click("button:text-is(\"Filter\")");
  await host.waitForURL(/event=whitelist-add/);
  const kinds = await host.$$eval("tbody tr", (rows) => [...new Set(rows.map((r) => r.className))]);
  expect(kinds.length === 1 && kinds[0] === "whitelist-add", `only whitelist-add rows: ${kinds}`);
  pages["audit"] = host;
});
