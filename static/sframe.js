// Frame encryption for media through the SFU, in the spirit of SFrame (RFC 9605),
// shaped for what an SFU and a browser's packetizer must still read. Used by the
// call page's encoded transforms, on the page or in /static/e2ee-worker.js.
//
//   frame = clear ‖ AES-GCM(media key, iv, clear as AAD)(rest) ‖ iv (12) ‖ key id (1)
//
// `clear` is what the packetizer and Janus read of a frame: a VP8 key frame's 10
// bytes (frame tag and size), a delta frame's 3, an Opus frame's TOC byte. It is
// authenticated, not hidden. Each sender has its own AES-128-GCM media key, which
// it hands to each peer encrypted to that peer's proven ECDH key (static/e2ee.js);
// the key id names which of a sender's keys a frame used, so frames keep playing
// while keys rotate. A frame that does not decrypt is dropped, never passed on.

const IV = 12;

/** Bytes left in the clear: what the RTP packetizer and the SFU read. */
export function clearBytes(frame) {
  if (frame.type === undefined) return 1; // audio
  return frame.type === "key" ? 10 : 3;
}

/** Encrypts an encoded frame in place with `sender` ({kid, key}). */
export async function encryptFrame(frame, sender) {
  const data = new Uint8Array(frame.data);
  const clear = Math.min(clearBytes(frame), data.length);
  const iv = crypto.getRandomValues(new Uint8Array(IV));
  const head = data.subarray(0, clear);
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: head }, sender.key, data.subarray(clear)),
  );
  const out = new Uint8Array(clear + sealed.length + IV + 1);
  out.set(head, 0);
  out.set(sealed, clear);
  out.set(iv, clear + sealed.length);
  out[out.length - 1] = sender.kid;
  frame.data = out.buffer;
}

/**
 * Decrypts an encoded frame in place with the sender's key its id names
 * (`keys`: key id → CryptoKey). False, and the frame is left alone, when there is
 * no such key or the frame does not authenticate.
 */
export async function decryptFrame(frame, keys) {
  const data = new Uint8Array(frame.data);
  const clear = clearBytes(frame);
  if (data.length < clear + 16 + IV + 1) return false;
  const key = keys?.get(data[data.length - 1]);
  if (!key) return false;
  const iv = data.subarray(data.length - 1 - IV, data.length - 1);
  const head = data.subarray(0, clear);
  try {
    const plain = new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv, additionalData: head },
        key,
        data.subarray(clear, data.length - 1 - IV),
      ),
    );
    const out = new Uint8Array(clear + plain.length);
    out.set(head, 0);
    out.set(plain, clear);
    frame.data = out.buffer;
    return true;
  } catch {
    return false;
  }
}

/** Keys for the transforms of one page (or worker): the sender's key, and each remote peer's keys by id. */
export class FrameKeys {
  constructor() {
    this.sender = null; // {kid, key}
    this.receivers = new Map(); // peerId → Map(kid → CryptoKey)
  }

  static async importRaw(raw) {
    return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
  }

  async setSender(kid, raw) {
    this.sender = { kid, key: await FrameKeys.importRaw(raw) };
  }

  /** Keeps a peer's last few keys, so frames in flight across a rotation still play. */
  async setReceiver(peerId, kid, raw) {
    const keys = this.receivers.get(peerId) || new Map();
    keys.set(kid, await FrameKeys.importRaw(raw));
    while (keys.size > 4) keys.delete(keys.keys().next().value);
    this.receivers.set(peerId, keys);
  }

  forget(peerId) {
    this.receivers.delete(peerId);
  }

  /** A TransformStream for one sender (side "send") or one remote peer's receiver. */
  transform(side, peerId) {
    return new TransformStream({
      transform: async (frame, out) => {
        if (side === "send") {
          if (!this.sender) return; // nothing leaves unencrypted
          await encryptFrame(frame, this.sender);
          out.enqueue(frame);
        } else if (await decryptFrame(frame, this.receivers.get(peerId))) {
          out.enqueue(frame);
        }
      },
    });
  }
}
