//! "Confirm identity" and what peers report about each other's media.
//!
//! Any peer may ask another of its room to sign a fresh challenge with the key it
//! was admitted with; a host page may too. An unanswered request fails after the
//! method's challenge lifetime, so a peer that walked away (or a deepfake with no
//! key) cannot leave the asker waiting. A room may also require every peer to
//! confirm every so often; a peer that fails such a confirmation is ejected.
//!
//! ```text
//!  A ── verify-peer {peerId: B} ──▶ server ── challenge {payload: purpose "reverify"} ──▶ B
//!  B ── auth {…same method…} ─────▶ server: same identity? signature good?
//!  A ◀── peer-verified {peerId: B, at} | peer-verification-failed {peerId: B, reason}
//! ```

use super::*;

impl Session {
    pub(super) async fn on_verify_peer<S: Sink<Message> + Unpin>(&mut self, socket: &mut S, target: &PeerId) {
        let Some(a) = &self.admitted else {
            return send_error(socket, code::UNAUTHENTICATED, "verify-peer is for admitted peers").await;
        };
        if *target == a.peer_id {
            return send_error(socket, code::BAD_MESSAGE, "a peer cannot ask itself to re-verify").await;
        }
        if !self.gw.rooms.request_reverify(&a.room, target, Some(a.peer_id.clone())) {
            send_error(socket, code::NO_SUCH_PEER, "no such peer in this room (it may have left)").await;
        }
    }

    /// Sends this (admitted) peer a fresh challenge to answer with its key, asked by
    /// `requester` (`None`: a host page or the room's schedule). `required`: the room
    /// demands it, and failing it ejects the peer.
    pub(super) async fn start_reverify<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        requester: Option<PeerId>,
        required: bool,
    ) {
        let Some(a) = self.admitted.as_mut() else { return };
        if let Some(open) = a.confirming.as_mut() {
            // One challenge answers every request made while it is open.
            open.askers.push(requester);
            open.required |= required;
            return;
        }
        let (room, vouched, identity, admitted_with) =
            (a.room.clone(), a.vouched.clone(), a.identity.clone(), a.method);
        let purpose = Purpose::Reverify { room, identity: identity.clone(), admitted_with };
        let asks =
            Asks { vouched, address: identity.eth_address().copied(), webauthn: admitted_with == Method::Webauthn };
        let issued = Admission::new(&self.gw).issue(purpose, asks).await;
        let settings = &self.gw.settings;
        let lifetime = issued.as_ref().map_or(settings.freshness_past, |i| i.lifetime(settings));
        let deadline = tokio::time::Instant::now() + lifetime;
        a.confirming = Some(Confirming { askers: vec![requester], deadline, required });
        match issued {
            Ok(issued) => {
                send(socket, &ServerMessage::Challenge(issued.offer())).await;
                self.slot.put(issued);
            }
            // Whoever asked hears of the failure when the confirmation times out.
            Err(e) => tracing::warn!(error = %e, "a confirmation challenge could not be issued"),
        }
    }

    /// Checks the answer to a re-verification challenge and tells whoever asked.
    pub(super) async fn finish_reverify<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        method: &str,
        payload: &Value,
        proof: Map<String, Value>,
    ) {
        let Some(mut closed) = self.close_reverify() else { return };
        let answer = Answer { method, payload, proof };
        let caller = self.caller(None);
        let outcome = Admission::new(&self.gw).redeem(&mut self.slot, answer, &caller).await;
        // An answer by a method this server does not take leaves nothing to answer.
        self.slot.clear();
        let peer_id = &closed.peer_id;
        let (frame, event, reason): (Arc<str>, _, _) = match outcome {
            Ok(admitted) => {
                if let Some(a) = self.admitted.as_mut() {
                    a.proved_at = tokio::time::Instant::now();
                }
                let at = crate::store::now_text();
                self.gw.rooms.mark_verified(&closed.room, peer_id, &at).await;
                let identity = closed.identity.did();
                let method = admitted.method.as_str();
                let frame = ServerMessage::PeerVerified { peer_id, identity, method, at: &at };
                closed.required = false;
                (frame.to_text().into(), "reverified", None)
            }
            Err(refused) => {
                let frame = ServerMessage::PeerVerificationFailed { peer_id, reason: "failed" };
                (frame.to_text().into(), "reverify-failed", Some(refused.reason))
            }
        };
        self.tell_outcome(socket, closed, frame, event, reason).await;
    }

    /// Ends the confirmation under way, if any, returning who asked and about whom.
    fn close_reverify(&mut self) -> Option<Closed> {
        let a = self.admitted.as_mut()?;
        let open = a.confirming.take()?;
        Some(Closed {
            requesters: open.askers,
            required: open.required,
            room: a.room.clone(),
            peer_id: a.peer_id.clone(),
            identity: a.identity.clone(),
            method: a.method,
        })
    }

    /// Audits the outcome, sends `frame` to the peer and to everyone who asked, and
    /// ejects the peer if the room required the confirmation and it failed.
    async fn tell_outcome<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        closed: Closed,
        frame: Arc<str>,
        event: &'static str,
        reason: Option<String>,
    ) {
        let Closed { requesters, required, room, peer_id, identity, method } = closed;
        self.audit(&room, event, Some(identity.did().to_owned()), Some(method), reason).await;
        let _ = socket.send(Message::Text(frame.as_ref().into())).await;
        for requester in requesters.into_iter().flatten() {
            self.gw.rooms.send_to(&room, &requester, frame.clone());
        }
        if required {
            let message =
                "this room requires confirming your identity every so often, and it was not confirmed; join again";
            self.gw.rooms.kick_peer(&room, &peer_id, code::NOT_CONFIRMED, message);
        }
    }

    /// Nobody answered the re-verification challenge in time: whoever asked is told,
    /// and the challenge is withdrawn.
    pub(super) async fn reverify_timed_out<S: Sink<Message> + Unpin>(&mut self, socket: &mut S) {
        let Some(closed) = self.close_reverify() else { return };
        self.slot.clear();
        let frame =
            ServerMessage::PeerVerificationFailed { peer_id: &closed.peer_id, reason: "timeout" }.to_text().into();
        let reason = Some("no answer within the challenge lifetime".to_owned());
        self.tell_outcome(socket, closed, frame, "reverify-failed", reason).await;
    }

    /// Records in the room's audit log what a peer saw wrong with another's media
    /// or proof. The reported identity is the one the server admitted.
    pub(super) async fn on_report<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        target: &PeerId,
        problem: PeerProblem,
    ) {
        let Some(a) = &self.admitted else {
            return send_error(socket, code::UNAUTHENTICATED, "report is for admitted peers").await;
        };
        let (room, reporter) = (a.room.clone(), a.identity.did().to_owned());
        let Some(reported) = self.gw.rooms.peer_identity(&room, target) else {
            return send_error(socket, code::NO_SUCH_PEER, "no such peer in this room (it may have left)").await;
        };
        let reason = format!("{} (reported by {reporter})", problem.as_str());
        self.audit(&room, "peer-reported", Some(reported), None, Some(reason)).await;
    }
}

/// A confirmation that just ended.
struct Closed {
    /// Who asked (`None`: a host page or the room's own schedule).
    requesters: Vec<Option<PeerId>>,
    /// Whether the room required it (failing it ejects the peer).
    required: bool,
    room: RoomId,
    peer_id: PeerId,
    identity: crate::identity::Identity,
    method: Method,
}
