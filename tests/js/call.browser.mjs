// A call in headless Chromium (playwright-core driving Debian's chromium, fake
// camera and microphone): three participants with three methods — a browser key
// (the host), a passkey through Chromium's virtual WebAuthn authenticator, and a
// wallet through an EIP-1193 provider injected here and backed by ethers.js — see
// and hear each other (checked with getStats), chat, confirm identities; a fourth
// whose media certificate is not the one it signed (and who joins with a one-time
// ticket from the link's fragment) is flagged and not shown; the host removing the
// wallet's key ejects it from the call.
//
//   node tests/js/call.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints a JSON line of timings, then "ok", and exits 0; on failure saves a
// screenshot of every page into ARTIFACT_DIR and exits 1 (SCREENSHOTS=1: on
// success too).

import { Wallet } from "ethers";
import {
  SWAP_CERTIFICATE, acceptInvite, base, createRoom, expect, firstRemoteFrame, invite, joinWith, mediaStopped,
  openCall, pages, participant, receivesMedia, run, ticketFor, tile, virtualAuthenticator, walletParticipant,
} from "./browser_kit.mjs";

await run("call flow", async () => {
  // The host signs in with a browser key, creates a room, lists the wallet's
  // address, and makes invites for the passkey person and for Mallory.
  const host = await participant("host");
  const roomUrl = await createRoom(host, "Call room");
  const room = roomUrl.split("/").pop();
  const wallet = Wallet.createRandom();
  await host.click("nav.sections a:has-text(\"Add keys\")");
  await host.fill("#keys", wallet.address);
  await host.fill("#label", "Wallet person");
  await host.click("button:text-is(\"Add\")");
  await host.waitForSelector("text=Added 1 key.");
  const passkeyInvite = await invite(host, "Passkey person");
  const malloryInvite = await invite(host, "Mallory");

  // The passkey person makes a passkey on a virtual authenticator, on the invite page.
  const pk = await participant("passkey", virtualAuthenticator);
  await pk.goto(`${base}/i/${passkeyInvite}`);
  await pk.click("#create-passkey");
  await pk.waitForSelector("text=is now on the room's list");

  // The wallet person's browser has an EIP-1193 provider whose key lives in ethers.js.
  const walletPage = await walletParticipant("wallet", wallet);

  // Mallory enrols her browser key through her invite.
  const mallory = await participant("mallory", null, SWAP_CERTIFICATE);
  await acceptInvite(mallory, malloryInvite);

  // Three join, with three methods.
  await openCall(host, room);
  await joinWith(host, "#join-browser-key");
  await openCall(pk, room);
  const [pkT0, pkAdmitted] = await joinWith(pk, "#join-passkey");
  const pkFirstFrame = await firstRemoteFrame(pk, pkT0);
  // The third joins a call in progress, after looking at its own preview.
  await openCall(walletPage, room);
  for (const page of [host, pk]) await receivesMedia(page, 1, 30);
  const [walletT0, walletAdmitted] = await joinWith(walletPage, "#join-wallet");
  const walletFirstFrame = await firstRemoteFrame(walletPage, walletT0);

  // Each sees and hears the other two.
  for (const page of [host, pk, walletPage]) await receivesMedia(page, 2);
  for (const page of [host, pk, walletPage]) expect((await page.locator(".tile").count()) === 3, "three tiles on every page");

  // Every proof is checked by the browser itself: a browser key, a passkey, and a
  // wallet (secp256k1 recovery in the page).
  await tile(host, "Passkey person").locator("text=verified by your browser").waitFor();
  await tile(pk, "owner").locator("text=verified by your browser").waitFor();
  await tile(host, "Wallet person").locator("text=verified by your browser").waitFor();

  // On a phone-width screen the call fits: tiles and controls one above the other,
  // nothing wider than the screen, every control reachable.
  await walletPage.setViewportSize({ width: 390, height: 844 });
  const overflow = await walletPage.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow <= 0, `the call is ${overflow} px wider than a 390 px screen`);
  for (const control of ["#leave", "#toggle-audio", "#toggle-video", "#chat-input"]) {
    const box = await walletPage.locator(control).boundingBox();
    expect(box && box.x >= 0 && box.x + box.width <= 390, `${control} is on the screen`);
  }
  await walletPage.setViewportSize({ width: 1280, height: 800 });

  // Chat over the data channels.
  await host.fill("#chat-input", "hello from the host");
  await host.click("#chat-form button");
  for (const page of [pk, walletPage]) await page.locator("#chat-log", { hasText: "hello from the host" }).waitFor();

  // "Confirm identity": the passkey answers with a touch, the wallet with a signature.
  await tile(host, "Passkey person").locator("button.confirm").click();
  await tile(host, "Passkey person").locator(".verify-state.ok").waitFor({ timeout: 20000 });
  await tile(walletPage, "owner").locator("button.confirm").click();
  await tile(walletPage, "owner").locator(".verify-state.ok").waitFor({ timeout: 20000 });
  await tile(host, "Wallet person").locator("button.confirm").click();
  await tile(host, "Wallet person").locator(".verify-state.ok").waitFor({ timeout: 20000 });

  // Mallory's connections use another certificate than the one her key signed.
  // She comes in with a one-time ticket, as `keygate join` would hand her (asked for
  // here over the socket with her browser key), from the link's fragment.
  const ticket = await ticketFor(mallory, room);
  await mallory.goto(`${base}/r/${room}#ticket=${ticket}`);
  await mallory.waitForSelector("#call-root[data-ready=true]");
  await mallory.waitForSelector("#ticket-method:not([hidden])");
  await joinWith(mallory, "#join-ticket");
  expect(!mallory.url().includes("ticket"), "the spent ticket is gone from the address bar");
  const flagged = tile(host, "Mallory");
  await flagged.locator(".warning:not([hidden])").waitFor({ timeout: 20000 });
  expect(await flagged.evaluate((t) => t.classList.contains("broken") && t.querySelector("video").srcObject === null), "Mallory's media is not shown");
  await tile(pk, "Mallory").locator(".warning:not([hidden])").waitFor({ timeout: 20000 });
  // The three others still receive each other.
  for (const page of [host, pk, walletPage]) await receivesMedia(page, 2);

  // The host removes the wallet's key on the room page: it is ejected from the call.
  const hostAdmin = await host.context().newPage();
  pages.hostAdmin = hostAdmin;
  await hostAdmin.goto(roomUrl);
  await hostAdmin.locator("tr", { hasText: "Wallet person" }).locator("text=Remove").click();
  await walletPage.locator("#banner", { hasText: "your key was removed from this room's whitelist" }).waitFor({ timeout: 5000 });
  await tile(host, "Wallet person").waitFor({ state: "detached", timeout: 5000 });
  // Ejected, its camera and microphone are off, until the person turns them on again.
  expect(await mediaStopped(walletPage), "the ejected page's camera and microphone are stopped");
  expect(await walletPage.isVisible("#media-on"), "the lobby offers to turn them on again");
  // Leaving stops them too.
  await pk.click("#leave");
  await pk.waitForSelector("#lobby:not([hidden])");
  expect(await mediaStopped(pk), "a page that left has its camera and microphone stopped");
  await pk.click("#media-on");
  await pk.waitForFunction(() => document.getElementById("preview").srcObject?.active === true);

  // The audit log has the report and the confirmations.
  await hostAdmin.goto(`${roomUrl}/audit`);
  await hostAdmin.waitForSelector("tr.peer-reported");
  await hostAdmin.waitForSelector("tr.reverified");

  console.log(JSON.stringify({
    passkeySecondToJoin: { admittedMs: pkAdmitted, firstRemoteFrameMs: pkFirstFrame },
    walletThirdToJoin: { admittedMs: walletAdmitted, firstRemoteFrameMs: walletFirstFrame },
  }));
});
