// A call in headless Chromium (playwright-core driving Debian's chromium, fake
// camera and microphone): three participants with three methods — a browser key
// (the host), a passkey through Chromium's virtual WebAuthn authenticator, and a
// wallet through an EIP-1193 provider injected here and backed by ethers.js — see
// and hear each other (checked with getStats), chat, confirm identities; a fourth
// whose media certificate is not the one it signed is flagged and not shown; the
// host removing the wallet's key ejects it from the call.
//
//   node tests/js/call.browser.mjs http://localhost:PORT ARTIFACT_DIR
//
// With SCREENSHOTS=1 it saves the screenshots on success too.
// Prints a JSON line of timings, then "ok", and exits 0; on failure saves a
// screenshot of every page into ARTIFACT_DIR and exits 1.

import { chromium } from "playwright-core";
import { Wallet, getBytes } from "ethers";
import { mkdirSync } from "node:fs";

const [base, artifacts] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
});
const pages = {};
async function shoot() {
  mkdirSync(artifacts, { recursive: true });
  for (const [name, page] of Object.entries(pages)) {
    await page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true }).catch(() => {});
  }
}
function expect(cond, what) {
  if (!cond) throw new Error(what);
}

// Every page keeps its RTCPeerConnections where the test can read their stats.
const COLLECT_PCS = () => {
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
async function connectionStates() {
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
const SWAP_CERTIFICATE = () => {
  const Native = window.RTCPeerConnection;
  Native.generateCertificate({ name: "ECDSA", namedCurve: "P-256" }).then((c) => (window.__otherCert = c));
  window.RTCPeerConnection = class extends Native {
    constructor(config) {
      super({ ...config, certificates: [window.__otherCert] });
    }
  };
};

async function participant(name, setup) {
  const ctx = await browser.newContext();
  await ctx.addInitScript(name === "mallory" ? SWAP_CERTIFICATE : COLLECT_PCS);
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] ${e.message}`));
  pages[name] = page;
  if (setup) await setup(ctx, page);
  return page;
}

async function openCall(page, room) {
  await page.goto(`${base}/r/${room}`);
  await page.waitForSelector("#call-root[data-ready=true]");
}

/** Joins; returns when the click happened and how long admission took (ms). */
async function joinWith(page, button) {
  const t0 = Date.now();
  await page.click(button);
  await page.waitForSelector("#call:not([hidden])", { timeout: 20000, polling: 20 });
  return [t0, Date.now() - t0];
}

/** Milliseconds from t0 until a remote tile plays video. */
async function firstRemoteFrame(page, t0) {
  await page.waitForFunction(
    () => [...document.querySelectorAll('.tile:not([data-peer="self"]) video')].some((v) => v.videoWidth > 0 && v.currentTime > 0),
    null,
    { timeout: 30000, polling: 20 },
  );
  return Date.now() - t0;
}

/** Waits until every open connection of a page has decoded `minFrames` video frames, and audio. */
async function receivesMedia(page, peers, minFrames = 5) {
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

const tile = (page, label) => page.locator(".tile", { hasText: label });

try {
  // The host signs in with a browser key, creates a room, lists the wallet's
  // address, and makes invites for the passkey person and for Mallory.
  const host = await participant("host");
  await host.goto(`${base}/signin`);
  await host.click("#browser-key");
  await host.waitForURL(`${base}/rooms`);
  await host.fill("#name", "Call room");
  await host.click("button:text-is(\"Create room\")");
  await host.waitForURL(/\/rooms\/[A-Za-z0-9]+$/);
  const roomUrl = host.url();
  const room = roomUrl.split("/").pop();
  const wallet = Wallet.createRandom();
  await host.fill("#keys", wallet.address);
  await host.fill("#label", "Wallet person");
  await host.click("button:text-is(\"Add\")");
  await host.waitForSelector("text=Added 1 key.");
  const invite = async (label) => {
    await host.fill("#invite-label", label);
    await host.click("button:text-is(\"Create invite link\")");
    return (await host.textContent(".notice")).match(/\/i\/([A-Za-z0-9]+)/)[1];
  };
  const passkeyInvite = await invite("Passkey person");
  const malloryInvite = await invite("Mallory");

  // The passkey person makes a passkey on a virtual authenticator, on the invite page.
  const pk = await participant("passkey", async (ctx, page) => {
    const cdp = await ctx.newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
    });
  });
  await pk.goto(`${base}/i/${passkeyInvite}`);
  await pk.click("#create-passkey");
  await pk.waitForSelector("text=is now on the room's list");

  // The wallet person's browser has an EIP-1193 provider whose key lives in ethers.js.
  const walletPage = await participant("wallet", async (ctx) => {
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

  // Mallory enrols her browser key through her invite.
  const mallory = await participant("mallory");
  await mallory.goto(`${base}/i/${malloryInvite}`);
  await mallory.click("#browser-key");
  await mallory.waitForSelector("text=is now on the room's list");

  // Three join, with three methods.
  await openCall(host, room);
  await joinWith(host, "#join-browser-key");
  await openCall(pk, room);
  const [pkT0, pkAdmitted] = await joinWith(pk, "#join-passkey");
  const pkFirstFrame = await firstRemoteFrame(pk, pkT0);
  // The third joins a call in progress, after looking at its own preview.
  await openCall(walletPage, room);
  for (const page of [host, pk]) await receivesMedia(page, 1, 30);
  const [walletT0, walletAdmitted] = await joinWith(walletPage, "#join-wallet");
  const walletFirstFrame = await firstRemoteFrame(walletPage, walletT0);

  // Each sees and hears the other two.
  for (const page of [host, pk, walletPage]) await receivesMedia(page, 2);
  for (const page of [host, pk, walletPage]) expect((await page.locator(".tile").count()) === 3, "three tiles on every page");

  // Browser-checked proofs: webcrypto and webauthn; a wallet proof is the server's word.
  await tile(host, "Passkey person").locator("text=verified by your browser").waitFor();
  await tile(pk, "owner").locator("text=verified by your browser").waitFor();
  await tile(host, "Wallet person").locator("text=admitted by the server").waitFor();

  // Chat over the data channels.
  await host.fill("#chat-input", "hello from the host");
  await host.click("#chat-form button");
  for (const page of [pk, walletPage]) await page.locator("#chat-log", { hasText: "hello from the host" }).waitFor();

  // "Confirm identity": the passkey answers with a touch, the wallet with a signature.
  await tile(host, "Passkey person").locator("button.confirm").click();
  await tile(host, "Passkey person").locator(".verify-state.ok").waitFor({ timeout: 20000 });
  await tile(walletPage, "owner").locator("button.confirm").click();
  await tile(walletPage, "owner").locator(".verify-state.ok").waitFor({ timeout: 20000 });
  await tile(host, "Wallet person").locator("button.confirm").click();
  await tile(host, "Wallet person").locator(".verify-state.ok").waitFor({ timeout: 20000 });

  // Mallory's connections use another certificate than the one her key signed.
  await openCall(mallory, room);
  await joinWith(mallory, "#join-browser-key");
  const flagged = tile(host, "Mallory");
  await flagged.locator(".warning:not([hidden])").waitFor({ timeout: 20000 });
  expect(await flagged.evaluate((t) => t.classList.contains("broken") && t.querySelector("video").srcObject === null), "Mallory's media is not shown");
  await tile(pk, "Mallory").locator(".warning:not([hidden])").waitFor({ timeout: 20000 });
  // The three others still receive each other.
  for (const page of [host, pk, walletPage]) await receivesMedia(page, 2);

  // The host removes the wallet's key on the room page: it is ejected from the call.
  const hostAdmin = await host.context().newPage();
  pages.hostAdmin = hostAdmin;
  await hostAdmin.goto(roomUrl);
  await hostAdmin.locator("tr", { hasText: "Wallet person" }).locator("text=Remove").click();
  await walletPage.locator("#banner", { hasText: "your key was removed from this room's whitelist" }).waitFor({ timeout: 5000 });
  await tile(host, "Wallet person").waitFor({ state: "detached", timeout: 5000 });

  // The audit log has the report and the confirmations.
  await hostAdmin.goto(`${roomUrl}/audit`);
  await hostAdmin.waitForSelector("text=peer-reported");
  await hostAdmin.waitForSelector("text=reverified");

  console.log(JSON.stringify({
    passkeySecondToJoin: { admittedMs: pkAdmitted, firstRemoteFrameMs: pkFirstFrame },
    walletThirdToJoin: { admittedMs: walletAdmitted, firstRemoteFrameMs: walletFirstFrame },
  }));
  if (process.env.SCREENSHOTS) await shoot();
  console.log("ok");
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`call flow failed: ${e.stack || e}`);
  console.error(`connections: ${JSON.stringify(await connectionStates())}`);
  await shoot();
  await browser.close();
  process.exit(1);
}
