// A call through the SFU survives a restart of keygate (not of Janus): two people
// (browser keys) decode each other through Janus; the Rust test restarts the server
// when this prints "in-call" and answers "restarted" on stdin. Janus ends their
// sessions with keygate's connection; both pages come back without a reload (their
// resume tokens), publish again, hand out new media keys, and decode each other
// again, encrypted.
//
//   node tests/js/sfu_restart.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints a JSON line with how long media took to come back, then "ok", and exits 0.

import { createInterface } from "node:readline";
import {
  acceptInvite, createRoom, expect, invite, joinWith, openCall, participant, pictureDistances,
  receivesThroughSfu, run, setMedia,
} from "./browser_kit.mjs";

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

await run("sfu restart", async () => {
  const host = await participant("host");
  const room = (await createRoom(host, "Restarted SFU call")).split("/").pop();
  await setMedia(host, "sfu");
  const link = await invite(host, "Guest");
  const guest = await participant("guest");
  await acceptInvite(guest, link);
  for (const page of [host, guest]) {
    await openCall(page, room);
    await joinWith(page, "#join-browser-key");
  }
  for (const page of [host, guest]) {
    await receivesThroughSfu(page, 1, "before the restart");
    await page.evaluate(() => (window.__sameDocument = true));
  }
  const before = await host.evaluate(() => window.__pcs.length);

  console.log("in-call");
  expect((await nextLine()) === "restarted", "the test restarted the server");
  const t0 = Date.now();
  // New connections to Janus: the old ones ended with keygate's.
  await host.waitForFunction((n) => window.__pcs.length > n, before, { timeout: 30000 });
  for (const page of [host, guest]) await receivesThroughSfu(page, 1, "after the restart");
  const backMs = Date.now() - t0;
  await new Promise((r) => setTimeout(r, 1000));
  for (const page of [host, guest]) {
    expect(await page.evaluate(() => window.__sameDocument === true), "the page did not reload");
    expect((await page.getAttribute("#call-root", "data-media")) === "sfu", "still through the SFU");
    const d = await pictureDistances(page);
    expect(Object.values(d).length === 1 && Object.values(d).every((x) => x !== null && x <= 40), `the picture is the sender's: ${JSON.stringify(d)}`);
  }
  console.log(JSON.stringify({ restartToDecodingAgainThroughSfuMs: backMs }));
});
