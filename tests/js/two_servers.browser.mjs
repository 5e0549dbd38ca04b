// A call whose two people are on two different keygate servers of one service
// (behind nginx, which puts each browser on the server its `kgnode` cookie names):
// the host signs in and creates the room on one server, the guest enrols through an
// invite on the other, and they see and hear each other, chat, and confirm each
// other's identity, the signaling crossing the servers over NATS.
//
//   node tests/js/two_servers.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints "in-call" once both receive media, waits for a line on stdin (the test
// checks meanwhile that each server holds one of them), then prints "ok".

import { createInterface } from "node:readline";
import {
  acceptInvite, base, createRoom, expect, invite, joinWith, openCall, participant, receivesMedia, run, tile,
} from "./browser_kit.mjs";

/** A participant whose every request goes to server `n`. */
const on = (n) => async (ctx) => {
  await ctx.addCookies([{ name: "kgnode", value: String(n), url: base }]);
};

await run("two servers", async () => {
  const host = await participant("host", on(0));
  const roomUrl = await createRoom(host, "Across servers");
  const room = roomUrl.split("/").pop();
  const guestInvite = await invite(host, "Guest on the other server");

  const guest = await participant("guest", on(1));
  await acceptInvite(guest, guestInvite);

  await openCall(host, room);
  await joinWith(host, "#join-browser-key");
  await openCall(guest, room);
  const [t0] = await joinWith(guest, "#join-browser-key");
  for (const page of [host, guest]) await receivesMedia(page, 1);
  const media = Date.now() - t0;

  // Both proofs are browser keys: each browser checks the other's itself.
  await tile(host, "Guest on the other server").locator("text=verified by your browser").waitFor();
  await tile(guest, "owner").locator("text=verified by your browser").waitFor();

  // Chat goes peer to peer; "confirm identity" goes through both servers.
  await guest.fill("#chat-input", "hello across servers");
  await guest.click("#chat-form button");
  await host.locator("#chat-log", { hasText: "hello across servers" }).waitFor();
  await tile(host, "Guest on the other server").locator("button.confirm").click();
  await tile(host, "Guest on the other server").locator(".verify-state.ok").waitFor({ timeout: 20000 });
  expect((await host.locator(".tile").count()) === 2, "two tiles");

  console.log(JSON.stringify({ joinToMediaMs: media }));
  console.log("in-call");
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) if (line === "checked") break;
});
