// A call outlives the signaling link: two peers in a call (a browser key and a
// passkey), then the server restarts. The Rust test restarts it when this prints
// "in-call" and answers "restarted" on stdin. Media must keep flowing through the
// restart on the very same RTCPeerConnections (getStats: decoded frames keep
// increasing), both pages must be back in the room without a reload, and the
// passkey person must not be asked for the passkey again (the page resumes with its
// token). Then a second outage, of the host's socket only (closed under the page's
// feet), is bridged the same way.
//
//   node tests/js/reconnect.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints a JSON line with the longest gap between decoded frames during the
// restart (media_gap_ms), the same over 2 s without one (gap_without_restart_ms),
// and how long the pages took to be back in the room.

import { createInterface } from "node:readline";
import {
  base, createRoom, expect, invite, joinWith, openCall, participant, receivesMedia, run, tile,
  virtualAuthenticator,
} from "./browser_kit.mjs";

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

// Besides collecting connections: count passkey prompts, and keep every socket.
const WATCH = () => {
  window.__prompts = 0;
  const get = navigator.credentials.get.bind(navigator.credentials);
  navigator.credentials.get = (...args) => {
    window.__prompts++;
    return get(...args);
  };
  window.__suspended = 0;
  new MutationObserver((changes) => {
    for (const c of changes) if (c.target.classList?.contains("reconnecting") && !String(c.oldValue).includes("reconnecting")) window.__suspended++;
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["class"], attributeOldValue: true });
  window.__sockets = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__sockets.push(this);
    }
  };
};

/** Samples a page's decoded video frames every 20 ms; `stop()` gives the longest gap. */
async function watchFrames(page) {
  await page.evaluate(() => {
    window.__gap = { last: performance.now(), frames: 0, longest: 0, samples: 0 };
    window.__sampler = setInterval(async () => {
      let frames = 0;
      for (const pc of window.__pcs) {
        (await pc.getStats()).forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
        });
      }
      const g = window.__gap, now = performance.now();
      g.samples++;
      if (frames > g.frames) {
        g.longest = Math.max(g.longest, now - g.last);
        g.last = now;
        g.frames = frames;
      }
    }, 20);
  });
  return async () =>
    page.evaluate(() => {
      clearInterval(window.__sampler);
      return { longest: Math.round(window.__gap.longest), frames: window.__gap.frames, samples: window.__gap.samples };
    });
}

/** Waits until a page is back in the room on a newer socket than its `before`-th. */
const backInRoom = (page, before) =>
  page.waitForFunction(
    (before) =>
      window.__sockets.length > before && window.__sockets.at(-1).readyState === WebSocket.OPEN &&
      document.getElementById("banner").hidden && !document.querySelector(".tile.reconnecting") &&
      document.querySelectorAll(".tile").length === 2,
    before,
    { timeout: 30000, polling: 20 },
  );
const sockets = (page) => page.evaluate(() => window.__sockets.length);

await run("reconnect flow", async () => {
  const host = await participant("host");
  const roomUrl = await createRoom(host, "Blip room");
  const room = roomUrl.split("/").pop();
  const guestInvite = await invite(host, "Passkey guest");
  const guest = await participant("guest", virtualAuthenticator);
  await guest.goto(`${base}/i/${guestInvite}`);
  await guest.click("#create-passkey");
  await guest.waitForSelector("text=is now on the room's list");
  for (const page of [host, guest]) await page.addInitScript(WATCH);

  await openCall(host, room);
  await joinWith(host, "#join-browser-key");
  await openCall(guest, room);
  await joinWith(guest, "#join-passkey");
  for (const page of [host, guest]) await receivesMedia(page, 1);
  // A reload would lose this mark.
  for (const page of [host, guest]) await page.evaluate(() => (window.__sameDocument = true));
  const prompts = await guest.evaluate(() => window.__prompts);
  expect(prompts === 1, `one passkey prompt to join (saw ${prompts})`);
  // The same measure without a restart, for comparison: frames decoded, sampled every 20 ms.
  const calm = [await watchFrames(host), await watchFrames(guest)];
  await new Promise((r) => setTimeout(r, 2000));
  const baseline = Math.max(...(await Promise.all(calm.map((stop) => stop()))).map((g) => g.longest));
  const stops = [await watchFrames(host), await watchFrames(guest)];

  const before = [await sockets(host), await sockets(guest)];
  console.log("in-call");
  const t0 = Date.now();
  expect((await nextLine()) === "restarted", "the test restarts the server");
  await Promise.all([backInRoom(host, before[0]), backInRoom(guest, before[1])]);
  const backMs = Date.now() - t0;
  // Some more media after both are back, so a gap at the end would show.
  await new Promise((r) => setTimeout(r, 1500));
  const [hostGap, guestGap] = await Promise.all(stops.map((stop) => stop()));

  for (const page of [host, guest]) {
    expect(await page.evaluate(() => window.__sameDocument === true), "the page was not reloaded");
    expect(await page.isVisible("#call"), "the call screen stayed");
    expect(await page.evaluate(() => window.__pcs.length) === 1, "the same RTCPeerConnection carried the call");
    expect(await page.evaluate(() => window.__sockets.length) >= 2, "the page opened a new socket");
    await receivesMedia(page, 1);
  }
  expect(hostGap.frames > 0 && guestGap.frames > 0, "frames were decoded through the restart");
  expect((await guest.evaluate(() => window.__prompts)) === 1, "no new passkey prompt: the page resumed");
  await tile(host, "Passkey guest").locator("text=verified by your browser").waitFor();

  // Only the host's socket drops (as a proxy would drop it; a close code other than
  // 1000 or 1001 is not leaving): the guest sees the host "reconnecting…" and takes
  // the same connection up again.
  const hostSockets = await sockets(host);
  const suspended = await guest.evaluate(() => window.__suspended);
  await host.evaluate(() => window.__sockets.at(-1).close(4000, "dropped"));
  await guest.waitForFunction((n) => window.__suspended > n, suspended, { timeout: 10000, polling: 20 });
  await Promise.all([backInRoom(host, hostSockets), backInRoom(guest, 0)]);
  for (const page of [host, guest]) {
    expect(await page.evaluate(() => window.__pcs.length) === 1, "still the same RTCPeerConnection");
    await receivesMedia(page, 1);
  }
  // Still one call: confirming the guest's identity reaches it under its new id.
  await tile(host, "Passkey guest").locator("button.confirm").click();
  await tile(host, "Passkey guest").locator("text=/confirmed/").waitFor({ timeout: 15000 });

  console.log(JSON.stringify({ media_gap_ms: Math.max(hostGap.longest, guestGap.longest), host_gap_ms: hostGap.longest, guest_gap_ms: guestGap.longest, gap_without_restart_ms: baseline, back_in_room_ms: backMs }));
});
