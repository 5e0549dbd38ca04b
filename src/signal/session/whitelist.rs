//! Owners changing a room's whitelist over the socket: keys in any accepted format
//! (whole authorized_keys / allowed_signers files too) added, identities removed;
//! a removal ejects the identity's live sessions at once.

use super::*;
use crate::store::NewEntry;
use crate::whitelist::{clip_label, Actor, ChangeError};

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
        // Ownership is checked by the service against the owners *now*, inside each
        // change: a co-owner removed mid-call loses its powers at once.
        let actor = Actor::owner(&by, "socket", self.remote.as_deref());
        let service = self.gw.whitelist();
        let (mut added, mut removed, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        let mut entries = Vec::new();
        for (entry, item) in add.into_iter().enumerate() {
            let (text, label) = match item {
                WhitelistAdd::Key(k) => (k, String::new()),
                WhitelistAdd::Labelled { key, label } => (key, label),
            };
            let label = clip_label(&label);
            let keys = parse_key_list(&text);
            if keys.is_empty() {
                errors.push(EntryError { entry, line: 1, error: "no key found".into() });
            }
            for (line, parsed) in keys {
                match parsed {
                    Ok(key) => {
                        let new = NewEntry::from_line(key, &label, None);
                        added.push(AddedEntry {
                            identity: new.identity.clone(),
                            key_fingerprint: new.fingerprint.clone(),
                            label: clip_label(&new.label),
                        });
                        entries.push(new);
                    }
                    Err(e) => errors.push(EntryError { entry, line, error: e.to_string() }),
                }
            }
        }
        if !entries.is_empty() {
            if let Err(e) = service.add(&room, actor, &entries).await {
                return self.refuse_change(socket, e).await;
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
            match service.remove(&room, actor, &identity).await {
                Ok(()) => removed.push(identity.did().to_owned()),
                Err(e @ (ChangeError::OwnerEntry | ChangeError::NotListed)) => {
                    errors.push(EntryError { entry, line: 1, error: e.to_string() })
                }
                Err(e) => return self.refuse_change(socket, e).await,
            }
        }
        send(socket, &ServerMessage::WhitelistUpdated { added, removed, errors }).await;
    }

    /// Answers a change the service refused as a whole.
    async fn refuse_change<S: Sink<Message> + Unpin>(&self, socket: &mut S, error: ChangeError) {
        match error {
            ChangeError::NotOwner => {
                send_error(socket, code::NOT_OWNER, "only the room's owners can change its whitelist").await
            }
            ChangeError::NoRoom => send_error(socket, code::ROOM_NOT_FOUND, "the room no longer exists").await,
            ChangeError::Store(e) => {
                tracing::error!(error = %e, "whitelist change failed");
                send_error(socket, code::INTERNAL, "the server could not change the whitelist; try again").await
            }
            other => send_error(socket, code::BAD_MESSAGE, &other.to_string()).await,
        }
    }
}
