// The call page through the SFU: this page publishes once to Janus, relayed by
// keygate (the `sfu` messages of docs/protocol.md), and receives each peer's feed
// on a connection of its own. Every frame is end-to-end encrypted (static/e2ee.js):
// Janus forwards what it cannot read. Media keys and chat go peer to peer over the
// signaling relay, sealed with the pair key of the two peers' proven ECDH keys.

/** What this page sends, published once for the whole room. */
export class SfuPublisher {
  /**
   * @param e2ee    this page's keys (static/e2ee.js)
   * @param stream  the camera and microphone (null: receive only)
   * @param send    sends an `sfu` message's fields
   */
  constructor(e2ee, stream, send) {
    this.e2ee = e2ee;
    this.send = send;
    this.senders = {};
    this.pc = new RTCPeerConnection(e2ee.pcConfig());
    for (const track of stream?.getTracks() || []) {
      const { sender } = this.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      e2ee.attachSender(sender);
      this.senders[track.kind] = sender;
    }
    this.pc.onicecandidate = ({ candidate }) => send({ op: "trickle", candidate: candidate ?? { completed: true } });
  }

  async start() {
    if (Object.keys(this.senders).length === 0) return false; // nothing to publish
    await this.pc.setLocalDescription(await this.pc.createOffer());
    this.send({ op: "publish", jsep: { type: "offer", sdp: this.pc.localDescription.sdp } });
    return true;
  }

  async answered(jsep) {
    await this.pc.setRemoteDescription(jsep);
  }

  async replaceTrack(kind, track) {
    if (this.senders[kind] && this.pc.signalingState !== "closed") await this.senders[kind].replaceTrack(track);
  }

  close() {
    this.pc.close();
  }
}

/** A peer of the call through the SFU: the same face as rtc.js's Peer for call.js. */
export class SfuPeer {
  /**
   * @param info   the peer as the server announced it (peerId, mediaKey, …)
   * @param me     this page's peer id
   * @param e2ee   this page's keys
   * @param hooks  { signal(data), sfu(fields), onTrack(stream), onMismatch(problem, why), onChat(text), onState(state), onKey() }
   */
  constructor(info, me, e2ee, hooks) {
    this.info = info;
    this.me = me;
    this.e2ee = e2ee;
    this.hooks = hooks;
    this.broken = null;
    this.pc = null;
    this.stream = new MediaStream();
    this.queue = Promise.resolve();
    if (!info.mediaKey) this.mismatch("no-media-key", "this peer signed no media key, so its media cannot be end-to-end encrypted");
  }

  /** Janus's offer of this peer's feed: answer it, decrypting what arrives. */
  async offer(jsep) {
    if (this.broken) return;
    this.pc?.close();
    const pc = (this.pc = new RTCPeerConnection(this.e2ee.pcConfig()));
    this.stream = new MediaStream();
    pc.ontrack = ({ track, receiver }) => {
      this.e2ee.attachReceiver(receiver, this.info.peerId);
      this.stream.addTrack(track);
      if (!this.broken) this.hooks.onTrack(this.stream);
    };
    pc.onicecandidate = ({ candidate }) => this.hooks.sfu({ op: "trickle", peerId: this.info.peerId, candidate: candidate ?? { completed: true } });
    pc.onconnectionstatechange = () => this.hooks.onState(pc.connectionState);
    await pc.setRemoteDescription(jsep);
    await pc.setLocalDescription(await pc.createAnswer());
    this.hooks.sfu({ op: "answer", peerId: this.info.peerId, jsep: { type: "answer", sdp: pc.localDescription.sdp } });
  }

  /** A relayed signal from this peer: its media key, or a chat line; in order. */
  receive(data) {
    this.queue = this.queue.then(() => this.apply(data)).catch((e) => console.warn("signal failed", e));
    return this.queue;
  }

  async apply(data) {
    if (this.broken) return;
    if (data.mediaKey) {
      try {
        await this.e2ee.unwrapFrom(this.me, this.info, data.mediaKey);
        this.hooks.onKey();
      } catch {
        this.mismatch("media-key-mismatch", "its media key does not open with the key it signed");
      }
    } else if (data.chat) {
      try {
        this.hooks.onChat((await this.e2ee.openChat(this.me, this.info, data.chat)).slice(0, 2000));
      } catch {
        console.warn("a chat line that does not open was dropped");
      }
    }
  }

  /** Hands this peer the current media key. */
  async shareKey() {
    if (!this.broken) this.hooks.signal({ mediaKey: await this.e2ee.wrapFor(this.me, this.info) });
  }

  async send(line) {
    if (!this.broken) this.hooks.signal({ chat: await this.e2ee.sealChat(this.me, this.info, line) });
  }

  mismatch(problem, why) {
    if (!this.broken) {
      this.broken = problem;
      for (const t of this.stream.getTracks()) t.stop();
      this.pc?.close();
      this.e2ee.forget(this.info.peerId);
      this.hooks.onMismatch(problem, why);
    }
    return false;
  }

  async replaceTrack() {
    // What this page sends goes through its one publisher.
  }

  close() {
    this.pc?.close();
    this.e2ee.forget(this.info.peerId);
  }
}
