// Reconnection: two peers in a call, then the server restarts. The Rust test
// restarts it when this prints "in-call" and answers "restarted" on stdin; both
// pages must prove their keys again and rejoin without a reload, then see and hear
// each other again.
//
//   node tests/js/reconnect.browser.mjs http://localhost:PORT ARTIFACT_DIR

import { createInterface } from "node:readline";
import { base, createRoom, expect, invite, joinWith, openCall, participant, receivesMedia, run } from "./browser_kit.mjs";

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

await run("reconnect flow", async () => {
  const host = await participant("host");
  const roomUrl = await createRoom(host, "Blip room");
  const room = roomUrl.split("/").pop();
  const guestInvite = await invite(host, "Guest");
  const guest = await participant("guest");
  await guest.goto(`${base}/i/${guestInvite}`);
  await guest.click("#browser-key");
  await guest.waitForSelector("text=is now on the room's list");

  for (const page of [host, guest]) {
    await openCall(page, room);
    await joinWith(page, "#join-browser-key");
  }
  for (const page of [host, guest]) await receivesMedia(page, 1);
  // A reload would lose this mark.
  for (const page of [host, guest]) await page.evaluate(() => (window.__sameDocument = true));

  console.log("in-call");
  expect((await nextLine()) === "restarted", "the test restarts the server");

  // Each page makes a new connection to the other once it is admitted again.
  for (const page of [host, guest]) {
    await page.waitForFunction(() => window.__pcs.length >= 2, null, { timeout: 30000 });
    await receivesMedia(page, 1);
    expect(await page.evaluate(() => window.__sameDocument === true), "the page was not reloaded");
    expect(await page.isVisible("#call"), "the call screen is back");
  }
});
