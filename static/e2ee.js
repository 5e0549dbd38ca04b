// End-to-end keys for calls through the SFU (docs/e2ee.md). Each page makes an
// ephemeral ECDH P-256 key pair; its public half goes into `request` as `mediaKey`,
// so the proof the page signs vouches for it, whatever the method. Two peers derive
// a pair key from their ECDH keys (HKDF-SHA256, salted with the room id); with it
// each hands the other its current media key (AES-128-GCM, random, rotated when
// someone joins or leaves) and seals chat lines. Frames are encrypted with the
// media key by encoded transforms (static/sframe.js), in a worker where the
// browser has RTCRtpScriptTransform, else on the page (createEncodedStreams).
//
// A peer whose wrapped key does not open with the ECDH key it signed holds another
// key than the one its proof names: it is flagged, and its media is not shown.

import { b64u } from "/static/proof.js";
import { FrameKeys } from "/static/sframe.js";

const ECDH = { name: "ECDH", namedCurve: "P-256" };
const text = new TextEncoder();

/** How long a new media key is handed out before frames use it. */
export const ROTATION_DELAY_MS = 300;

export class E2ee {
  static async create(room) {
    const pair = await crypto.subtle.generateKey(ECDH, false, ["deriveBits"]);
    const publicKey = b64u.encode(await crypto.subtle.exportKey("raw", pair.publicKey));
    return new E2ee(room, pair, publicKey);
  }

  constructor(room, pair, publicKey) {
    this.room = room;
    this.pair = pair;
    /** The ECDH public key, as signed in `request` (raw, base64url). */
    this.publicKey = publicKey;
    this.pairKeys = new Map(); // a peer's mediaKey → Promise<CryptoKey>
    this.kid = -1;
    this.raw = null;
    this.local = new FrameKeys();
    this.worker = typeof RTCRtpScriptTransform === "function" ? new Worker("/static/e2ee-worker.js", { type: "module" }) : null;
  }

  /** RTCPeerConnection settings the transforms need. */
  pcConfig() {
    return this.worker ? {} : { encodedInsertableStreams: true };
  }

  /** The key shared with the holder of ECDH public key `theirs` (same both ways). */
  pairKey(theirs) {
    if (!this.pairKeys.has(theirs)) {
      this.pairKeys.set(
        theirs,
        (async () => {
          const pub = await crypto.subtle.importKey("raw", b64u.decode(theirs), ECDH, false, []);
          const secret = await crypto.subtle.deriveBits({ name: "ECDH", public: pub }, this.pair.privateKey, 256);
          const hkdf = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveKey"]);
          const [a, b] = [this.publicKey, theirs].sort();
          const params = { name: "HKDF", hash: "SHA-256", salt: text.encode(this.room), info: text.encode(`keygate e2ee v1 ${a} ${b}`) };
          return crypto.subtle.deriveKey(params, hkdf, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
        })(),
      );
    }
    return this.pairKeys.get(theirs);
  }

  async seal(theirs, label, bytes) {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const data = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: text.encode(label) }, await this.pairKey(theirs), bytes);
    return { iv: b64u.encode(iv), data: b64u.encode(data) };
  }

  /** Opens what the holder of `theirs` sealed; throws when it does not authenticate. */
  async open(theirs, label, sealed) {
    const iv = b64u.decode(String(sealed?.iv || "")), data = b64u.decode(String(sealed?.data || ""));
    return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: text.encode(label) }, await this.pairKey(theirs), data));
  }

  /** A new media key for what this page sends; frames use it after `use()`. */
  rotate() {
    this.kid = (this.kid + 1) % 256;
    this.raw = crypto.getRandomValues(new Uint8Array(16));
    return this.kid;
  }

  /** Frames leave encrypted with the newest media key from now on. */
  async use() {
    const [kid, raw] = [this.kid, this.raw];
    if (this.worker) this.worker.postMessage({ op: "sender", kid, raw });
    else await this.local.setSender(kid, raw);
  }

  /** The current media key, sealed for peer `to` (its peer info) by peer `me`. */
  async wrapFor(me, to) {
    const sealed = await this.seal(to.mediaKey, `keygate media key ${this.room} ${me} ${to.peerId} ${this.kid}`, this.raw);
    return { kid: this.kid, ...sealed };
  }

  /** Takes a media key `from` (its peer info) sealed for `me`; throws if it does not open. */
  async unwrapFrom(me, from, wrapped) {
    const kid = Number(wrapped?.kid);
    if (!Number.isInteger(kid) || kid < 0 || kid > 255) throw new Error("a media key without a key id");
    const raw = await this.open(from.mediaKey, `keygate media key ${this.room} ${from.peerId} ${me} ${kid}`, wrapped);
    if (raw.length !== 16) throw new Error("a media key of the wrong size");
    if (this.worker) this.worker.postMessage({ op: "receiver", peerId: from.peerId, kid, raw });
    else await this.local.setReceiver(from.peerId, kid, raw);
  }

  sealChat(me, to, line) {
    return this.seal(to.mediaKey, `keygate chat ${this.room} ${me} ${to.peerId}`, text.encode(line));
  }

  async openChat(me, from, sealed) {
    return new TextDecoder().decode(await this.open(from.mediaKey, `keygate chat ${this.room} ${from.peerId} ${me}`, sealed));
  }

  forget(peerId) {
    if (this.worker) this.worker.postMessage({ op: "forget", peerId });
    else this.local.forget(peerId);
  }

  /** Encrypts what `sender` sends. */
  attachSender(sender) {
    if (this.worker) sender.transform = new RTCRtpScriptTransform(this.worker, { side: "send" });
    else {
      const { readable, writable } = sender.createEncodedStreams();
      readable.pipeThrough(this.local.transform("send")).pipeTo(writable);
    }
  }

  /** Decrypts what `receiver` gets from peer `peerId`, dropping what does not decrypt. */
  attachReceiver(receiver, peerId) {
    if (this.worker) receiver.transform = new RTCRtpScriptTransform(this.worker, { side: "receive", peerId });
    else {
      const { readable, writable } = receiver.createEncodedStreams();
      readable.pipeThrough(this.local.transform("receive", peerId)).pipeTo(writable);
    }
  }
}
