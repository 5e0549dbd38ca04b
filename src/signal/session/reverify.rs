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
        let (room, fingerprint, identity) = (a.room.clone(), a.fingerprint.clone(), a.identity.clone());
        let answering = answering_methods(a.method);
        let method = answering[0];
        let settings = &self.gw.settings;
        let by_hand = answering.iter().any(|m| self.gw.verifiers.get(*m).is_some_and(|v| v.by_hand()));
        let lifetime = if by_hand { settings.manual_freshness } else { settings.freshness_past };
        let deadline = tokio::time::Instant::now() + lifetime;
        a.confirming = Some(Confirming { askers: vec![requester], deadline, required });
        let mut challenge = IssuedChallenge::issue_reverify(room.clone(), &self.gw.origin, fingerprint, Utc::now());
        if let Some(address) = identity.eth_address() {
            challenge = challenge.with_siwe(&self.gw.origin, *address, settings.eth_chain_id, settings.freshness_past);
        }
        if method == Method::Webauthn {
            if let Ok(ceremony) = self.webauthn_ceremony(&room, &challenge.signed_bytes).await {
                challenge.webauthn = Some(Arc::new(ceremony));
            }
        }
        let Ok(payload) = RawValue::from_string(challenge.signed_bytes.clone()) else { return };
        let verifiers = &self.gw.verifiers;
        let ssh = verifiers.get(Method::Ssh).map(|_| SshHint::for_text(&challenge.signed_bytes));
        let siwe = challenge.siwe.as_deref();
        let webauthn = challenge.webauthn.as_ref().map(|w| &w.options);
        let methods = answering.iter().map(|m| m.as_str()).collect();
        send(socket, &ServerMessage::Challenge { payload: &payload, methods, ssh, siwe, webauthn }).await;
        self.slot.put(challenge);
    }

    /// Checks the answer to a re-verification challenge and tells whoever asked.
    pub(super) async fn finish_reverify<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        method_name: &str,
        payload: &Value,
        proof: Map<String, Value>,
    ) {
        let Some(mut closed) = self.close_reverify() else { return };
        let admitted_with = closed.method;
        let answering = answering_methods(admitted_with);
        let method = answering.iter().copied().find(|m| m.as_str() == method_name).unwrap_or(answering[0]);
        let window = Freshness {
            past: self.gw.settings.freshness_past.max(self.gw.settings.manual_freshness),
            future: self.gw.settings.freshness_future,
        };
        let outcome = (|| {
            if method_name != method.as_str() {
                return Err(format!("answered with {method_name}, admitted with {}", admitted_with.as_str()));
            }
            let issued = self.slot.redeem(payload, Utc::now(), window).map_err(|r| r.reason().to_owned())?;
            let verifier = self.gw.verifiers.get(method).ok_or("method no longer accepted")?;
            let claim = verifier.claim_for(&Value::Object(proof), &issued).map_err(|e| e.to_string())?;
            if claim.identity != closed.identity {
                return Err("another key answered".to_owned());
            }
            let signed = verifier.signed_text(&issued).map_err(|e| e.to_string())?;
            claim.check(signed).map_err(|e| e.to_string())
        })();
        // A confirmation is a signature like any other: its counter must move on.
        let outcome = match outcome {
            Ok(evidence) => match evidence.counter {
                None => Ok(()),
                Some(counter) => {
                    let credential = evidence.credential_id.as_deref().map(crate::passkeys::credential_id_text);
                    match self.gw.store.advance_counters(closed.identity.did(), counter, credential.as_deref()).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err("the sign counter went backwards: the authenticator may be cloned".to_owned()),
                        Err(e) => {
                            tracing::error!(error = %e, "counter update failed");
                            Err("the server could not record the sign counter".to_owned())
                        }
                    }
                }
            },
            Err(e) => Err(e),
        };
        let peer_id = &closed.peer_id;
        let (frame, event, reason): (Arc<str>, _, _) = match outcome {
            Ok(()) => {
                if let Some(a) = self.admitted.as_mut() {
                    a.proved_at = tokio::time::Instant::now();
                }
                let at = crate::store::now_text();
                self.gw.rooms.mark_verified(&closed.room, peer_id, &at);
                let identity = closed.identity.did();
                let frame = ServerMessage::PeerVerified { peer_id, identity, method: method.as_str(), at: &at };
                closed.required = false;
                (frame.to_text().into(), "reverified", None)
            }
            Err(why) => {
                let frame = ServerMessage::PeerVerificationFailed { peer_id, reason: "failed" };
                (frame.to_text().into(), "reverify-failed", Some(why))
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
        self.slot = ChallengeSlot::default();
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

/// The methods a re-verification may be answered with: the admission's own. A
/// ticket was obtained by `keygate join` with an SSH key or a PIV card, so its holder
/// answers with either (pasting what `keygate sign` prints); the identity must match.
fn answering_methods(admitted_with: Method) -> &'static [Method] {
    match admitted_with {
        Method::Ticket => &[Method::Ssh, Method::Piv],
        Method::Webcrypto => &[Method::Webcrypto],
        Method::Ssh => &[Method::Ssh],
        Method::Eth => &[Method::Eth],
        Method::Piv => &[Method::Piv],
        Method::Webauthn => &[Method::Webauthn],
    }
}
