//! Admission over the socket: a `request` gets a challenge from the proof pipeline
//! ([`crate::admission`]), its `auth` is redeemed there, and the outcome is acted
//! on here: the peer joins (or creates) the room, is handed a one-time ticket, or
//! is told what the pipeline lets it know.
//!
//! ```text
//!  request {roomId | create, fingerprint?, mediaKey?, address?, webauthn?, ticket?}
//!    └─▶ admission.issue ─▶ challenge {payload, methods, ssh, siwe?, webauthn?}
//!  auth {method, payload, …proof}
//!    └─▶ admission.redeem ─▶ welcome + peer-joined │ ticket │ error (not-admitted, bad-proof, …)
//! ```

use super::*;

impl Session {
    pub(super) async fn on_request<S: Sink<Message> + Unpin>(&mut self, socket: &mut S, request: Request) {
        let Request { room_id, create, fingerprint, media_key, name, address, webauthn, ticket } = request;
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
        if let Some(Err(message)) = media_key.as_deref().map(check_media_key) {
            return send_error(socket, code::BAD_MESSAGE, message).await;
        }
        let address = match address.as_deref().map(EthAddress::parse) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                let message = format!("address: {e}");
                return send_error(socket, code::BAD_MESSAGE, &message).await;
            }
        };
        let (room, name) = match (room_id, create) {
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
                (RoomId::generate(), name)
            }
            (Some(room), false) => match self.gw.rooms.occupancy(&room, self.gw.settings.max_peers_per_room).await {
                Err(e) => {
                    tracing::error!(error = %e, "room lookup failed");
                    return send_error(socket, code::INTERNAL, "the server could not look up the room; try again")
                        .await;
                }
                Ok(None) => return send_error(socket, code::ROOM_NOT_FOUND, "no such room; check the link").await,
                // A ticket for a full room would only be refused in the browser.
                Ok(Some((n, max))) if n >= max => {
                    let message = format!("the room is full ({n} peers)");
                    return send_error(socket, code::ROOM_FULL, &message).await;
                }
                Ok(Some(_)) => (room, String::new()),
            },
        };
        let purpose = Purpose::Join { room: room.clone(), create, ticket };
        let asks = Asks { vouched: Vouched { fingerprint, media_key }, address, webauthn };
        let issued = match Admission::new(&self.gw).issue(purpose, asks).await {
            Ok(issued) => issued,
            Err(e) => return send_error(socket, code::INTERNAL, e.0).await,
        };
        send(socket, &ServerMessage::Challenge(issued.offer())).await;
        let settings = &self.gw.settings;
        let lifetime =
            if issued.by_hand() { settings.auth_timeout.max(settings.manual_freshness) } else { settings.auth_timeout };
        self.deadline = self.connected_at + lifetime;
        self.slot.put(issued);
        self.requested = Some(Requested { room, name });
    }

    pub(super) async fn on_auth<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        method: &str,
        payload: &Value,
        proof: Map<String, Value>,
    ) {
        if self.admitted.is_some() {
            if self.admitted.as_ref().is_some_and(|a| a.confirming.is_some()) {
                return self.finish_reverify(socket, method, payload, proof).await;
            }
            return send_error(socket, code::ALREADY_ADMITTED, "this connection is already admitted").await;
        }
        let Some(requested) = &self.requested else {
            return send_error(socket, code::NO_CHALLENGE, "send a request first; auth answers its challenge").await;
        };
        let name = requested.name.clone();
        let caller = self.caller(Some(requested.room.clone()));
        let answer = Answer { method, payload, proof };
        let admitted = match Admission::new(&self.gw).redeem(&mut self.slot, answer, &caller).await {
            Ok(admitted) => admitted,
            Err(refused) => return send_refusal(socket, &refused.tell).await,
        };
        let Purpose::Join { room, create, ticket } = admitted.purpose.clone() else {
            return send_error(socket, code::NOT_ADMITTED, "not admitted").await;
        };
        if ticket {
            return self.issue_ticket(socket, &room, &admitted).await;
        }
        if create {
            let identity = &admitted.identity;
            let actor = crate::whitelist::Actor::owner(identity.did(), "socket", self.remote.as_deref());
            let per_hour = Some(self.gw.settings.max_rooms_per_identity_per_hour);
            match self.gw.whitelist().create_room(&room, &name, identity, actor, per_hour).await {
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
        self.admit(socket, room, create, admitted).await;
    }

    /// Who this socket is, for the pipeline's budgets and audit rows.
    pub(super) fn caller(&self, room: Option<RoomId>) -> Caller {
        Caller { client: self.client, remote: self.remote.clone(), room }
    }

    /// Seats an admitted peer in its room, tells it who is there, and tells them.
    async fn admit<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        room: RoomId,
        created: bool,
        admitted: Admitted,
    ) {
        let Admitted { identity, method, label, owner, detail, forwarded, vouched, mut changes, proved_at, .. } =
            admitted;
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
            vouched: vouched.clone(),
            proof: forwarded,
        };
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (kick_tx, kick) = watch::channel(None);
        let handle = PeerHandle { info, tx, kick: Arc::new(kick_tx) };
        let max_peers = self.gw.rooms.max_peers(&room).unwrap_or(self.gw.settings.max_peers_per_room);
        let joined = loop {
            let refusal = match self.gw.rooms.join(&room, handle.clone(), max_peers, changes).await {
                Ok(joined) => break joined,
                // A removal landed while the signature was checked: is this key still listed?
                Err(crate::rooms::JoinError::ListChanged) => match self.gw.rooms.access(&room, identity.did()).await {
                    Ok(Some(access)) if access.allowed.is_some() || created => {
                        changes = access.changes;
                        continue;
                    }
                    Ok(_) => ("removed from the whitelist while being admitted".to_owned(), code::NOT_ADMITTED),
                    Err(e) => {
                        tracing::error!(error = %e, "whitelist lookup failed");
                        ("whitelist lookup failed".to_owned(), code::INTERNAL)
                    }
                },
                Err(e @ crate::rooms::JoinError::Full(_)) => (e.to_string(), code::ROOM_FULL),
                Err(crate::rooms::JoinError::Store(e)) => {
                    tracing::error!(error = %e, "taking a seat failed");
                    ("the room's seats could not be counted".to_owned(), code::INTERNAL)
                }
            };
            let caller = self.caller(None);
            let did = Some(identity.did().to_owned());
            Admission::new(&self.gw).record_refusal(&room, did, method, &refusal.0, &caller).await;
            let message = if refusal.1 == code::ROOM_FULL { refusal.0.as_str() } else { "not admitted" };
            return send_error(socket, refusal.1, message).await;
        };
        let ice_servers =
            crate::signal::ice::ice_servers(&self.gw.settings, &key_fingerprint, std::time::SystemTime::now());
        // A resume keeps the time the key was last proved, for the room's schedule.
        let now = tokio::time::Instant::now();
        let proved_at = proved_at.and_then(|t| t.elapsed().ok()).and_then(|ago| now.checked_sub(ago)).unwrap_or(now);
        self.gw.stats.admissions.fetch_add(1, Ordering::Relaxed);
        self.audit(&room, "admitted", Some(identity.did().to_owned()), Some(method), detail).await;
        self.unadmitted = None;
        self.admitted = Some(Seat {
            room,
            peer_id,
            identity,
            method,
            vouched,
            rx,
            kick,
            confirming: None,
            proved_at,
            confirm_every: joined.confirm_every,
            resume_due: None,
            sfu: None,
        });
        let resume = self.resume_offer();
        let Some(seat) = &self.admitted else { return };
        let welcome = ServerMessage::Welcome {
            peer_id: &seat.peer_id,
            room_id: &seat.room,
            identity: seat.identity.did(),
            key_fingerprint,
            owner,
            created,
            peers: joined.others,
            media: if joined.sfu { "sfu" } else { "mesh" },
            ice_servers,
            resume: resume
                .as_ref()
                .map(|(token, expires_in)| crate::protocol::ResumeOffer { token, expires_in: *expires_in }),
        };
        send(socket, &welcome).await;
    }

    /// Answers a proven `request {ticket: true}` with a one-time ticket.
    async fn issue_ticket<S: Sink<Message> + Unpin>(&mut self, socket: &mut S, room: &RoomId, admitted: &Admitted) {
        let ttl = self.gw.settings.ticket_ttl;
        let identity = &admitted.identity;
        let ticket = match crate::tickets::issue(&self.gw.store, room, identity, ttl).await {
            Ok(Some(ticket)) => ticket,
            Ok(None) => {
                let message = "this key holds too many unused tickets; use one, or wait a minute for them to expire";
                return send_error(socket, code::RATE_LIMITED, message).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "storing a ticket failed");
                return send_error(socket, code::INTERNAL, "the server could not issue a ticket; try again").await;
            }
        };
        let (did, method) = (Some(identity.did().to_owned()), Some(admitted.method));
        self.audit(room, "ticket-issued", did, method, admitted.detail.clone()).await;
        let frame = ServerMessage::Ticket {
            ticket: &ticket,
            room_id: room,
            identity: identity.did(),
            expires_in: ttl.as_secs(),
        };
        send(socket, &frame).await;
    }
}

/// Tells a client what the pipeline lets it know of a refusal.
pub(super) async fn send_refusal<S: Sink<Message> + Unpin>(socket: &mut S, tell: &Tell) {
    match tell {
        // The socket hides even that the challenge was spent: only "not admitted".
        Tell::NotAdmitted | Tell::StartAgain => send_error(socket, code::NOT_ADMITTED, "not admitted").await,
        Tell::BadProof(message) => send_error(socket, code::BAD_PROOF, message).await,
        Tell::PrivateKey => {
            let message = "the publicKey JWK contains private key material (\"d\"); send only the public JWK — \
                           your private key must never leave your device";
            send_error(socket, code::PRIVATE_KEY, message).await
        }
        Tell::Unsupported(message) => send_error(socket, code::UNSUPPORTED_METHOD, message).await,
        Tell::Restricted(message) => send_error(socket, code::RESTRICTED, message).await,
        Tell::Internal(message) => send_error(socket, code::INTERNAL, message).await,
    }
}
