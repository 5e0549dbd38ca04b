//! THE service for every change to who may enter a room: whitelist entries,
//! owners, settings, invites, new rooms, and ejecting a live peer. Every edge (the
//! socket, the host pages, an invite, the CLI) calls it and only translates.
//!
//! ```text
//!  socket `whitelist` ─┐
//!  host page forms ────┤   Whitelist::{add, remove, add_owner, remove_owner, settings,
//!  invite redemption ──┼─▶   create_room, create_invite, redeem_invite, kick}
//!  CLI `room …` ───────┘     one transaction: who may do it (the owners *now*),
//!                            the change, and its audit row (who, how, from where)
//!                                    │ commit
//!                                    ▼
//!               the change log: the only road to live rooms. The writer applies it
//!               at once (a removal ejects); every server on the database polls it
//! ```
//!
//! Never: write a change without its audit row, check ownership against anything
//! but the store inside the change's own transaction, or hold a lock across an
//! await.

use crate::identity::{Did, Identity};
use crate::ids::{PeerId, RoomId};
use crate::rooms::Rooms;
use crate::store::{ChangeAudit, NewEntry, RoomSettings, Store, StoreError};
use chrono::{SecondsFormat, Utc};

/// The longest label kept, in characters: a name for a key, shown to every peer.
pub const MAX_LABEL_CHARS: usize = 64;

/// A label as stored: trimmed, without control characters, at most
/// [`MAX_LABEL_CHARS`].
pub fn clip_label(text: &str) -> String {
    text.trim().chars().filter(|c| !c.is_control()).take(MAX_LABEL_CHARS).collect()
}

/// Keys one change may add with an audit row each; a larger import gets one row
/// per batch naming the count.
pub const AUDIT_EACH_UP_TO: usize = 100;

/// Entries per transaction of an import: each commit writes every index page the
/// batch touched, so larger batches import faster (measured on a million lines:
/// 50,000 → 100,000 took an import from ~70k to ~110k lines/s; 200,000 gained
/// little more), while one batch holds the write lock for under a second and
/// about 40 MB of entries.
pub const IMPORT_BATCH: usize = 100_000;

/// On whose authority a change is made.
#[derive(Clone, Copy, Debug)]
pub enum Authority<'a> {
    /// An identity that must own the room at the moment of the change.
    Owner(&'a Did),
    /// Whoever runs the CLI against the database: the server's operator.
    Operator,
}

/// Who asks for a change, by which road, from which address: what the audit row says.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'a> {
    pub authority: Authority<'a>,
    /// "socket", "host page", "invite", "cli".
    pub via: &'static str,
    pub remote: Option<&'a str>,
}

impl<'a> Actor<'a> {
    pub fn owner(identity: &'a Did, via: &'static str, remote: Option<&'a str>) -> Self {
        Actor { authority: Authority::Owner(identity), via, remote }
    }

    pub fn operator() -> Self {
        Actor { authority: Authority::Operator, via: "cli", remote: None }
    }

    /// The `added_by` of an entry this actor adds.
    fn name(&self) -> &'a str {
        match self.authority {
            Authority::Owner(identity) => identity.as_str(),
            Authority::Operator => "cli",
        }
    }

    fn reason(&self) -> String {
        format!("by {} ({})", self.name(), self.via)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no such room")]
    NoRoom,
    #[error("only the room's owners can do that")]
    NotOwner,
    #[error("an owner cannot be removed from the whitelist")]
    OwnerEntry,
    #[error("not on the whitelist")]
    NotListed,
    #[error("a room keeps at least one owner")]
    LastOwner,
    #[error("not an owner of this room")]
    NoSuchOwner,
    #[error("this invite is used up or expired")]
    InviteUsed,
    #[error("no such participant in this room")]
    NoSuchPeer,
    #[error("{0} rooms were created with this key in the last hour; try again later")]
    TooManyRooms(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The service; cheap to make, for a store and (in a server) its live rooms.
pub struct Whitelist<'a> {
    store: &'a Store,
    /// `None` in the CLI: a running server learns of its changes from the change log.
    rooms: Option<&'a Rooms>,
}

fn now_minus_hour() -> String {
    (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl<'a> Whitelist<'a> {
    pub fn new(store: &'a Store, rooms: Option<&'a Rooms>) -> Self {
        Whitelist { store, rooms }
    }

    /// Opens the change and checks the actor's authority over `room` inside it.
    async fn authorised(&self, room: &RoomId, actor: &Actor<'_>) -> Result<crate::store::Change, ChangeError> {
        let mut change = self.store.change().await?;
        if !change.room_exists(room).await? {
            return Err(ChangeError::NoRoom);
        }
        if let Authority::Owner(identity) = actor.authority {
            if !change.owns(room, identity).await? {
                return Err(ChangeError::NotOwner);
            }
        }
        Ok(change)
    }

    /// Writes the change's audit row (who and how, then `detail`), commits, and then
    /// has live rooms apply the change log.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        mut change: crate::store::Change,
        room: &RoomId,
        actor: &Actor<'_>,
        event: &'static str,
        identity: Option<&Did>,
        detail: Option<String>,
    ) -> Result<(), ChangeError> {
        let reason = match detail {
            Some(detail) => format!("{}: {detail}", actor.reason()),
            None => actor.reason(),
        };
        change.audit(room, ChangeAudit { event, identity, reason: Some(&reason), remote: actor.remote }).await?;
        change.commit().await?;
        self.reach_live_rooms().await;
        Ok(())
    }

    /// After a commit: live rooms learn the change from the change log, at once, by
    /// the same road as changes from other processes (and other servers, told on
    /// the bus, read it too).
    async fn reach_live_rooms(&self) {
        if let Some(rooms) = self.rooms {
            if let Err(e) = rooms.changed_here().await {
                // The follower applies it on its next tick.
                tracing::warn!(error = %e, "applying the change log failed");
            }
        }
    }

    /// Adds (or updates) entries, each with its requirements; returns, per entry,
    /// whether its identity was new to the list. See [`Whitelist::import`].
    pub async fn add(&self, room: &RoomId, actor: Actor<'_>, entries: &[NewEntry]) -> Result<Vec<bool>, ChangeError> {
        let mut import = self.import(room, actor);
        for entry in entries {
            import.push(entry.clone()).await?;
        }
        Ok(import.finish().await?.new)
    }

    /// Starts adding entries as they are read (a pasted list, an uploaded file, a
    /// million-line `room allow`): they are written [`IMPORT_BATCH`] at a time, each
    /// batch one transaction with the owner check and its audit row, so an import
    /// never holds the database for long and memory stays flat. Up to
    /// [`AUDIT_EACH_UP_TO`] keys get an audit row each; a larger import gets one per
    /// batch, naming the count.
    pub fn import<'s>(&'s self, room: &'s RoomId, actor: Actor<'s>) -> Import<'s, 'a> {
        Import { service: self, room, actor, pending: Vec::new(), new: Vec::new(), batches: 0 }
    }

    /// Removes an identity (never an owner's entry); its live sessions are ejected
    /// at once.
    pub async fn remove(&self, room: &RoomId, actor: Actor<'_>, identity: &Identity) -> Result<(), ChangeError> {
        let mut change = self.authorised(room, &actor).await?;
        if change.owns(room, identity.did()).await? {
            return Err(ChangeError::OwnerEntry);
        }
        if !change.delete_entry(room, identity.did()).await? {
            return Err(ChangeError::NotListed);
        }
        self.finish(change, room, &actor, "whitelist-remove", Some(identity.did()), None).await
    }

    /// Deletes a room: its whitelist, owners, settings and invites. Its live peers
    /// are ejected at once (and by any other server on the database within a poll);
    /// its audit log is kept, with this deletion as its last row.
    pub async fn delete_room(&self, room: &RoomId, actor: Actor<'_>) -> Result<(), ChangeError> {
        let mut change = self.authorised(room, &actor).await?;
        let entries = change.delete_room(room).await?;
        let detail = format!("with {entries} whitelisted key{}", if entries == 1 { "" } else { "s" });
        self.finish(change, room, &actor, "room-deleted", None, Some(detail)).await
    }

    /// Makes `identity` a co-owner (and whitelists it).
    pub async fn add_owner(&self, room: &RoomId, actor: Actor<'_>, identity: &Identity) -> Result<(), ChangeError> {
        let mut change = self.authorised(room, &actor).await?;
        change.add_owner(room, identity.did()).await?;
        change.put_entries(room, &[NewEntry::labelled(identity, "owner")], actor.name()).await?;
        self.finish(change, room, &actor, "owner-add", Some(identity.did()), None).await
    }

    /// Removes a co-owner (the last owner stays); its whitelist entry stays.
    pub async fn remove_owner(&self, room: &RoomId, actor: Actor<'_>, identity: &Identity) -> Result<(), ChangeError> {
        let mut change = self.authorised(room, &actor).await?;
        if !change.remove_owner(room, identity.did()).await? {
            return Err(if change.owns(room, identity.did()).await? {
                ChangeError::LastOwner
            } else {
                ChangeError::NoSuchOwner
            });
        }
        self.finish(change, room, &actor, "owner-remove", Some(identity.did()), None).await
    }

    /// Sets the room's settings; `edit` changes the current ones.
    pub async fn settings(
        &self,
        room: &RoomId,
        actor: Actor<'_>,
        edit: impl FnOnce(&mut RoomSettings),
    ) -> Result<RoomSettings, ChangeError> {
        let mut change = self.authorised(room, &actor).await?;
        let mut settings = change.settings(room).await?;
        edit(&mut settings);
        change.set_settings(room, &settings).await?;
        let detail = format!(
            "user verification {}, max peers {}, challenge lifetime {}, confirmation every {}, media {}",
            if settings.require_user_verification { "required" } else { "not required" },
            settings.max_peers.map_or("default".into(), |n| n.to_string()),
            settings.freshness_secs.map_or("default".into(), |n| format!("{n} s")),
            settings.reverify_every_secs.map_or("never".into(), |n| format!("{n} s")),
            crate::rooms::Media::from_stored(settings.media.as_deref()).as_str(),
        );
        self.finish(change, room, &actor, "settings", None, Some(detail)).await?;
        Ok(settings)
    }

    /// Creates a room owned by `owner`. An owner acting for itself may create at
    /// most `per_hour` rooms an hour (`None`: no limit, for the operator).
    pub async fn create_room(
        &self,
        id: &RoomId,
        name: &str,
        owner: &Identity,
        actor: Actor<'_>,
        per_hour: Option<usize>,
    ) -> Result<(), ChangeError> {
        let mut change = self.store.change().await?;
        if let Some(limit) = per_hour {
            let made = change.rooms_created_since(owner.did(), &now_minus_hour()).await?;
            if usize::try_from(made).unwrap_or(usize::MAX) >= limit {
                return Err(ChangeError::TooManyRooms(limit));
            }
        }
        change.create_room(id, name, owner).await?;
        self.finish(change, id, &actor, "room-created", Some(owner.did()), None).await
    }

    /// Creates an invite: whoever proves a key through it is whitelisted.
    pub async fn create_invite(
        &self,
        room: &RoomId,
        actor: Actor<'_>,
        label: &str,
        uses: i64,
        expires: chrono::DateTime<Utc>,
    ) -> Result<String, ChangeError> {
        let label = clip_label(label);
        let mut change = self.authorised(room, &actor).await?;
        let id = bs58::encode(crate::ids::random_bytes::<16>()).into_string();
        let expires_at = expires.to_rfc3339_opts(SecondsFormat::Millis, true);
        change.create_invite(&id, room, &label, uses, &expires_at, actor.name()).await?;
        let detail = format!("{uses} use(s) until {expires_at}, label '{label}'");
        self.finish(change, room, &actor, "invite-created", None, Some(detail)).await?;
        Ok(id)
    }

    /// Whitelists `identity`, which proved its key through invite `invite`: one use
    /// of the invite, the entry and its audit row are one transaction.
    pub async fn redeem_invite(
        &self,
        room: &RoomId,
        invite: &str,
        label: &str,
        identity: &Identity,
        remote: Option<&str>,
    ) -> Result<(), ChangeError> {
        let mut change = self.store.change().await?;
        if !change.use_invite(invite, room).await? {
            return Err(ChangeError::InviteUsed);
        }
        let entry = NewEntry::labelled(identity, clip_label(label));
        change.put_entries(room, &[entry], &format!("invite {invite}")).await?;
        let reason = format!("invite {invite} ({label})");
        let row = ChangeAudit { event: "whitelist-add", identity: Some(identity.did()), reason: Some(&reason), remote };
        change.audit(room, row).await?;
        change.commit().await?;
        self.reach_live_rooms().await;
        Ok(())
    }

    /// Ejects a live peer (it may come back while its key is listed); the audit row
    /// is written before the peer is told.
    pub async fn kick(&self, room: &RoomId, actor: Actor<'_>, peer: &PeerId) -> Result<(), ChangeError> {
        let change = self.authorised(room, &actor).await?;
        let rooms = self.rooms.ok_or(ChangeError::NoSuchPeer)?;
        let identity = rooms.locate(room, peer).await.ok_or(ChangeError::NoSuchPeer)?;
        self.finish(change, room, &actor, "kicked", Some(&identity), None).await?;
        rooms.kick_peer(room, peer, crate::protocol::code::REVOKED, "a host removed you from the call");
        Ok(())
    }
}

/// An import under way: see [`Whitelist::import`]. Entries pushed but not yet
/// written are lost if it is dropped without [`Import::finish`].
pub struct Import<'s, 'a> {
    service: &'s Whitelist<'a>,
    room: &'s RoomId,
    actor: Actor<'s>,
    pending: Vec<NewEntry>,
    new: Vec<bool>,
    batches: usize,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    /// Per entry, in the order pushed: whether its identity was new to the list.
    pub new: Vec<bool>,
    /// Transactions it took.
    pub batches: usize,
}

impl Imported {
    pub fn added(&self) -> usize {
        self.new.iter().filter(|n| **n).count()
    }
}

impl Import<'_, '_> {
    /// Adds one entry; a full batch is written now.
    pub async fn push(&mut self, entry: NewEntry) -> Result<(), ChangeError> {
        self.pending.push(NewEntry { label: clip_label(&entry.label), ..entry });
        if self.pending.len() >= IMPORT_BATCH {
            self.write(false).await?;
        }
        Ok(())
    }

    /// Entries pushed so far.
    pub fn len(&self) -> usize {
        self.new.len() + self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes what is left and says what the import did.
    pub async fn finish(mut self) -> Result<Imported, ChangeError> {
        if !self.pending.is_empty() {
            let each = self.batches == 0 && self.pending.len() <= AUDIT_EACH_UP_TO;
            self.write(each).await?;
        }
        Ok(Imported { new: self.new, batches: self.batches })
    }

    /// One batch: the owner check, the rows and the audit, in one transaction.
    async fn write(&mut self, audit_each: bool) -> Result<(), ChangeError> {
        let (service, room, actor) = (self.service, self.room, &self.actor);
        let mut change = service.authorised(room, actor).await?;
        let new = change.put_entries(room, &self.pending, actor.name()).await?;
        let reason = actor.reason();
        if audit_each {
            for entry in &self.pending {
                let detail = match &entry.piv_requirement {
                    Some(r) => format!("{reason}, PIV requirement {r}"),
                    None => reason.clone(),
                };
                let row = ChangeAudit {
                    event: "whitelist-add",
                    identity: Some(&entry.identity),
                    reason: Some(&detail),
                    remote: actor.remote,
                };
                change.audit(room, row).await?;
            }
        } else {
            let added = new.iter().filter(|n| **n).count();
            let mut detail = format!(
                "{reason}: {} keys ({added} new), entries {}–{} of this import",
                self.pending.len(),
                self.new.len() + 1,
                self.new.len() + self.pending.len()
            );
            let requirements: std::collections::BTreeSet<&str> =
                self.pending.iter().filter_map(|e| e.piv_requirement.as_deref()).collect();
            for r in requirements {
                detail.push_str(&format!(", PIV requirement {r}"));
            }
            let row =
                ChangeAudit { event: "whitelist-import", identity: None, reason: Some(&detail), remote: actor.remote };
            change.audit(room, row).await?;
        }
        change.commit().await?;
        self.batches += 1;
        self.new.extend(new);
        self.pending.clear();
        service.reach_live_rooms().await;
        Ok(())
    }
}
