// A call through the SFU in headless Chromium (real Janus on loopback, fake camera
// and microphone), end-to-end encrypted: four people with four methods — a browser
// key (the host), a passkey, a wallet and a one-time ticket — each decode the
// others' video and audio, and the picture is the sender's (a pixel check against
// the fake camera). The test then plays a curious server: it subscribes to the
// host's feed on Janus directly, without keys, and receives frames it cannot show.
// Mallory signs one ECDH key and holds another: she is flagged and not shown. The
// host removes the wallet's key mid-call: the host's frames move to a key the
// wallet never received (seen on the wire by the curious subscriber).
//
//   JANUS=ws://127.0.0.1:PORT node tests/js/e2ee.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// Prints a JSON line of figures, then "ok", and exits 0.

import { Wallet } from "ethers";
import { createServer } from "node:http";
import {
  THUMB, acceptInvite, base, createRoom, expect, invite, joinWith, openCall, pages, participant, pictureDistances,
  receivesThroughSfu, run, setMedia, ticketFor, tile, virtualAuthenticator, walletParticipant,
} from "./browser_kit.mjs";

// Mallory's page signs an ECDH public key that is not the one it holds.
const SWAP_MEDIA_KEY = () => {
  const subtle = crypto.subtle;
  const exportKey = subtle.exportKey.bind(subtle), generateKey = subtle.generateKey.bind(subtle);
  subtle.exportKey = async (format, key) => {
    if (format === "raw" && key.type === "public" && key.algorithm?.name === "ECDH") {
      const other = await generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
      return exportKey("raw", other.publicKey);
    }
    return exportKey(format, key);
  };
};

/** In a page: subscribes to `display`'s feed on Janus directly, without keys, as a curious server would. */
const CURIOUS = async ({ janus, display }) => {
  const ws = new WebSocket(janus, "janus-protocol");
  await new Promise((ok, no) => {
    ws.onopen = ok;
    ws.onclose = (e) => no(new Error(`Janus at ${janus} closed the socket (${e.code} ${e.reason})`));
  });
  let n = 0;
  const waiting = new Map();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.janus === "ack" || !waiting.has(m.transaction)) return;
    waiting.get(m.transaction)(m);
    waiting.delete(m.transaction);
  };
  const call = (body) => new Promise((ok) => { const transaction = `c${++n}`; waiting.set(transaction, ok); ws.send(JSON.stringify({ ...body, transaction })); });
  const session_id = (await call({ janus: "create" })).data.id;
  const handle_id = (await call({ janus: "attach", session_id, plugin: "janus.plugin.videoroom" })).data.id;
  const ask = (body, jsep) => call({ janus: "message", session_id, handle_id, body, ...(jsep ? { jsep } : {}) });
  setInterval(() => ws.send(JSON.stringify({ janus: "keepalive", session_id, transaction: `k${++n}` })), 10000);
  const room = (await ask({ request: "list" })).plugindata.data.list[0].room;
  const feed = (await ask({ request: "listparticipants", room })).plugindata.data.participants.find((p) => p.display === display).id;
  const joined = await ask({ request: "join", ptype: "subscriber", room, streams: [{ feed }] });
  const state = (window.__curious = { kids: [], video: null, pc: null });
  const pc = (state.pc = new RTCPeerConnection({ encodedInsertableStreams: true }));
  pc.ontrack = ({ track, receiver }) => {
    // Frames pass as they came; the last byte of each (its key id) is noted.
    const { readable, writable } = receiver.createEncodedStreams();
    readable.pipeThrough(new TransformStream({
      transform(frame, out) {
        if (track.kind === "video") {
          const kid = new Uint8Array(frame.data).at(-1);
          if (state.kids.at(-1)?.kid !== kid) state.kids.push({ kid, at: Date.now() });
        }
        out.enqueue(frame);
      },
    })).pipeTo(writable);
    if (track.kind !== "video") return;
    const v = (state.video = document.createElement("video"));
    v.autoplay = v.muted = true;
    v.srcObject = new MediaStream([track]);
    document.body.append(v);
  };
  await pc.setRemoteDescription(joined.jsep);
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((ok) => (pc.iceGatheringState === "complete" ? ok() : (pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok())));
  await ask({ request: "start" }, { type: "answer", sdp: pc.localDescription.sdp });
};

await run("e2ee", async () => {
  const janus = process.env.JANUS;
  expect(janus, "JANUS names Janus's WebSocket API");
  const host = await participant("host");
  const roomUrl = await createRoom(host, "Encrypted room");
  const room = roomUrl.split("/").pop();
  await setMedia(host, "sfu");
  const wallet = Wallet.createRandom();
  await host.click('nav.sections a:has-text("Add keys")');
  await host.fill("#keys", wallet.address);
  await host.fill("#label", "Wallet person");
  await host.click('button:text-is("Add")');
  await host.waitForSelector("text=Added 1 key.");
  const invites = {};
  for (const who of ["Passkey person", "Ticket person", "Mallory"]) invites[who] = await invite(host, who);

  const pk = await participant("passkey", virtualAuthenticator);
  await pk.goto(`${base}/i/${invites["Passkey person"]}`);
  await pk.click("#create-passkey");
  await pk.waitForSelector("text=is now on the room's list");
  const walletPage = await walletParticipant("wallet", wallet);
  const ticketPage = await participant("ticket");
  const mallory = await participant("mallory", null, SWAP_MEDIA_KEY);
  for (const [page, who] of [[ticketPage, "Ticket person"], [mallory, "Mallory"]]) {
    await acceptInvite(page, invites[who]);
  }

  // Four join, with four methods; each decodes the three others through the SFU.
  const joins = {};
  await openCall(host, room);
  await joinWith(host, "#join-browser-key");
  expect((await host.getAttribute("#call-root", "data-media")) === "sfu", "the call goes through the SFU");
  for (const [page, button, name] of [[pk, "#join-passkey", "passkey"], [walletPage, "#join-wallet", "wallet"]]) {
    await openCall(page, room);
    const [t0] = await joinWith(page, button);
    await receivesThroughSfu(page, name === "passkey" ? 1 : 2, `${name} joining`);
    joins[name] = Date.now() - t0;
  }
  // The ticket, as `keygate join` hands it, asked for here with the browser key.
  const ticket = await ticketFor(ticketPage, room);
  await ticketPage.goto(`${base}/r/${room}#ticket=${ticket}`);
  await ticketPage.waitForSelector("#call-root[data-ready=true]");
  const [ticketT0] = await joinWith(ticketPage, "#join-ticket");
  await receivesThroughSfu(ticketPage, 3, "ticket joining");
  joins.ticket = Date.now() - ticketT0;
  const everyone = [host, pk, walletPage, ticketPage];
  for (const page of everyone) await receivesThroughSfu(page, 3, "four in the call");

  // The decoded picture is the sender's: the fake camera's pattern, as each page's own preview shows it.
  await new Promise((r) => setTimeout(r, 1000));
  const distances = {};
  for (const [name, page] of [["host", host], ["passkey", pk], ["wallet", walletPage], ["ticket", ticketPage]]) {
    distances[name] = await pictureDistances(page);
    for (const [label, d] of Object.entries(distances[name])) expect(d !== null && d <= 40, `${name} sees ${label}'s picture (distance ${d})`);
  }
  // Each tile says its media is end-to-end encrypted, and the status line says how the call goes.
  for (const page of everyone) {
    await page.locator(".tile:not([data-peer=self]) .e2ee", { hasText: "end-to-end encrypted" }).nth(2).waitFor();
    expect((await page.textContent("#status")).includes("end-to-end encrypted"), "the status line says the call is end-to-end encrypted");
  }
  // Proofs a browser checks itself, with the media key they sign.
  await tile(host, "Passkey person").locator("text=verified by your browser").waitFor();
  await tile(pk, "owner").locator("text=verified by your browser").waitFor();
  await tile(pk, "Wallet person").locator("text=verified by your browser").waitFor();
  // A ticket is the server's word that a key signed: nothing for a browser to check.
  await tile(pk, "Ticket person").locator("text=admitted by the server").waitFor();

  // Chat, sealed peer to peer.
  await host.fill("#chat-input", "sealed hello");
  await host.click("#chat-form button");
  for (const page of [pk, walletPage, ticketPage]) await page.locator("#chat-log", { hasText: "sealed hello" }).waitFor();

  // A curious server subscribes to the host's feed on Janus itself: frames arrive, the picture does not.
  const hostId = await pk.evaluate(() => [...document.querySelectorAll(".tile")].find((t) => t.querySelector(".label").textContent === "owner").dataset.peer);
  const curious = await participant("curious");
  // A blank page of its own on loopback (a secure context that may reach Janus).
  const blank = createServer((_, res) => res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>curious</title>"));
  await new Promise((ok) => blank.listen(0, "127.0.0.1", ok));
  await curious.goto(`http://127.0.0.1:${blank.address().port}/`);
  await curious.evaluate(CURIOUS, { janus, display: hostId });
  const until = Date.now() + 20000;
  let seen;
  for (;;) {
    seen = await curious.evaluate(async () => {
      let packets = 0, frames = 0;
      (await window.__curious.pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") { packets += s.packetsReceived || 0; frames += s.framesDecoded || 0; }
      });
      return { packets, frames, kids: window.__curious.kids.length };
    });
    if (seen.packets > 100 || Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  expect(seen.packets > 100, `the curious subscriber receives the host's packets: ${JSON.stringify(seen)}`);
  const curiousPicture = await curious.evaluate(async (thumb) => {
    const v = window.__curious.video;
    if (!v || !v.videoWidth) return null;
    const own = eval(thumb)(v);
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    const cam = document.createElement("video");
    cam.muted = true;
    cam.srcObject = stream;
    await cam.play();
    await new Promise((r) => setTimeout(r, 500));
    const real = eval(thumb)(cam);
    return Math.round(own.reduce((s, x, i) => s + Math.abs(x - real[i]), 0) / own.length);
  }, THUMB);
  expect(seen.frames === 0 || curiousPicture === null || curiousPicture > 40, `the curious subscriber shows no picture (${seen.frames} frames decoded, distance ${curiousPicture})`);

  // Mallory holds another ECDH key than the one she signed: flagged, not shown.
  await openCall(mallory, room);
  await joinWith(mallory, "#join-browser-key");
  for (const page of [host, pk]) {
    const flagged = tile(page, "Mallory");
    await flagged.locator(".warning:not([hidden])").waitFor({ timeout: 20000 });
    expect(await flagged.evaluate((t) => t.classList.contains("broken") && t.querySelector("video").srcObject === null), "Mallory's media is not shown");
    expect((await flagged.locator(".badge").textContent()).includes("media key not bound"), "the tile says why");
  }
  await mallory.click("#leave");

  // The host removes the wallet's key: it is ejected, and the host's frames move to
  // a key handed out after it left.
  const hostAdmin = await host.context().newPage();
  pages.hostAdmin = hostAdmin;
  await hostAdmin.goto(roomUrl);
  const kidsBefore = await curious.evaluate(() => window.__curious.kids.map((k) => k.kid));
  const removedAt = Date.now();
  await hostAdmin.locator("tr", { hasText: "Wallet person" }).locator("text=Remove").click();
  await walletPage.locator("#banner", { hasText: "your key was removed" }).waitFor({ timeout: 5000 });
  const rotated = Date.now() + 10000;
  let after;
  for (;;) {
    after = await curious.evaluate((t) => window.__curious.kids.filter((k) => k.at > t).map((k) => k.kid), removedAt);
    if (after.some((k) => !kidsBefore.includes(k)) || Date.now() > rotated) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(after.some((k) => !kidsBefore.includes(k)), `after the removal the host sends with a new key: before ${kidsBefore}, after ${after}`);
  // Those still in the call keep receiving each other.
  await new Promise((r) => setTimeout(r, 1000));
  for (const page of [pk, ticketPage]) {
    const d = await pictureDistances(page);
    expect(d.owner !== null && d.owner <= 40, `after the rotation the host's picture still shows (${JSON.stringify(d)})`);
  }

  // What encryption costs: AES-GCM over a 12 KB frame (a 640×480 VP8 frame is 2–20 KB), out and back.
  const cost = await host.evaluate(async () => {
    const { encryptFrame, decryptFrame } = await import("/static/sframe.js");
    const key = await crypto.subtle.importKey("raw", crypto.getRandomValues(new Uint8Array(16)), "AES-GCM", false, ["encrypt", "decrypt"]);
    const keys = new Map([[7, key]]);
    const n = 500;
    const frames = Array.from({ length: n }, () => ({ type: "delta", data: crypto.getRandomValues(new Uint8Array(12000)).buffer }));
    const t0 = performance.now();
    for (const f of frames) await encryptFrame(f, { kid: 7, key });
    const t1 = performance.now();
    for (const f of frames) if (!(await decryptFrame(f, keys))) throw new Error("a frame did not decrypt");
    const t2 = performance.now();
    return { encryptUsPerFrame: Math.round(((t1 - t0) * 1000) / n), decryptUsPerFrame: Math.round(((t2 - t1) * 1000) / n) };
  });
  const where = await host.evaluate(() => (typeof RTCRtpScriptTransform === "function" ? "worker" : "page"));
  blank.close();
  console.log(JSON.stringify({ joinToDecodedThroughSfuMs: joins, pictureDistance: distances, curious: { ...seen, distance: curiousPicture }, frameCrypto: { ...cost, transforms: where } }));
});
