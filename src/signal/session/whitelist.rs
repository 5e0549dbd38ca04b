//! Owners changing a room's whitelist over the socket: keys in any accepted format
//! (whole authorized_keys / allowed_signers files too) added, identities removed;
//! a removal ejects the identity's live sessions at once.

use super::*;

impl Session {
    pub(super) async fn on_whitelist<S: Sink<Message> + Unpin>(
        &mut self,
        socket: &mut S,
        add: Vec<WhitelistAdd>,
        remove: Vec<String>,
    ) {
        let Some(a) = &self.admitted else {
            return send_error(socket, code::UNAUTHENTICATED, "whitelist is for admitted owners; authenticate first")
                .await;
        };
        let (room, by) = (a.room.clone(), a.identity.did().to_owned());
        // Who owns the room now, not at admission: a co-owner removed mid-call must
        // lose its powers at once.
        let owners = match self.gw.store.room(&room).await {
            Ok(record) => record.map(|r| r.owners).unwrap_or_default(),
            Err(e) => {
                tracing::error!(error = %e, "owner lookup failed");
                return send_error(socket, code::INTERNAL, "the server could not check the room's owners; try again")
                    .await;
            }
        };
        if !owners.contains(&by) {
            return send_error(socket, code::NOT_OWNER, "only the room's owners can change its whitelist").await;
        }
        let (mut added, mut removed, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for (entry, item) in add.into_iter().enumerate() {
            let (text, label) = match item {
                WhitelistAdd::Key(k) => (k, String::new()),
                WhitelistAdd::Labelled { key, label } => (key, label),
            };
            let keys = parse_key_list(&text);
            if keys.is_empty() {
                errors.push(EntryError { entry, line: 1, error: "no key found".into() });
            }
            for (line, parsed) in keys {
                let key = match parsed {
                    Ok(k) => k,
                    Err(e) => {
                        errors.push(EntryError { entry, line, error: e.to_string() });
                        continue;
                    }
                };
                let label = if label.is_empty() { key.comment.clone().unwrap_or_default() } else { label.clone() };
                match self.gw.store.allow_key(&room, &key.identity, &label, &by, key.namespaces.as_deref()).await {
                    Ok(_) => {
                        self.audit(
                            &room,
                            "whitelist-add",
                            Some(key.identity.did().to_owned()),
                            None,
                            Some(format!("by {by}")),
                        )
                        .await;
                        added.push(AddedEntry {
                            identity: key.identity.did().to_owned(),
                            key_fingerprint: key.identity.fingerprint(),
                            label,
                        });
                    }
                    Err(e) => errors.push(EntryError { entry, line, error: e.to_string() }),
                }
            }
        }
        for (entry, text) in remove.into_iter().enumerate() {
            let identity = match Identity::parse(&text) {
                Ok(i) => i,
                Err(e) => {
                    errors.push(EntryError { entry, line: 1, error: e.to_string() });
                    continue;
                }
            };
            if owners.iter().any(|o| o == identity.did()) {
                errors.push(EntryError {
                    entry,
                    line: 1,
                    error: "an owner cannot be removed from the whitelist".into(),
                });
                continue;
            }
            match self.gw.store.deny(&room, &identity).await {
                Ok(true) => {
                    self.gw.rooms.revoke(&room, identity.did());
                    self.audit(
                        &room,
                        "whitelist-remove",
                        Some(identity.did().to_owned()),
                        None,
                        Some(format!("by {by}")),
                    )
                    .await;
                    removed.push(identity.did().to_owned());
                }
                Ok(false) => errors.push(EntryError { entry, line: 1, error: "not on the whitelist".into() }),
                Err(e) => errors.push(EntryError { entry, line: 1, error: e.to_string() }),
            }
        }
        if !added.is_empty() {
            self.gw.rooms.invalidate(&room);
        }
        send(socket, &ServerMessage::WhitelistUpdated { added, removed, errors }).await;
    }
}
