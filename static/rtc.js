// One RTCPeerConnection per remote peer, negotiated with the "perfect negotiation"
// pattern (either side may offer; the polite side yields on collision). The first
// offer always comes from the newcomer: a peer already in the call waits for it,
// since a rolled-back first offer can strand its ICE candidates. Each link is bound
// to the identity the server admitted: every remote description's a=fingerprint,
// and the live connection's remote certificate, must be the fingerprint that peer
// signed. On mismatch the description is refused, so no media from an unbound
// certificate is ever decrypted or shown.

/** "sha-256 AB:CD:…" with the algorithm in lower case and the hex in upper case. */
export function normalizeFingerprint(text) {
  const [alg, value] = String(text || "").trim().split(/\s+/);
  return alg && value ? `${alg.toLowerCase()} ${value.toUpperCase()}` : "";
}

/** Every a=fingerprint of an SDP, normalized. */
export function sdpFingerprints(sdp) {
  return [...String(sdp).matchAll(/^a=fingerprint:(.+)$/gm)].map((m) => normalizeFingerprint(m[1]));
}

/** This page's DTLS certificate's fingerprint as it goes into `request`. */
export function certificateFingerprint(cert) {
  const f = cert.getFingerprints().find((f) => f.algorithm === "sha-256") || cert.getFingerprints()[0];
  return normalizeFingerprint(`${f.algorithm} ${f.value}`);
}

export class Peer {
  /**
   * @param info     the peer as the server announced it (peerId, identity, fingerprint, …)
   * @param me       this page's peer id (decides who is polite)
   * @param config   { iceServers, certificate, stream, initiator: whether this page is the newcomer }
   * @param hooks    { signal(data), onTrack(stream), onMismatch(why), onChat(text), onState(state) }
   */
  constructor(info, me, config, hooks) {
    this.info = info;
    this.hooks = hooks;
    this.polite = me < info.peerId;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.broken = null;
    this.initiator = Boolean(config.initiator);
    this.answered = false;
    this.stream = new MediaStream();
    this.queue = Promise.resolve();
    this.pc = new RTCPeerConnection({ iceServers: config.iceServers || [], certificates: [config.certificate] });
    // A channel both sides create with the same id needs no negotiation of its own.
    this.chat = this.pc.createDataChannel("chat", { negotiated: true, id: 0 });
    this.unsent = [];
    this.chat.onopen = () => {
      for (const frame of this.unsent.splice(0)) this.chat.send(frame);
    };
    this.chat.onmessage = (e) => {
      try {
        const m = JSON.parse(e.data);
        if (typeof m.text === "string") hooks.onChat(m.text.slice(0, 2000));
      } catch {
        /* not a chat message */
      }
    };
    // One sender per kind, kept so a device change or a screen share swaps its track.
    this.senders = {};
    for (const kind of ["audio", "video"]) {
      const track = config.stream?.getTracks().find((t) => t.kind === kind);
      this.senders[kind] = track ? this.pc.addTrack(track, config.stream) : this.pc.addTransceiver(kind, { direction: "recvonly" }).sender;
    }
    this.pc.onnegotiationneeded = async () => {
      if (!this.initiator && !this.answered) return; // the newcomer's offer comes first
      try {
        this.makingOffer = true;
        await this.pc.setLocalDescription();
        hooks.signal({ description: this.pc.localDescription });
      } catch (e) {
        console.warn("offer failed", e);
      } finally {
        this.makingOffer = false;
      }
    };
    this.pc.onicecandidate = ({ candidate }) => candidate && hooks.signal({ candidate });
    this.pc.ontrack = ({ track }) => {
      this.stream.addTrack(track);
      if (!this.broken) hooks.onTrack(this.stream);
    };
    this.pc.oniceconnectionstatechange = () => {
      if (this.pc.iceConnectionState === "failed") this.pc.restartIce();
    };
    this.pc.onconnectionstatechange = () => {
      hooks.onState(this.pc.connectionState);
      if (this.pc.connectionState === "connected") this.checkCertificate();
    };
  }

  /** Handles a relayed signal from this peer, one at a time and in order. */
  receive(data) {
    this.queue = this.queue.then(() => this.apply(data)).catch((e) => console.warn("signal failed", e));
    return this.queue;
  }

  async apply(data) {
    if (this.broken) return;
    if (data.description) {
      const d = data.description;
      if (!this.fingerprintMatches(d.sdp)) return;
      const collision = d.type === "offer" && (this.makingOffer || this.pc.signalingState !== "stable");
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      await this.pc.setRemoteDescription(d);
      if (d.type === "offer") {
        await this.pc.setLocalDescription();
        this.hooks.signal({ description: this.pc.localDescription });
        this.answered = true;
      }
    } else if (data.candidate) {
      try {
        await this.pc.addIceCandidate(data.candidate);
      } catch (e) {
        if (!this.ignoreOffer) throw e;
      }
    }
  }

  fingerprintMatches(sdp) {
    const signed = normalizeFingerprint(this.info.fingerprint);
    if (!signed) return this.mismatch("no-fingerprint", "this peer signed no DTLS certificate");
    const seen = sdpFingerprints(sdp);
    if (seen.length === 0 || seen.some((f) => f !== signed)) {
      return this.mismatch("fingerprint-mismatch", "its media certificate is not the one its key signed");
    }
    return true;
  }

  /** The certificate the live DTLS connection presented must be the signed one too. */
  async checkCertificate() {
    const stats = await this.pc.getStats();
    for (const s of stats.values()) {
      if (s.type !== "transport" || !s.remoteCertificateId) continue;
      const cert = stats.get(s.remoteCertificateId);
      const live = cert && normalizeFingerprint(`${cert.fingerprintAlgorithm} ${cert.fingerprint}`);
      if (live && live !== normalizeFingerprint(this.info.fingerprint)) {
        this.mismatch("fingerprint-mismatch", "the live connection uses another certificate than the signed one");
      }
    }
  }

  mismatch(problem, why) {
    if (!this.broken) {
      this.broken = problem;
      for (const t of this.stream.getTracks()) t.stop();
      this.pc.close();
      this.hooks.onMismatch(problem, why);
    }
    return false;
  }

  /** Sends a chat line; lines written before the channel opens wait for it. */
  send(text) {
    const frame = JSON.stringify({ text });
    if (this.chat.readyState === "open") this.chat.send(frame);
    else this.unsent.push(frame);
  }

  /** Uses `track` for every sender of its kind (camera ↔ screen, device changes). */
  async replaceTrack(kind, track) {
    if (this.pc.signalingState !== "closed") await this.senders[kind].replaceTrack(track);
  }

  close() {
    this.pc.close();
  }
}
