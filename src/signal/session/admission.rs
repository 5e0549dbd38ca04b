//! Admission: a `request` gets a challenge; its `auth` is checked in DESIGN's order
//! (nonce and freshness, then the whitelist, and only then the signature), and the
//! peer is admitted, refused ("not admitted", the reason to the audit log), or
//! handed a one-time ticket.
//!
//! ```text
//!  request {roomId | create, fingerprint?, address?, webauthn?, ticket?}
//!    └─▶ challenge {payload, methods, ssh, siwe?, webauthn?}
//!  auth {method, payload, …proof}
//!    └─▶ slot.redeem (nonce, room, freshness) ─▶ claim (parse) ─▶ whitelist ─▶ signature
//!          └─▶ welcome + peer-joined │ ticket │ error not-admitted
//! ```

use super::*;

impl Session {
    pub(super) async fn on_request<S: Sink<Message> + Unpin>(&mut self, socket: &mut S, request: Request) {
        let Request { room_id, create, fingerprint, name, address, webauthn, ticket } = request;
        if ticket && create {
            return send_error(socket, code::BAD_MESSAGE, "a ticket is for joining an existing room").await;
        }
        if self.admitted.is_some() {
            return send_error(
                socket,
                code::ALREADY_ADMITTED,
                "this connection is already admitted; open another to join another room",
            )
            .await;
        }
        if let Some(f) = &fingerprint {
            if !valid_fingerprint(f) {
                return send_error(
                    socket,
                    code::BAD_MESSAGE,
                    "fingerprint must look like \"sha-256 AB:CD:…\" (letters, digits, ':', '-', spaces; at most 200)",
                )
                .await;
            }
        }
        let address = match address.as_deref().map(EthAddress::parse) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                let message = format!("address: {e}");
                return send_error(socket, code::BAD_MESSAGE, &message).await;
            }
        };
        let requested = match (room_id, create) {
            (Some(_), true) => {
                return send_error(socket, code::BAD_MESSAGE, "send either roomId or create:true, not both").await
            }
            (None, false) => {
                return send_error(
                    socket,
                    code::BAD_MESSAGE,
                    "request needs a roomId (or create:true to create a room)",
                )
                .await
            }
            (None, true) => {
                let name = name.unwrap_or_default();
                if name.chars().count() > 100 {
                    return send_error(socket, code::BAD_MESSAGE, "a room name is at most 100 characters").await;
                }
                Requested { room: RoomId::generate(), create: true, name, ticket: false }
            }
            (Some(room), false) => match self.gw.rooms.occupancy(&room).await {
                Err(e) => {
                    tracing::error!(error = %e, "room lookup failed");
                    return send_error(socket, code::INTERNAL, "the server could not look up the room; try again")
                        .await;
                }
                Ok(None) => return send_error(socket, code::ROOM_NOT_FOUND, "no such room; check the link").await,
                Ok(Some(n))
                    if !ticket
                        && n >= self.gw.rooms.max_peers(&room).unwrap_or(self.gw.settings.max_peers_per_room) =>
                {
                    let message = format!("the room is full ({n} peers)");
                    return send_error(socket, code::ROOM_FULL, &message).await;
                }
                Ok(Some(_)) => Requested { room, create: false, name: String::new(), ticket },
            },
        };
        let settings = &self.gw.settings;
        let mut challenge = IssuedChallenge::issue(requested.room.clone(), &self.gw.origin, fingerprint, Utc::now());
        if let Some(address) = address {
            challenge = challenge.with_siwe(&self.gw.origin, address, settings.eth_chain_id, settings.freshness_past);
        }
        if webauthn && !requested.create && self.gw.verifiers.get(Method::Webauthn).is_some() {
            match self.webauthn_ceremony(&requested.room, &challenge.signed_bytes).await {
                Ok(ceremony) => challenge.webauthn = Some(Arc::new(ceremony)),
                Err(message) => return send_error(socket, code::INTERNAL, &message).await,
            }
        }
        let payload: Box<RawValue> = match RawValue::from_string(challenge.signed_bytes.clone()) {
            Ok(p) => p,
            Err(_) => return send_error(socket, code::INTERNAL, "could not build a challenge").await,
        };
        let verifiers = &self.gw.verifiers;
        let methods = verifiers.methods().into_iter().map(Method::as_str).collect();
        let ssh = verifiers.get(Method::Ssh).map(|_| SshHint::for_text(&challenge.signed_bytes));
        let siwe = challenge.siwe.as_deref();
        let webauthn = challenge.webauthn.as_ref().map(|w| &w.options);
        send(socket, &ServerMessage::Challenge { payload: &payload, methods, ssh, siwe, webauthn }).await;
        let lifetime = if verifiers.any_by_hand() {
            settings.auth_timeout.max(settings.manual_freshness)
        } else {
            settings.auth_timeout
        };
        self.deadline = self.connected_at + lifetime;
        self.slot.put(challenge);
        self.requested = Some(requested);
    }

    pub(super) async fn on_auth<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        method_name: &str,
        payload: &Value,
        proof: Map<String, Value>,
    ) {
        if self.admitted.is_some() {
            if self.admitted.as_ref().is_some_and(|a| a.confirming.is_some()) {
                return self.finish_reverify(socket, method_name, payload, proof).await;
            }
            return send_error(socket, code::ALREADY_ADMITTED, "this connection is already admitted").await;
        }
        let Some(requested) = &self.requested else {
            return send_error(socket, code::NO_CHALLENGE, "send a request first; auth answers its challenge").await;
        };
        let room = requested.room.clone();
        let verifier = serde_json::from_value::<Method>(Value::String(method_name.to_owned()))
            .ok()
            .and_then(|m| self.gw.verifiers.get(m));
        let Some(verifier) = verifier else {
            let accepted: Vec<&str> = self.gw.verifiers.methods().into_iter().map(Method::as_str).collect();
            let message = format!("method '{method_name}' is not accepted here; use one of: {}", accepted.join(", "));
            return send_error(socket, code::UNSUPPORTED_METHOD, &message).await;
        };
        let method = verifier.method();
        let settings = &self.gw.settings;
        let window = Freshness {
            past: if verifier.by_hand() {
                settings.manual_freshness
            } else {
                self.gw.rooms.freshness(&room).unwrap_or(settings.freshness_past)
            },
            future: settings.freshness_future,
        };
        let issued = match self.slot.redeem(payload, Utc::now(), window) {
            Ok(c) => c,
            Err(refusal) => return self.refuse(socket, &room, None, method, refusal.reason().to_owned()).await,
        };
        let proof = Value::Object(proof);
        let claim = match verifier.claim_for(&proof, &issued) {
            Ok(c) => c,
            Err(VerifyError::PrivateKey) => {
                self.refuse_quietly(&room, None, method, "client sent a private key".into()).await;
                return send_error(
                    socket,
                    code::PRIVATE_KEY,
                    "the publicKey JWK contains private key material (\"d\"); send only the public JWK — your private key must never leave your device",
                )
                .await;
            }
            Err(e) => return self.refuse_with(socket, &room, None, method, e).await,
        };
        let identity = claim.identity.clone();
        let did = identity.did().to_owned();
        let signed = match verifier.signed_text(&issued) {
            Ok(signed) => signed,
            Err(e) => return self.refuse_with(socket, &room, Some(did), method, e).await,
        };
        // The whitelist is consulted before the signature: an unknown key costs no crypto.
        let (label, owner, require_uv, piv_requirement) = if requested.create {
            let creators = &self.gw.settings.room_creators;
            if !creators.is_empty() && !creators.contains(&did) {
                return self.refuse(socket, &room, Some(did), method, "not allowed to create rooms".into()).await;
            }
            ("owner".to_owned(), true, false, None)
        } else {
            let access = match self.gw.rooms.access(&room, &did).await {
                Ok(Some(access)) => access,
                Ok(None) => return self.refuse(socket, &room, Some(did), method, "room no longer exists".into()).await,
                Err(e) => {
                    tracing::error!(error = %e, "whitelist lookup failed");
                    return send_error(socket, code::INTERNAL, "the server could not check the whitelist; try again")
                        .await;
                }
            };
            let Some(allowed) = access.allowed else {
                return self.refuse(socket, &room, Some(did), method, "unknown key".into()).await;
            };
            if method == Method::Ssh
                && allowed.ssh_namespaces.as_ref().is_some_and(|n| !n.iter().any(|n| n == SSH_NAMESPACE))
            {
                let reason = format!("allowed_signers namespaces of this key exclude '{SSH_NAMESPACE}'");
                return self.refuse(socket, &room, Some(did), method, reason).await;
            }
            (allowed.label, access.owner, access.require_user_verification, allowed.piv)
        };
        let evidence = match claim.check(signed) {
            Ok(evidence) => evidence,
            Err(e) => return self.refuse_with(socket, &room, Some(did), method, e).await,
        };
        if require_uv && evidence.user_verified == Some(false) {
            let reason = "the room requires user verification (PIN or biometric); the key only proved presence";
            return self.refuse(socket, &room, Some(did), method, reason.into()).await;
        }
        if let Some(why) = piv_requirement.and_then(|r| r.unmet(evidence.attestation.as_ref())) {
            return self.refuse(socket, &room, Some(did), method, why).await;
        }
        if let Some(counter) = evidence.counter {
            let credential = evidence.credential_id.as_deref().map(crate::passkeys::credential_id_text);
            match self.gw.store.advance_counters(&did, counter, credential.as_deref()).await {
                Ok(true) => {}
                Ok(false) => {
                    let reason = "the sign counter went backwards: the authenticator may be cloned";
                    return self.refuse(socket, &room, Some(did), method, reason.into()).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "counter update failed");
                    return send_error(socket, code::INTERNAL, "the server could not record the sign counter").await;
                }
            }
        }
        let detail = evidence.attestation.as_ref().map(ToString::to_string);
        if requested.ticket {
            return self.issue_ticket(socket, &room, &identity, method, detail).await;
        }
        let (create, name) = (requested.create, requested.name.clone());
        if create {
            let actor = crate::whitelist::Actor::owner(identity.did(), "socket", self.remote.as_deref());
            let per_hour = Some(self.gw.settings.max_rooms_per_identity_per_hour);
            match self.gw.whitelist().create_room(&room, &name, &identity, actor, per_hour).await {
                Ok(()) => {}
                Err(e @ crate::whitelist::ChangeError::TooManyRooms(_)) => {
                    return send_error(socket, code::RATE_LIMITED, &e.to_string()).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "room creation failed");
                    return send_error(socket, code::INTERNAL, "the room could not be created; try again").await;
                }
            }
        }
        let forwarded = forwarded_proof(method, verifier.forwarded_fields(), &issued, &proof);
        self.admit(socket, room, identity, label, owner, create, method, issued, forwarded, detail).await;
    }

    /// Refuses with a verifier's error: a problem with the proof's form is explained
    /// to the client (code `bad-proof`); anything else is only "not admitted".
    pub(super) async fn refuse_with<S: Sink<Message> + Unpin>(
        &self,
        socket: &mut S,
        room: &RoomId,
        identity: Option<String>,
        method: Method,
        error: VerifyError,
    ) {
        match error.client_message() {
            Some(message) => {
                self.refuse_quietly(room, identity, method, error.to_string()).await;
                send_error(socket, code::BAD_PROOF, &message).await;
            }
            None => self.refuse(socket, room, identity, method, error.to_string()).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn admit<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        room: RoomId,
        identity: Identity,
        label: String,
        owner: bool,
        created: bool,
        method: Method,
        issued: IssuedChallenge,
        proof: Option<Box<RawValue>>,
        detail: Option<String>,
    ) {
        let peer_id = PeerId::generate();
        let key_fingerprint = identity.fingerprint();
        let info = PeerInfo {
            peer_id: peer_id.clone(),
            identity: identity.did().to_owned(),
            key_fingerprint: key_fingerprint.clone(),
            label,
            method: method.as_str(),
            admitted_at: crate::store::now_text(),
            last_verified: None,
            fingerprint: issued.fingerprint.clone(),
            proof,
        };
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (kick_tx, kick) = watch::channel(None);
        let handle = PeerHandle { info, tx, kick: Arc::new(kick_tx) };
        let max_peers = self.gw.rooms.max_peers(&room).unwrap_or(self.gw.settings.max_peers_per_room);
        let joined = match self.gw.rooms.join(&room, handle, max_peers) {
            Ok(joined) => joined,
            Err(e) => {
                self.refuse_quietly(&room, Some(identity.did().to_owned()), method, e.to_string()).await;
                return send_error(socket, code::ROOM_FULL, &e.to_string()).await;
            }
        };
        let ice_servers =
            crate::signal::ice::ice_servers(&self.gw.settings, &key_fingerprint, std::time::SystemTime::now());
        let welcome = ServerMessage::Welcome {
            peer_id: &peer_id,
            room_id: &room,
            identity: identity.did(),
            key_fingerprint,
            owner,
            created,
            peers: joined.others,
            ice_servers,
        };
        send(socket, &welcome).await;
        self.unadmitted = None;
        self.gw.stats.admissions.fetch_add(1, Ordering::Relaxed);
        self.audit(&room, "admitted", Some(identity.did().to_owned()), Some(method), detail).await;
        let fingerprint = issued.fingerprint.clone();
        self.admitted = Some(Admitted {
            room,
            peer_id,
            identity,
            method,
            fingerprint,
            rx,
            kick,
            confirming: None,
            proved_at: tokio::time::Instant::now(),
            confirm_every: joined.confirm_every,
        });
    }

    /// Tells the client only "not admitted"; the reason goes to the audit log.
    pub(super) async fn refuse<S: Sink<Message> + Unpin>(
        &self,
        socket: &mut S,
        room: &RoomId,
        identity: Option<String>,
        method: Method,
        reason: String,
    ) {
        self.refuse_quietly(room, identity, method, reason).await;
        send_error(socket, code::NOT_ADMITTED, "not admitted").await;
    }

    /// Counts a refusal and logs it, within the room's budget of rows for this
    /// client address: past it, refusals are counted into the next row (or the
    /// upkeep's summary row) instead of one row each.
    pub(super) async fn refuse_quietly(&self, room: &RoomId, identity: Option<String>, method: Method, reason: String) {
        self.gw.stats.refusals.fetch_add(1, Ordering::Relaxed);
        let held_back = match self.client {
            Some(client) => match self.gw.refusal_rows.take(room, client) {
                Some(n) => n,
                None => return,
            },
            None => 0,
        };
        let reason = match held_back {
            0 => reason,
            n => format!("{reason} (and {n} earlier refusals from this address, counted but not logged one by one)"),
        };
        self.audit(room, "refused", identity, Some(method), Some(reason)).await;
    }

    /// The WebAuthn half of a challenge for `room`: the credentials registered by
    /// its whitelisted identities, with their current counters.
    pub(super) async fn webauthn_ceremony(
        &self,
        room: &RoomId,
        signed: &str,
    ) -> Result<crate::passkeys::WebauthnChallenge, String> {
        let stored = self.gw.store.room_credentials(room).await.map_err(|e| {
            tracing::error!(error = %e, "credential lookup failed");
            "the server could not look up passkeys; try again".to_owned()
        })?;
        let credentials = stored
            .into_iter()
            .filter_map(|c| match crate::passkeys::load_credential(&c) {
                Ok(loaded) => Some(loaded),
                Err(e) => {
                    tracing::warn!(credential = %c.id, error = %e, "a stored credential was skipped");
                    None
                }
            })
            .collect();
        let require_uv = self.gw.rooms.requires_user_verification(room);
        self.gw.passkeys.challenge(signed, credentials, require_uv).map_err(|e| e.to_string())
    }

    /// Answers a proven `request {ticket: true}` with a one-time ticket.
    pub(super) async fn issue_ticket<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        room: &RoomId,
        identity: &Identity,
        method: Method,
        attestation: Option<String>,
    ) {
        let ttl = self.gw.settings.ticket_ttl;
        let Some(ticket) = self.gw.tickets.issue(room, identity, ttl) else {
            return send_error(socket, code::SERVER_FULL, "too many tickets outstanding; try again shortly").await;
        };
        self.audit(room, "ticket-issued", Some(identity.did().to_owned()), Some(method), attestation).await;
        let frame = ServerMessage::Ticket {
            ticket: &ticket,
            room_id: room,
            identity: identity.did(),
            expires_in: ttl.as_secs(),
        };
        send(socket, &frame).await;
    }
}

/// The admission proof as other peers receive it, for methods they can check
/// themselves: the exact signed text plus the method's proof fields.
fn forwarded_proof(method: Method, fields: &[&str], issued: &IssuedChallenge, proof: &Value) -> Option<Box<RawValue>> {
    if fields.is_empty() {
        return None;
    }
    let mut out = Map::new();
    out.insert("method".into(), method.as_str().into());
    out.insert("signed".into(), issued.signed_bytes.clone().into());
    for f in fields {
        if let Some(v) = proof.get(*f) {
            out.insert((*f).into(), v.clone());
        }
    }
    serde_json::value::to_raw_value(&out).ok()
}
