// What the browser tests share: one headless Chromium (Debian's, driven by
// playwright-core; fake camera and microphone), participants in their own browser
// profiles whose RTCPeerConnections the test can inspect, and the steps of joining
// a call. Imported by the *.browser.mjs scripts.

import { getBytes } from "ethers";
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

export const [base, artifacts] = process.argv.slice(2);
export const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
});
/** Every page opened, by name, for screenshots and failure reports. */
export const pages = {};

export async function shoot() {
  mkdirSync(artifacts, { recursive: true });
  for (const [name, page] of Object.entries(pages)) {
    await page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true }).catch(() => {});
  }
}

export function expect(cond, what) {
  if (!cond) throw new Error(what);
}

/** Runs a flow: "ok" and exit 0, or the error, a connection report, screenshots and exit 1. */
export async function run(name, flow) {
  try {
    await flow();
    if (process.env.SCREENSHOTS) await shoot();
    console.log("ok");
    await browser.close();
    process.exit(0);
  } catch (e) {
    console.error(`${name} failed: ${e.stack || e}`);
    console.error(`connections: ${JSON.stringify(await connectionStates())}`);
    await shoot();
    await browser.close();
    process.exit(1);
  }
}

// Every page keeps its RTCPeerConnections where the test can read their stats.
export const COLLECT_PCS = () => {
  // The camera and microphone streams the page opened, to see that it closes them.
  window.__streams = [];
  const getUserMedia = navigator.mediaDevices?.getUserMedia.bind(navigator.mediaDevices);
  if (getUserMedia) {
    navigator.mediaDevices.getUserMedia = async (...args) => {
      const stream = await getUserMedia(...args);
      window.__streams.push(stream);
      return stream;
    };
  }
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config) {
      super(config);
      window.__pcs.push(this);
      const t0 = performance.now();
      this.__log = [];
      const note = (what) => this.__log.push(`${Math.round(performance.now() - t0)} ${what}`);
      this.addEventListener("signalingstatechange", () => note(`sig ${this.signalingState}`));
      this.addEventListener("connectionstatechange", () => note(`conn ${this.connectionState}`));
      this.addEventListener("iceconnectionstatechange", () => note(`ice ${this.iceConnectionState}`));
    }
    createDataChannel(...args) {
      const dc = super.createDataChannel(...args);
      (this.__channels ||= []).push(dc);
      return dc;
    }
  };
};

/** What each page's connections look like, for a failure report. */
export async function connectionStates() {
  const out = {};
  for (const [name, page] of Object.entries(pages)) {
    out[name] = await page
      .evaluate(() => (window.__pcs || []).map((pc) => ({ connection: pc.connectionState, signaling: pc.signalingState, sctp: pc.sctp?.state, channels: (pc.__channels || []).map((c) => c.readyState), log: pc.__log })))
      .catch((e) => String(e));
  }
  return out;
}

// A participant whose connections use another certificate than the one its key
// signed (what a relay swapping media would look like to the other peers).
export const SWAP_CERTIFICATE = () => {
  const Native = window.RTCPeerConnection;
  Native.generateCertificate({ name: "ECDSA", namedCurve: "P-256" }).then((c) => (window.__otherCert = c));
  window.RTCPeerConnection = class extends Native {
    constructor(config) {
      super({ ...config, certificates: [window.__otherCert] });
    }
  };
};

/** A participant in a fresh browser profile; `initScript` replaces COLLECT_PCS. */
export async function participant(name, setup, initScript = COLLECT_PCS) {
  const ctx = await browser.newContext();
  await ctx.addInitScript(initScript);
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] ${e.message}`));
  page.on("console", (m) => m.type() !== "log" || console.error(`[${name}] console: ${m.text()}`));
  pages[name] = page;
  if (setup) await setup(ctx, page);
  return page;
}

export async function openCall(page, room) {
  await page.goto(`${base}/r/${room}`);
  await page.waitForSelector("#call-root[data-ready=true]");
}

/** Joins; returns when the click happened and how long admission took (ms). */
export async function joinWith(page, button) {
  const t0 = Date.now();
  await page.click(button);
  await page.waitForSelector("#call:not([hidden])", { timeout: 20000, polling: 20 });
  return [t0, Date.now() - t0];
}

/** Milliseconds from t0 until a remote tile plays video. */
export async function firstRemoteFrame(page, t0) {
  await page.waitForFunction(
    () => [...document.querySelectorAll('.tile:not([data-peer="self"]) video')].some((v) => v.videoWidth > 0 && v.currentTime > 0),
    null,
    { timeout: 30000, polling: 20 },
  );
  return Date.now() - t0;
}

/** Waits until every open connection of a page has decoded `minFrames` video frames, and audio. */
export async function receivesMedia(page, peers, minFrames = 5) {
  await page.waitForFunction(
    async ([peers, minFrames]) => {
      const open = window.__pcs.filter((pc) => pc.connectionState === "connected");
      if (open.length !== peers) return false;
      for (const pc of open) {
        let frames = 0, samples = 0;
        (await pc.getStats()).forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
          if (s.type === "inbound-rtp" && s.kind === "audio") samples += s.totalSamplesReceived || 0;
        });
        if (frames < minFrames || samples === 0) return false;
      }
      return true;
    },
    [peers, minFrames],
    { timeout: 45000, polling: 250 },
  );
}

/** In a page: joins `room` with the browser key, publishes the camera through the
 *  SFU and receives every feed announced, speaking the `sfu` messages directly,
 *  with no frame encryption. State in window.__sfu. */
export const joinThroughSfu = async (room) => {
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

/** Waits until `page` decodes video and audio from `n` peers (and, with `tiles`, shows them on its call page). */
export async function receivesThroughSfu(page, n, what, { tiles = true } = {}) {
  const until = Date.now() + 45000;
  for (;;) {
    const seen = await page.evaluate(async () => {
      let ok = 0;
      for (const pc of window.__pcs.filter((pc) => pc.connectionState === "connected")) {
        let frames = 0, samples = 0;
        (await pc.getStats()).forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
          if (s.type === "inbound-rtp" && s.kind === "audio") samples += s.totalSamplesReceived || 0;
        });
        if (frames >= 5 && samples > 0) ok++;
      }
      const playing = [...document.querySelectorAll('.tile:not([data-peer="self"]) video')].filter((v) => v.videoWidth > 0).length;
      return { ok, playing };
    });
    if (seen.ok >= n && (!tiles || seen.playing >= n)) return;
    if (Date.now() > until) throw new Error(`${what}: ${JSON.stringify(seen)} of ${n} peers decoded through the SFU within 45 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** In a page: a 16×12 thumbnail of a video element, as RGB. */
export const THUMB = `(video) => {
  const c = document.createElement("canvas");
  c.width = 16; c.height = 12;
  const g = c.getContext("2d", { willReadFrequently: true });
  g.drawImage(video, 0, 0, 16, 12);
  return [...g.getImageData(0, 0, 16, 12).data].filter((_, i) => i % 4 !== 3);
}`;

/** Mean absolute difference (0–255) between each remote tile's picture and this page's own camera. */
export const pictureDistances = (page) =>
  page.evaluate(async (thumb) => {
    const shot = eval(thumb);
    const own = shot(document.getElementById("preview"));
    const out = {};
    for (const v of document.querySelectorAll('.tile:not([data-peer="self"]) video')) {
      const label = v.closest(".tile").querySelector(".label").textContent;
      if (!v.videoWidth) { out[label] = null; continue; }
      const t = shot(v);
      out[label] = Math.round(t.reduce((s, x, i) => s + Math.abs(x - own[i]), 0) / t.length);
    }
    return out;
  }, THUMB);

export const tile = (page, label) => page.locator(".tile", { hasText: label });

/** Whether every camera and microphone track the page opened has been stopped. */
export const mediaStopped = (page) =>
  page.evaluate(() => window.__streams.length > 0 && window.__streams.every((s) => s.getTracks().every((t) => t.readyState === "ended")));

/** Signs in on the host pages with this profile's browser key and creates a room. */
export async function createRoom(host, name) {
  await host.goto(`${base}/signin`);
  await host.click("#browser-key");
  await host.waitForURL(`${base}/rooms`);
  await host.fill("#name", name);
  await host.click("button:text-is(\"Create room\")");
  await host.waitForURL(/\/rooms\/[A-Za-z0-9]+$/);
  return host.url();
}

/** Sets how the room's calls carry media (mesh, sfu, auto) on its room page (open in `host`). */
export async function setMedia(host, mode) {
  await host.click('nav.sections a:has-text("Settings")');
  await host.selectOption("#media", mode);
  await host.click('button:text-is("Save settings")');
  await host.waitForURL(/\/rooms\/[A-Za-z0-9]+$/);
  expect((await host.inputValue("#media")) === mode, `the room page shows media ${mode}`);
}

/** Makes an invite link on the room page (open in `host`); returns its id. */
export async function invite(host, label) {
  await host.click("nav.sections a:has-text(\"Invites\")");
  await host.fill("#invite-label", label);
  await host.click("button:text-is(\"Create invite link\")");
  return (await host.textContent(".notice")).match(/\/i\/([A-Za-z0-9]+)/)[1];
}

/** A participant whose browser has an EIP-1193 wallet (`window.ethereum`) backed by an ethers.js Wallet. */
export async function walletParticipant(name, wallet) {
  return participant(name, async (ctx) => {
    await ctx.exposeFunction("kgWalletSign", async (hex) => wallet.signMessage(getBytes(hex)));
    await ctx.addInitScript((address) => {
      window.ethereum = {
        async request({ method, params }) {
          if (method === "eth_requestAccounts" || method === "eth_accounts") return [address];
          if (method === "personal_sign") return window.kgWalletSign(params[0]);
          throw new Error(`unsupported ${method}`);
        },
      };
    }, wallet.address);
  });
}

/** A one-time ticket for `room`, as `keygate join` would hand it, asked for over the socket with this page's browser key. */
export async function ticketFor(page, room) {
  await page.goto(`${base}/keys`);
  return page.evaluate(async (room) => {
    const { browserKeyProof } = await import("/static/proof.js");
    const ws = new WebSocket(`${location.origin.replace("http", "ws")}/ws`);
    return new Promise((resolve, reject) => {
      ws.onopen = () => ws.send(JSON.stringify({ type: "request", roomId: room, ticket: true }));
      ws.onmessage = async (e) => {
        const m = JSON.parse(e.data);
        if (m.type === "challenge") ws.send(JSON.stringify({ type: "auth", method: "webcrypto", payload: m.payload, ...(await browserKeyProof(m.payload)) }));
        else if (m.type === "ticket") resolve(m.ticket);
        else reject(new Error(JSON.stringify(m)));
      };
    });
  }, room);
}

/** Opens invite `link` in `page` and puts this profile's browser key on the room's list. */
export async function acceptInvite(page, link) {
  await page.goto(`${base}/i/${link}`);
  await page.click("#browser-key");
  await page.waitForSelector("text=is now on the room's list");
}

/** Gives a profile a platform authenticator that always sees and verifies its user. */
export async function virtualAuthenticator(ctx, page) {
  const cdp = await ctx.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
  });
}
