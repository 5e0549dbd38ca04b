// A room whose media mode is auto, on a server whose sfu_from is 3: two people
// meet peer to peer; when a third joins, the call moves to the SFU (end-to-end
// encrypted) on every page without anyone rejoining, and everyone decodes everyone
// with the sender's picture.
//
//   node tests/js/auto.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints a JSON line of timings, then "ok", and exits 0.

import {
  acceptInvite, createRoom, expect, invite, joinWith, openCall, participant, pictureDistances,
  receivesThroughSfu, run, setMedia,
} from "./browser_kit.mjs";

await run("auto", async () => {
  const host = await participant("host");
  const room = (await createRoom(host, "Growing call")).split("/").pop();
  await setMedia(host, "auto");
  const guests = [];
  for (const name of ["Ann", "Bob"]) {
    const link = await invite(host, name);
    const page = await participant(name.toLowerCase());
    await acceptInvite(page, link);
    guests.push(page);
  }
  const [ann, bob] = guests;

  // Two: the mesh.
  for (const page of [host, ann]) {
    await openCall(page, room);
    await joinWith(page, "#join-browser-key");
  }
  for (const page of [host, ann]) {
    await receivesThroughSfu(page, 1, "two in the mesh");
    expect((await page.getAttribute("#call-root", "data-media")) === "mesh", "two meet peer to peer");
    await page.evaluate(() => (window.__sameDocument = true));
  }

  // A third: the call moves to the SFU on every page, nobody rejoins.
  await openCall(bob, room);
  const t0 = Date.now();
  await joinWith(bob, "#join-browser-key");
  for (const page of [host, ann, bob]) {
    await page.waitForSelector('#call-root[data-media="sfu"]', { timeout: 20000 });
    await receivesThroughSfu(page, 2, "three through the SFU");
  }
  const movedMs = Date.now() - t0;
  for (const page of [host, ann]) {
    expect(await page.evaluate(() => window.__sameDocument === true), "the page did not reload");
    expect(await page.isVisible("#call"), "still in the call");
    await page.locator("#chat-log", { hasText: "moved to the server's SFU" }).waitFor();
  }
  await new Promise((r) => setTimeout(r, 1000));
  for (const page of [host, ann, bob]) {
    const d = await pictureDistances(page);
    expect(Object.values(d).length === 2 && Object.values(d).every((x) => x !== null && x <= 40), `every picture is its sender's: ${JSON.stringify(d)}`);
  }
  console.log(JSON.stringify({ thirdJoinToEveryoneDecodingThroughSfuMs: movedMs }));
});
