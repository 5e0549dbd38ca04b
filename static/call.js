// The call page: camera preview, proving a key over protocol v1, then a mesh of
// RTCPeerConnections (static/rtc.js) with each peer's identity bound to its DTLS
// certificate, chat, "confirm identity", and calls that outlive the signaling socket.
// In a call through the SFU (welcome or `media` says "sfu"), media goes through
// Janus end-to-end encrypted instead (static/sfu.js, static/e2ee.js), with each
// peer's media key bound to the ECDH key its proof signed.
//
//   page ── request {roomId, fingerprint, mediaKey} ─▶ server ── challenge ─▶ page signs ── auth ─▶
//   ◀── welcome {peers, media, iceServers, resume} ; peer-joined / peer-left / signal / peer-verified …
//
// Media flows peer to peer, so losing the socket (a proxy timeout, a network change,
// a server restart) need not stop it: the page keeps every RTCPeerConnection, comes
// back with its resume token (method `resume`: no signature, touch or wallet prompt),
// and takes up each peer again when the server announces it with the same identity
// and the same signed DTLS fingerprint. A peer that does not come back within
// LOST_PEER_GRACE_MS is dropped.

import {
  browserKey, browserKeyProof, identityOf, importBrowserKey, lastPasskeyIdentity, passkeyCredential, pemToDer, stored, walletAddress,
  walletSignature,
} from "/static/proof.js";
import { Peer, certificateFingerprint } from "/static/rtc.js";
import { E2ee, ROTATION_DELAY_MS } from "/static/e2ee.js";
import { SfuPeer, SfuPublisher } from "/static/sfu.js";
import { verifyForwardedProof } from "/static/identity.js";

const root = document.getElementById("call-root");
const ROOM = root.dataset.room;
const $ = (id) => document.getElementById(id);
const status = (text) => ($("status").textContent = text);
const banner = (text) => {
  $("banner").hidden = !text;
  $("banner").textContent = text || "";
};

const state = {
  ws: null,
  me: null, // welcome
  method: null,
  peers: new Map(), // peerId → { peer: Peer, info, tile }
  stream: null,
  certificate: null,
  fingerprint: null,
  iceServers: [],
  waiters: [],
  leaving: false,
  retries: 0,
  sharing: null,
  resume: null, // { token, expires }: how to come back after losing the socket
  e2ee: null, // this page's ECDH key and media keys (static/e2ee.js)
  media: "mesh", // how this call carries media: "mesh" or "sfu"
  publisher: null, // through the SFU: what this page sends
};

/** How long a peer whose socket dropped keeps its tile and media, waiting for it. */
const LOST_PEER_GRACE_MS = 30_000;
/** `peer-left` reasons after which the peer is expected back. */
const LOST = ["disconnected", "server shutting down", "slow-consumer"];

const METHOD_NAMES = { webcrypto: "browser key", webauthn: "passkey", eth: "wallet", ssh: "SSH key", piv: "PIV card", ticket: "native client" };
const short = (fp) => (fp || "").replace(/^SHA256:/, "").slice(0, 10);
const time = (iso) => new Date(iso).toLocaleTimeString();

for (const el of document.querySelectorAll(".here")) el.textContent = location.origin + location.pathname;

// ── The DTLS certificate: made once, kept in IndexedDB, signed into every request.

async function certificate() {
  let cert = await stored("dtls-certificate").catch(() => null);
  if (!cert || cert.expires < Date.now() + 86_400_000) {
    cert = await RTCPeerConnection.generateCertificate({ name: "ECDSA", namedCurve: "P-256" });
    await stored("dtls-certificate", cert).catch(() => {});
  }
  return cert;
}

// ── Preview and devices.

async function startPreview() {
  const video = $("camera").value, audio = $("microphone").value;
  for (const t of state.stream?.getTracks() || []) t.stop();
  $("media-on").hidden = true;
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: video ? { deviceId: { exact: video } } : true,
      audio: audio ? { deviceId: { exact: audio } } : true,
    });
    $("media-status").textContent = "";
  } catch (e) {
    state.stream = null;
    $("media-status").textContent = `No camera or microphone (${e.name}); you can still join to watch and listen.`;
  }
  $("preview").srcObject = state.stream;
  const self = document.querySelector('.tile[data-peer="self"] video');
  if (self) self.srcObject = state.stream;
  applyMutes();
  await listDevices();
  for (const peer of senders()) {
    for (const kind of ["audio", "video"]) {
      const track = state.stream?.getTracks().find((t) => t.kind === kind) || null;
      if (kind !== "video" || !state.sharing) await peer.replaceTrack(kind, track);
    }
  }
}

/** Whatever sends this page's tracks: each mesh peer, or the one SFU publisher. */
function senders() {
  return state.media === "sfu" ? [state.publisher].filter(Boolean) : [...state.peers.values()].map((e) => e.peer);
}

/** Out of the call: the camera and microphone go off (their lights too). */
function stopMedia() {
  for (const t of state.stream?.getTracks() || []) t.stop();
  state.stream = null;
  $("preview").srcObject = null;
  $("media-status").textContent = "Your camera and microphone are off.";
  $("media-on").hidden = false;
}

$("media-on").addEventListener("click", async () => {
  $("media-on").hidden = true;
  await startPreview();
});

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [select, kind] of [[$("camera"), "videoinput"], [$("microphone"), "audioinput"]]) {
    const current = state.stream?.getTracks().find((t) => `${t.kind}input` === kind)?.getSettings().deviceId;
    select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => new Option(d.label || `${kind} ${i + 1}`, d.deviceId, false, d.deviceId === current)));
  }
}

function applyMutes() {
  for (const t of state.stream?.getAudioTracks() || []) t.enabled = $("preview-audio").checked;
  for (const t of state.stream?.getVideoTracks() || []) t.enabled = $("preview-video").checked;
  $("toggle-audio").textContent = $("preview-audio").checked ? "Mute" : "Unmute";
  $("toggle-video").textContent = $("preview-video").checked ? "Camera off" : "Camera on";
}

$("camera").addEventListener("change", startPreview);
$("microphone").addEventListener("change", startPreview);
$("preview-audio").addEventListener("change", applyMutes);
$("preview-video").addEventListener("change", applyMutes);

// ── The socket.

function send(message) {
  if (state.ws?.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
}

/** The next message of one of `types` (or an error) while joining. */
function next(types, timeoutMs = 660_000) {
  return new Promise((resolve, reject) => {
    const w = { types, resolve, reject };
    w.timer = setTimeout(() => {
      state.waiters = state.waiters.filter((x) => x !== w);
      reject(new Error("the server did not answer"));
    }, timeoutMs);
    state.waiters.push(w);
  });
}

function connect() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("cannot reach the server"));
    ws.onmessage = (e) => onMessage(JSON.parse(e.data));
    ws.onclose = (e) => onClose(ws, e);
    state.ws = ws;
  });
}

const REFUSALS = {
  "room-full": (m) => `${m.message}. Calls are a mesh, so rooms are small; try again when someone leaves.`,
  "room-not-found": () => "There is no such room. Check the link you were sent.",
  "bad-proof": (m) => `The proof was not accepted: ${m.message}`,
  "private-key": (m) => m.message,
  restricted: (m) => `Your key is on the room's list, but it was refused: ${m.message}.`,
  "auth-timeout": () => "The challenge expired before it was answered; try again.",
};

class Refused extends Error {
  constructor(m) {
    super(m.message);
    this.code = m.code;
    this.server = m;
  }
}

function onMessage(m) {
  // Waiters exist only while joining; after that every message is an event.
  const w = state.waiters.find((x) => x.types.includes(m.type) || m.type === "error");
  if (w) {
    state.waiters = state.waiters.filter((x) => x !== w);
    clearTimeout(w.timer);
    return m.type === "error" ? w.reject(new Refused(m)) : w.resolve(m);
  }
  switch (m.type) {
    case "peer-joined":
      return addPeer(m);
    case "peer-left":
      // A peer's media through the SFU ends with its socket; in the mesh it goes on.
      return LOST.includes(m.reason) && state.media !== "sfu" ? suspendPeer(m.peerId) : removePeer(m.peerId, m.reason);
    case "resume":
      return keepResume(m);
    case "signal":
      return state.peers.get(m.from)?.peer.receive(m.data);
    case "sfu":
      return onSfu(m);
    case "media":
      return m.mode === "sfu" && state.media !== "sfu" ? moveToSfu() : undefined;
    case "challenge":
      return answerReverification(m);
    case "peer-verified":
      return showVerified(m.peerId, `confirmed ${time(m.at)}`, "ok");
    case "peer-verification-failed":
      return showVerified(m.peerId, m.reason === "timeout" ? "did not confirm in time" : "confirmation FAILED", "bad");
    case "error":
      if (["revoked", "not-confirmed", "room-deleted"].includes(m.code)) state.leaving = `You are out of the call: ${m.message}.`;
      else if (m.code === "shutting-down") banner("The server is restarting; reconnecting…");
      else if (m.code === "slow-consumer") banner("The connection fell behind; reconnecting…");
      else if (state.me) banner(m.message);
  }
}

// ── Proving the key.

async function prove(method, ch) {
  const payload = ch.payload;
  if (method === "webcrypto") return { type: "auth", method, payload, ...(await browserKeyProof(payload)) };
  if (method === "webauthn") return { type: "auth", method, payload, credential: await passkeyCredential(ch.webauthn) };
  if (method === "eth") return { type: "auth", method, payload, message: ch.siwe, signature: await walletSignature(ch.siwe) };
  if (method === "ssh") {
    $("ssh-command").textContent = `${ch.ssh.command}\n\n# or, with a YubiKey:\nkeygate sign --piv ${btoa(JSON.stringify(payload))}`;
    for (const id of ["ssh-command", "ssh-signature", "ssh-send"]) $(id).hidden = false;
    $("ssh-send").disabled = false;
    status("Run the command in a terminal, paste the signature and send it.");
    const signature = await new Promise((resolve) => {
      $("ssh-send").onclick = () => resolve($("ssh-signature").value);
    });
    for (const id of ["ssh-command", "ssh-signature", "ssh-send"]) $(id).hidden = true;
    $("ssh-signature").value = "";
    // `keygate sign --piv` prints its proof as one line of JSON (method piv).
    if (signature.trim().startsWith("{")) {
      const proof = JSON.parse(signature);
      if (!ch.methods.includes(proof.method)) throw new Error(`this challenge does not take a ${proof.method} proof`);
      return { ...proof, type: "auth", payload };
    }
    return { type: "auth", method, payload, signature };
  }
  if (method === "ticket") {
    return { type: "auth", method, payload, ticket: new URLSearchParams(location.hash.slice(1)).get("ticket") };
  }
  if (method === "resume") return { type: "auth", method, payload, token: state.resume?.token };
  throw new Error(`this page cannot prove a key with ${method}`);
}

/** What to tell a refused person: the identity to send to the host, when known. */
async function refusalText(method, e) {
  if (e.code && REFUSALS[e.code]) return REFUSALS[e.code](e.server);
  if (e.code !== "not-admitted") return e.message;
  let who = "";
  try {
    if (method === "webcrypto") {
      const jwk = await crypto.subtle.exportKey("jwk", (await browserKey()).publicKey);
      who = (await identityOf({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y })).identity;
    } else if (method === "eth") {
      who = (await identityOf(await walletAddress())).identity;
    } else if (method === "webauthn") {
      who = lastPasskeyIdentity();
    }
  } catch {
    /* the identity is a courtesy */
  }
  if (method === "ticket") return "The ticket was not accepted (it is single use and valid for 60 s): run keygate join again.";
  return who
    ? `This key is not on the room's list — send your identity to the host: ${who}`
    : method === "webauthn"
      ? "This passkey is not on the room's list — send its identity to the host (the passkey page shows it when you register it)."
      : "This key is not on the room's list — send your identity to the host (the Keys page shows it).";
}

/** Joins with `method`; "resume" continues the admission this page had. */
async function join(method) {
  const resuming = method === "resume";
  if (!resuming) banner("");
  if (!resuming) state.method = method;
  state.leaving = false;
  if (!resuming) status("Connecting…");
  for (const b of document.querySelectorAll("#lobby button")) b.disabled = true;
  try {
    if (!state.stream && !resuming) await startPreview();
    await connect();
    const request = { type: "request", roomId: ROOM, fingerprint: state.fingerprint, mediaKey: state.e2ee.publicKey };
    if (method === "webauthn") request.webauthn = true;
    if (method === "eth") request.address = await walletAddress();
    send(request);
    const ch = await next(["challenge"]);
    if (!ch.methods.includes(method)) throw new Error(`this server does not accept ${METHOD_NAMES[method] || method}`);
    if (!resuming) status(method === "webauthn" ? "Touch your security key or confirm the passkey…" : method === "eth" ? "Confirm in your wallet…" : "Signing…");
    send(await prove(method, ch));
    const welcome = await next(["welcome"]);
    if (method === "ticket") history.replaceState(null, "", location.pathname);
    admitted(welcome);
  } catch (e) {
    state.leaving = "refused";
    state.ws?.close();
    if (!resuming) {
      // At the top of the page, where it is seen, saying what to do.
      const text = await refusalText(method, e);
      status(text);
      banner(text);
      $("banner").scrollIntoView({ block: "nearest" });
    }
    for (const b of document.querySelectorAll("#lobby button")) b.disabled = false;
    throw e;
  }
}

function keepResume(offer) {
  state.resume = offer?.token ? { token: offer.token, expires: Date.now() + offer.expiresIn * 1000 } : null;
}

function admitted(welcome) {
  state.me = welcome;
  state.retries = 0;
  state.iceServers = welcome.iceServers || [];
  keepResume(welcome.resume);
  $("lobby").hidden = true;
  $("call").hidden = false;
  banner("");
  status(`In the call as ${short(welcome.keyFingerprint)} (${METHOD_NAMES[state.method] || state.method}).`);
  ensureTile("self", { label: "You", keyFingerprint: welcome.keyFingerprint, method: state.method }).video.srcObject = state.stream;
  state.media = welcome.media === "sfu" ? "sfu" : "mesh";
  root.dataset.media = state.media;
  if (state.media === "sfu") status(`${$("status").textContent} Media goes through the server's SFU, end-to-end encrypted.`);
  for (const info of welcome.peers) addPeer(info, true);
  if (state.media === "sfu") startSfu();
}

// ── Through the SFU.

/** Publishes this page's media through the SFU and hands everyone a media key. */
async function startSfu() {
  state.publisher?.close();
  state.publisher = new SfuPublisher(state.e2ee, state.stream, (fields) => send({ type: "sfu", ...fields }));
  if (state.sharing) await state.publisher.replaceTrack("video", state.sharing);
  await rotateKey(true);
  await state.publisher.start();
}

/** The call grew past the mesh: every link moves to the SFU, nobody rejoins. */
async function moveToSfu() {
  state.media = "sfu";
  root.dataset.media = "sfu";
  status(`${$("status").textContent} Media goes through the server's SFU, end-to-end encrypted.`);
  const infos = [...state.peers.values()].map((e) => e.info);
  for (const { peer } of state.peers.values()) peer.close();
  state.peers.clear();
  for (const info of infos) addPeer(info, true);
  addChat("keygate", "The call moved to the server's SFU (end-to-end encrypted) as it grew.");
  await startSfu();
}

function onSfu(m) {
  if (m.op === "answer") return state.publisher?.answered(m.jsep);
  if (m.op === "feed") return state.peers.get(m.peerId)?.peer.broken ? undefined : send({ type: "sfu", op: "subscribe", peerId: m.peerId });
  if (m.op === "offer") return state.peers.get(m.peerId)?.peer.offer(m.jsep);
}

let rotation = Promise.resolve();
/**
 * A new media key for what this page sends, handed to every peer sealed to its
 * proven ECDH key; frames use it once they had time to arrive (at once for the
 * first). Someone who left never receives it.
 */
function rotateKey(first = false) {
  rotation = rotation.then(async () => {
    state.e2ee.rotate();
    await Promise.all([...state.peers.values()].map((e) => e.peer.shareKey?.()));
    if (!first) await new Promise((r) => setTimeout(r, ROTATION_DELAY_MS));
    await state.e2ee.use();
  }).catch((e) => console.warn("key rotation failed", e));
  return rotation;
}

function onClose(ws, e) {
  if (ws !== state.ws) return;
  for (const w of state.waiters) w.reject(new Error(e.reason || "the connection closed"));
  state.waiters = [];
  if (!state.me) return;
  state.me = null;
  if (state.media === "sfu") {
    // Janus ends this page's sessions with its seat: everything is set up again.
    for (const id of [...state.peers.keys()]) removePeer(id, "reconnecting");
    state.publisher?.close();
    state.publisher = null;
  }
  if (typeof state.leaving === "string" && state.leaving !== "refused" && state.leaving !== "left") {
    return leaveCall(state.leaving);
  }
  if (state.leaving) return;
  // Media flows peer to peer: keep it while the signaling comes back.
  for (const id of [...state.peers.keys()]) suspendPeer(id);
  reconnect();
}

/** Ends the call on this page: every peer closed, the lobby shown with `why`. */
function leaveCall(why) {
  for (const id of [...state.peers.keys()]) removePeer(id, "reconnecting");
  state.publisher?.close();
  state.publisher = null;
  state.resume = null;
  stopMedia();
  banner(why);
  showLobby();
}

/**
 * After a network blip or a server restart: back in with the resume token, without
 * a reload or a prompt; with a new browser-key proof if the token is spent or
 * expired; otherwise the person is asked to join again.
 */
async function reconnect() {
  if (state.retries >= 8) return leaveCall("Disconnected. Join again when you are ready.");
  const delay = state.retries === 0 ? 250 : Math.min(500 * 2 ** state.retries, 8000);
  state.retries++;
  banner(`Connection to the server lost; reconnecting${delay >= 1000 ? ` in ${Math.round(delay / 1000)} s` : ""}… (the call goes on)`);
  await new Promise((r) => setTimeout(r, delay));
  const resumable = state.resume && state.resume.expires > Date.now() + 1000;
  if (!resumable && state.method !== "webcrypto") {
    return leaveCall("The connection to the server was lost for too long: join again to prove your key.");
  }
  try {
    await join(resumable ? "resume" : state.method);
  } catch (e) {
    if (resumable && e instanceof Refused && e.code === "not-admitted") {
      // The server wants a proof: a browser key makes one silently; a person is asked.
      state.resume = null;
      if (state.method === "webcrypto") return reconnect();
      return leaveCall("The server needs your key again (your session could not be resumed): join again.");
    }
    if (e instanceof Refused && e.code !== "shutting-down") return leaveCall(await refusalText(state.method, e));
    reconnect();
  }
}

function showLobby() {
  status("You are not in the call.");
  $("call").hidden = true;
  $("lobby").hidden = false;
  $("tiles").replaceChildren();
  for (const b of document.querySelectorAll("#lobby button")) b.disabled = false;
}

// ── Peers and tiles.

function ensureTile(id, info) {
  let tile = document.querySelector(`.tile[data-peer="${id}"]`);
  if (!tile) {
    tile = document.createElement("figure");
    tile.className = "tile";
    tile.dataset.peer = id;
    tile.innerHTML = `<video autoplay playsinline></video><figcaption><strong class="label"></strong>
      <code class="fp"></code> <span class="method"></span> <span class="badge"></span>
      <span class="verify-state"></span> <span class="e2ee"></span> <span class="link"></span></figcaption><p class="warning" hidden></p>`;
    if (id !== "self") {
      const b = document.createElement("button");
      b.className = "secondary confirm";
      b.textContent = "Confirm identity";
      b.onclick = () => {
        // The peer's current id: it changes when the peer reconnects.
        const peerId = tile.dataset.peer;
        showVerified(peerId, "asked to confirm…", "pending");
        send({ type: "verify-peer", peerId });
      };
      tile.querySelector("figcaption").append(b);
    } else tile.querySelector("video").muted = true;
    $("tiles").append(tile);
  }
  tile.querySelector(".label").textContent = info.label || "";
  tile.querySelector(".fp").textContent = short(info.keyFingerprint);
  tile.querySelector(".fp").title = `${info.identity || ""}\n${info.keyFingerprint || ""}`;
  tile.querySelector(".method").textContent = METHOD_NAMES[info.method] || info.method || "";
  return { tile, video: tile.querySelector("video") };
}

/** A peer whose socket dropped: its media goes on while it comes back. */
function suspendPeer(id) {
  const entry = state.peers.get(id);
  if (!entry || entry.suspended) return;
  entry.tile.classList.add("reconnecting");
  entry.tile.querySelector(".link").textContent = "reconnecting…";
  entry.suspended = setTimeout(() => removePeer(id, "gone"), LOST_PEER_GRACE_MS);
}

/**
 * Takes up a suspended peer announced again (under the same peer id when only this
 * page reconnected, a new one when the peer did) when it is the same identity with
 * the same signed DTLS fingerprint and its connection still lives: the media never
 * stopped, so nothing is renegotiated.
 */
function adopt(info) {
  if (!info.fingerprint) return false;
  for (const [oldId, entry] of state.peers) {
    if (!entry.suspended || entry.info.identity !== info.identity || entry.info.fingerprint !== info.fingerprint) continue;
    if (entry.peer.broken || ["failed", "closed"].includes(entry.peer.pc.connectionState)) continue;
    clearTimeout(entry.suspended);
    entry.suspended = null;
    state.peers.delete(oldId);
    const { proof, ...fresh } = info; // a resumed peer forwards no proof; keep what was checked
    Object.assign(entry.info, fresh, proof ? { proof } : {});
    entry.peer.polite = state.me.peerId < info.peerId;
    entry.tile.dataset.peer = info.peerId;
    entry.tile.classList.remove("reconnecting");
    entry.tile.querySelector(".link").textContent = "";
    state.peers.set(info.peerId, entry);
    return true;
  }
  return false;
}

function addPeer(info, initiator = false) {
  if (!state.me || adopt(info) || state.peers.has(info.peerId)) return;
  const { tile, video } = ensureTile(info.peerId, info);
  const badge = tile.querySelector(".badge");
  badge.textContent = "admitted by the server";
  const hooks = {
    signal: (data) => send({ type: "signal", to: info.peerId, data }),
    onTrack: (stream) => {
      video.srcObject = stream;
    },
    onMismatch: (problem, why) => {
      video.srcObject = null;
      badge.textContent = problem.includes("media-key") ? "media key not bound to this key" : "media not bound to this key";
      badge.className = "badge bad";
      tile.classList.add("broken");
      tile.dataset.state = "broken";
      const w = tile.querySelector(".warning");
      w.hidden = false;
      w.textContent = `Identity broken: ${why}. Its media is not shown.`;
      send({ type: "report", peerId: info.peerId, problem });
    },
    onChat: (text) => addChat(info.label || short(info.keyFingerprint), text),
    onState: (s) => (tile.dataset.connection = s),
  };
  let peer;
  if (state.media === "sfu") {
    hooks.sfu = (fields) => send({ type: "sfu", ...fields });
    hooks.onKey = () => {
      tile.dataset.e2ee = "keyed";
      const e2ee = tile.querySelector(".e2ee");
      e2ee.textContent = "end-to-end encrypted";
      e2ee.title = "Its media key arrived sealed to the key its proof signed; the server and the SFU cannot read its media.";
    };
    peer = new SfuPeer(info, state.me.peerId, state.e2ee, hooks);
  } else {
    peer = new Peer(info, state.me.peerId, { iceServers: state.iceServers, certificate: state.certificate, stream: state.stream, initiator }, hooks);
  }
  state.peers.set(info.peerId, { peer, info, tile });
  // A newcomer to a call through the SFU: everyone's frames get a key it never had.
  if (state.media === "sfu" && !initiator && !peer.broken) rotateKey();
  tile.dataset.state = "ok";
  if (info.lastVerified) showVerified(info.peerId, `confirmed ${time(info.lastVerified)}`, "ok");
  verifyForwardedProof(info, ROOM).then(
    (checked) => {
      if (checked && !peer.broken) {
        badge.textContent = "verified by your browser";
        badge.classList.add("verified");
      }
    },
    (e) => {
      badge.textContent = `proof did NOT verify: ${e.message}`;
      badge.classList.add("bad");
      send({ type: "report", peerId: info.peerId, problem: "proof-invalid" });
    },
  );
}

function removePeer(id, reason) {
  const entry = state.peers.get(id);
  if (!entry) return;
  clearTimeout(entry.suspended);
  entry.peer.close();
  entry.tile.remove();
  state.peers.delete(id);
  // Whoever left cannot read what this page sends from now on.
  if (state.media === "sfu" && state.me && !state.leaving && reason !== "reconnecting") rotateKey();
  if (reason === "removed") addChat("keygate", `${entry.info.label || short(entry.info.keyFingerprint)} was removed from the room.`);
}

function showVerified(id, text, kind) {
  const el = document.querySelector(`.tile[data-peer="${id}"] .verify-state`);
  if (!el) return;
  el.textContent = text;
  el.className = `verify-state ${kind}`;
}

/** Another peer (or the host) asked this page to prove its key again. */
async function answerReverification(ch) {
  const method = state.method === "ticket" ? "ssh" : state.method;
  banner("Someone asked you to confirm your identity" + (method === "ssh" ? ": sign the command below with your SSH key." : "…"));
  if (method === "ssh") {
    $("lobby").hidden = false;
    for (const b of document.querySelectorAll("#lobby button")) b.disabled = true;
  }
  try {
    send(await prove(method, ch));
    banner("");
  } catch (e) {
    banner(`Could not confirm your identity: ${e.message}`);
  } finally {
    if (method === "ssh") $("lobby").hidden = true;
  }
}

// ── Chat and controls.

function addChat(who, text) {
  const li = document.createElement("li");
  const b = document.createElement("strong");
  b.textContent = `${who}: `;
  li.append(b, text);
  $("chat-log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text) return;
  for (const { peer } of state.peers.values()) peer.send(text);
  addChat("You", text);
  $("chat-input").value = "";
});

$("toggle-audio").onclick = () => {
  $("preview-audio").checked = !$("preview-audio").checked;
  applyMutes();
};
$("toggle-video").onclick = () => {
  $("preview-video").checked = !$("preview-video").checked;
  applyMutes();
};
$("share").onclick = async () => {
  if (state.sharing) return stopSharing();
  try {
    const screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    state.sharing = screen.getVideoTracks()[0];
    state.sharing.onended = stopSharing;
    for (const peer of senders()) await peer.replaceTrack("video", state.sharing);
    $("share").textContent = "Stop sharing";
  } catch (e) {
    banner(`Screen sharing did not start: ${e.message}`);
  }
};
async function stopSharing() {
  state.sharing?.stop();
  state.sharing = null;
  const camera = state.stream?.getVideoTracks()[0] || null;
  for (const peer of senders()) await peer.replaceTrack("video", camera);
  $("share").textContent = "Share screen";
}
$("leave").onclick = () => {
  state.leaving = "left";
  state.resume = null;
  state.ws?.close(1000, "left");
  for (const id of [...state.peers.keys()]) removePeer(id, "left");
  state.publisher?.close();
  state.publisher = null;
  state.me = null;
  stopMedia();
  showLobby();
  status("You left the call.");
};

// ── Start.

const run = (method) => () => join(method).catch(() => {});
$("join-browser-key")?.addEventListener("click", run("webcrypto"));
$("join-passkey")?.addEventListener("click", run("webauthn"));
$("join-wallet")?.addEventListener("click", run("eth"));
$("join-ssh")?.addEventListener("click", run("ssh"));
$("join-ticket")?.addEventListener("click", run("ticket"));
$("join-imported")?.addEventListener("click", async () => {
  try {
    await importBrowserKey(pemToDer($("import-pem").value));
  } catch (e) {
    return status(`That is not a PKCS#8 P-256 private key: ${e.message}`);
  }
  run("webcrypto")();
});

state.e2ee = await E2ee.create(ROOM);
state.certificate = await certificate();
state.fingerprint = certificateFingerprint(state.certificate);
if (new URLSearchParams(location.hash.slice(1)).get("ticket") && $("ticket-method")) {
  $("ticket-method").hidden = false;
  status("A ticket from keygate join is ready: join with it within a minute.");
}
await startPreview();
root.dataset.ready = "true";
