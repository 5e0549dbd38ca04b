// Media through Janus, relayed by keygate: two people (browser keys, fake camera
// and microphone) in one room each publish through the SFU and receive the
// other's media, speaking the `sfu` messages of docs/protocol.md directly.
//
//   node tests/js/sfu.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints a JSON line of timings, then "ok", and exits 0.

import {
  acceptInvite, createRoom, expect, invite, joinThroughSfu, participant, run, setMedia,
} from "./browser_kit.mjs";

/** Decoded video frames and audio samples from every subscription of a page. */
const received = (page) =>
  page.evaluate(async () => {
    const out = {};
    for (const [peer, pc] of Object.entries(window.__sfu.subscribers)) {
      let frames = 0, samples = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
        if (s.type === "inbound-rtp" && s.kind === "audio") samples += s.totalSamplesReceived || 0;
      });
      out[peer] = { frames, samples, state: pc.connectionState };
    }
    return { out, errors: window.__sfu.errors, published: window.__sfu.published };
  });

await run("sfu", async () => {
  const host = await participant("host");
  const room = (await createRoom(host, "Through the SFU")).split("/").pop();
  await setMedia(host, "sfu");
  const guestInvite = await invite(host, "Guest");
  const guest = await participant("guest");
  await acceptInvite(guest, guestInvite);

  const t0 = Date.now();
  const within = (what, p) => Promise.race([p, new Promise((_, no) => setTimeout(() => no(new Error(`${what}: not within 20 s`)), 20000))]);
  await within("the host joins", host.evaluate(joinThroughSfu, room));
  await within("the guest joins", guest.evaluate(joinThroughSfu, room));
  // The host published before the guest came: publishing, the guest hears of it.
  for (const page of [host, guest]) {
    const until = Date.now() + 45000;
    for (;;) {
      const r = await received(page);
      if (Object.values(r.out).some((s) => s.frames >= 5 && s.samples > 0)) break;
      if (Date.now() > until) throw new Error(`no media through the SFU within 45 s: ${JSON.stringify(r)}`);
      await new Promise((ok) => setTimeout(ok, 250));
    }
  }
  const firstFrames = Date.now() - t0;
  for (const page of [host, guest]) {
    const r = await received(page);
    expect(r.errors.length === 0, `no errors: ${JSON.stringify(r.errors)}`);
    expect(Object.values(r.out).some((s) => s.frames >= 5 && s.samples > 0), `video and audio: ${JSON.stringify(r.out)}`);
  }
  console.log(JSON.stringify({ joinToFramesThroughSfuMs: firstFrames }));
});
