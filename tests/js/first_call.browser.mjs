// A new team's first call, from an empty server, driven as a person would: clicks
// and typing only, no URL typed but the server's address and the invite link the
// host sends. The host opens the home page, signs in with this browser's key,
// creates a room, makes an invite and joins the call; the invitee opens the link,
// proves a browser key, follows "Join the call now" and joins. Done when each sees
// and hears the other.
//
//   node tests/js/first_call.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints a JSON line {clicks, typed, pages, wall_ms, host_ms, guest_ms}, then "ok".
// Screenshots of the main pages go to ARTIFACT_DIR/gallery, and to $KEYGATE_GALLERY
// too when it is set (docs/gallery is made that way, see its README); the time
// they take is not counted.

import fs from "node:fs";
import path from "node:path";
import { artifacts, base, expect, participant, receivesMedia, run } from "./browser_kit.mjs";

const shots = [path.join(artifacts, "gallery"), process.env.KEYGATE_GALLERY].filter(Boolean);
for (const dir of shots) fs.mkdirSync(dir, { recursive: true });
let clicks = 0;
let typed = 0;
let pagesSeen = 0;
let unCounted = 0;

const click = async (page, selector) => {
  clicks++;
  await page.click(selector);
};
const type = async (page, selector, text) => {
  typed++;
  await page.fill(selector, text);
};
/** A screenshot for the gallery; its time is taken out of the measured time. */
const shot = async (page, name, options = {}) => {
  const t = Date.now();
  for (const dir of shots) {
    await page.screenshot({ path: path.join(dir, `${name}.png`), ...options });
  }
  unCounted += Date.now() - t;
};
/** Counts the documents a page loads (moving between the room page's tabs is none). */
const countPages = (page) =>
  page.on("load", () => {
    if (!page.url().startsWith("about:")) pagesSeen++;
  });

await run("first call", async () => {
  const host = await participant("host");
  await host.setViewportSize({ width: 1100, height: 760 });
  countPages(host);
  const t0 = Date.now();

  // The home page says what keygate is and offers to create a room.
  await host.goto(`${base}/`);
  await shot(host, "1-home");
  await click(host, "a.button:text-is(\"Create a room\")");
  await host.waitForURL(`${base}/signin`);
  await shot(host, "2-sign-in");
  await click(host, "#browser-key");
  await host.waitForURL(`${base}/rooms`);
  await shot(host, "3-my-rooms");

  // A room, and an invite for Sam.
  await type(host, "#name", "Team standup");
  await click(host, "button:text-is(\"Create room\")");
  await host.waitForURL(/\/rooms\/[A-Za-z0-9]+$/);
  const roomUrl = host.url();
  await click(host, "nav.sections a:has-text(\"Invites\")");
  await type(host, "#invite-label", "Sam");
  await click(host, "button:text-is(\"Create invite link\")");
  await host.waitForSelector(".notice");
  const copy = host.locator("p.invite button.copy").first();
  const inviteLink = await copy.getAttribute("data-copy");
  expect(/\/i\/[A-Za-z0-9]+$/.test(inviteLink), `an invite link to copy: ${inviteLink}`);
  clicks++;
  await copy.click();
  await shot(host, "4-room-invites");

  // The host joins the call.
  await click(host, "a.button:text-is(\"Join the call\")");
  await host.waitForSelector("#call-root[data-ready=true]");
  await shot(host, "5-call-lobby");
  await click(host, "#join-browser-key");
  await host.waitForSelector("#call:not([hidden])");
  const hostIn = Date.now() - unCounted;

  // Sam opens the link (sent by mail or chat), proves a key and joins.
  const guest = await participant("guest");
  await guest.setViewportSize({ width: 1100, height: 760 });
  countPages(guest);
  const g0 = Date.now() - unCounted;
  await guest.goto(inviteLink);
  await shot(guest, "6-invite");
  await click(guest, "#browser-key");
  await guest.waitForSelector("#join-now:not([hidden])");
  await shot(guest, "7-invite-accepted");
  await click(guest, "#join-now");
  await guest.waitForSelector("#call-root[data-ready=true]");
  await click(guest, "#join-browser-key");
  await guest.waitForSelector("#call:not([hidden])");
  for (const page of [host, guest]) await receivesMedia(page, 1);
  const done = Date.now() - unCounted;
  const counted = { clicks, typed, pages: pagesSeen };
  await shot(host, "8-in-the-call");

  // The room page shows Sam live, and the audit log what happened.
  await host.goto(roomUrl);
  await shot(host, "9-room-who-may-enter");
  await click(host, "nav.sections a:has-text(\"Live now\")");
  await host.locator("#live", { hasText: "Sam" }).waitFor();
  await shot(host, "10-room-live");
  await host.goto(`${roomUrl}/audit`);
  await shot(host, "11-audit");

  const figures = {
    ...counted,
    wall_ms: done - t0,
    host_ms: hostIn - t0,
    guest_ms: done - g0,
  };
  console.log(JSON.stringify(figures));
});
