// Media through Janus, relayed by keygate: two people (browser keys, fake camera
// and microphone) in one room each publish through the SFU and receive the
// other's media, speaking the `sfu` messages of docs/protocol.md directly.
//
//   node tests/js/sfu.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints a JSON line of timings, then "ok", and exits 0.

import { base, createRoom, expect, invite, participant, run, setMedia } from "./browser_kit.mjs";

/** In the page: joins `room` with the browser key, publishes the camera through
 *  the SFU, and receives every feed announced. State in window.__sfu. */
const joinThroughSfu = async (room) => {
  const { browserKeyProof } = await import("/static/proof.js");
  const state = (window.__sfu = { subscribers: {}, errors: [], published: false });
  let ws;
  const send = (m) => ws.send(JSON.stringify(m));
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  const publisher = new RTCPeerConnection();
  media.getTracks().forEach((t) => publisher.addTransceiver(t, { direction: "sendonly", streams: [media] }));
  publisher.onicecandidate = (e) => send({ type: "sfu", op: "trickle", candidate: e.candidate ?? { completed: true } });
  const receive = async (peerId, jsep) => {
    const pc = new RTCPeerConnection();
    state.subscribers[peerId] = pc;
    // Played, as the call page plays it: Chromium decodes audio for a sink.
    pc.ontrack = (e) => {
      const el = document.createElement(e.track.kind === "video" ? "video" : "audio");
      el.autoplay = true;
      el.muted = e.track.kind === "video";
      el.srcObject = new MediaStream([e.track]);
      document.body.append(el);
      el.play().catch(() => {});
    };
    pc.onicecandidate = (e) => send({ type: "sfu", op: "trickle", peerId, candidate: e.candidate ?? { completed: true } });
    await pc.setRemoteDescription(jsep);
    await pc.setLocalDescription(await pc.createAnswer());
    send({ type: "sfu", op: "answer", peerId, jsep: pc.localDescription });
  };
  await new Promise((resolve, reject) => {
    ws = new WebSocket(`${location.origin.replace("http", "ws")}/ws`);
    ws.onopen = () => send({ type: "request", roomId: room });
    ws.onerror = () => reject(new Error("socket failed"));
    ws.onmessage = async (e) => {
      const m = JSON.parse(e.data);
      console.log(`frame ${m.type} ${m.op ?? ""} ${m.code ?? ""} ${m.message ?? ""}`);
      if (m.type === "challenge") send({ type: "auth", method: "webcrypto", payload: m.payload, ...(await browserKeyProof(m.payload)) });
      else if (m.type === "welcome") {
        state.peerId = m.peerId;
        await publisher.setLocalDescription(await publisher.createOffer());
        send({ type: "sfu", op: "publish", jsep: publisher.localDescription });
        resolve();
      } else if (m.type === "sfu" && m.op === "answer") {
        await publisher.setRemoteDescription(m.jsep);
        state.published = true;
      } else if (m.type === "sfu" && m.op === "feed") send({ type: "sfu", op: "subscribe", peerId: m.peerId });
      else if (m.type === "sfu" && m.op === "offer") await receive(m.peerId, m.jsep);
      else if (m.type === "error") state.errors.push(m);
    };
  });
};

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
  await guest.goto(`${base}/i/${guestInvite}`);
  await guest.click("#browser-key");
  await guest.waitForSelector("text=is now on the room's list");

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
