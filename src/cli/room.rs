//! `keygate room …`: rooms and their whitelists, straight on the database. Every
//! change goes through the whitelist service (audited, as the operator); a running
//! server learns of it from the change log. Lists of any length stream: `allow`
//! reads its input in chunks and writes in batches, `show` pages, `export` streams.

use super::{one_identity, parse_room, CliResult, RoomCommand};
use crate::identity::KeyListReader;
use crate::ids::RoomId;
use crate::store::{ListPage, NewEntry, Search, Store, WhitelistEntry};
use crate::whitelist::{Actor, ChangeError, Whitelist, AUDIT_EACH_UP_TO};
use std::io::Write;
use std::process::ExitCode;

pub(super) async fn run(db: &std::path::Path, create_db: bool, command: RoomCommand) -> CliResult {
    // A PostgreSQL database is made by its administrator; only a file is checked.
    if !create_db && !crate::store::is_postgres(db) {
        super::data::must_exist(db)?;
    }
    let store = match &command {
        RoomCommand::Allow { .. } => Store::open_for_import(db).await?,
        _ => Store::open(db).await?,
    };
    let code = match command {
        RoomCommand::Create { owner, name } => {
            let owner = one_identity(&owner)?;
            let id = RoomId::generate();
            let name: String = name.trim().chars().take(100).collect();
            Whitelist::new(&store, None).create_room(&id, &name, &owner, Actor::operator(), None).await?;
            say!("{id}");
            ExitCode::SUCCESS
        }
        RoomCommand::Allow { room, key, label, piv_require } => {
            let room = parse_room(&room)?;
            let requirement =
                piv_require.as_deref().map(crate::verify::PivRequirement::parse).transpose()?.map(|r| r.to_string());
            allow(&store, &room, &key, &label, requirement).await?
        }
        RoomCommand::Deny { room, key } => {
            let room = parse_room(&room)?;
            let identity = one_identity(&key)?;
            match Whitelist::new(&store, None).remove(&room, Actor::operator(), &identity).await {
                Ok(()) => {
                    say!("removed {identity}");
                    ExitCode::SUCCESS
                }
                Err(ChangeError::NotListed) => {
                    eprintln!("{identity} is not on the whitelist of {room}");
                    ExitCode::FAILURE
                }
                Err(e) => return Err(e.into()),
            }
        }
        RoomCommand::Delete { room } => {
            let room = parse_room(&room)?;
            match Whitelist::new(&store, None).delete_room(&room, Actor::operator()).await {
                Ok(()) => {
                    say!("deleted room {room}; its audit log is kept (keygate room show {room})");
                    ExitCode::SUCCESS
                }
                Err(ChangeError::NoRoom) => {
                    eprintln!("no room {room} in {}", crate::store::shown_db(db));
                    ExitCode::FAILURE
                }
                Err(e) => return Err(e.into()),
            }
        }
        RoomCommand::Set { room, require_user_verification, reverify_every, media } => {
            let room = parse_room(&room)?;
            if require_user_verification.is_none() && reverify_every.is_none() && media.is_none() {
                return Err(
                    "nothing to set; e.g. --require-user-verification on, --reverify-every 600 or --media sfu".into()
                );
            }
            let service = Whitelist::new(&store, None);
            service
                .settings(&room, Actor::operator(), |s| {
                    if let Some(on) = require_user_verification {
                        s.require_user_verification = on;
                    }
                    if let Some(secs) = reverify_every {
                        s.reverify_every_secs = (secs > 0).then_some(i64::from(secs));
                    }
                    if let Some(media) = media {
                        s.media = Some(media.as_str().to_owned());
                    }
                })
                .await?;
            if let Some(on) = require_user_verification {
                say!("{room}: user verification {}", if on { "required" } else { "not required" });
            }
            match media {
                None => {}
                Some(crate::rooms::Media::Mesh) => say!("{room}: calls are peer to peer"),
                Some(crate::rooms::Media::Sfu) => {
                    say!("{room}: calls go through the server's SFU, end-to-end encrypted (needs `serve --janus`)")
                }
                Some(crate::rooms::Media::Auto) => {
                    say!("{room}: calls are peer to peer, then go through the SFU once they grow (sfu_from)")
                }
            }
            if let Some(secs) = reverify_every {
                match secs {
                    0 => say!("{room}: no periodic confirmation of identity"),
                    s => say!("{room}: every peer confirms its identity every {s} s"),
                }
            }
            ExitCode::SUCCESS
        }
        RoomCommand::List => {
            let rooms = store.rooms().await?;
            if rooms.is_empty() {
                say!("no rooms yet; create one with: keygate room create --owner KEY");
            }
            for (r, entries) in rooms {
                say!("{}  {:>3} keys  {}  {}", r.id, entries, r.created_at, r.name);
            }
            ExitCode::SUCCESS
        }
        RoomCommand::Show { room, search, limit, after, all } => {
            let room = parse_room(&room)?;
            show(&store, &room, search.as_deref().unwrap_or(""), limit, after, all).await?
        }
        RoomCommand::Export { room } => {
            let room = parse_room(&room)?;
            if store.room(&room).await?.is_none() {
                return Err(format!("no room {room}").into());
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut entries = std::pin::pin!(store.whitelist_stream(&room));
            while let Some(entry) = futures_util::StreamExt::next(&mut entries).await {
                let entry = entry?;
                let written = if entry.label.is_empty() {
                    writeln!(out, "{}", entry.identity)
                } else {
                    writeln!(out, "{}  {}", entry.identity, entry.label)
                };
                if written.is_err() {
                    break; // a closed pipe (`| head`) is not an error
                }
            }
            let _ = out.flush();
            ExitCode::SUCCESS
        }
    };
    // The last connection to close folds the write-ahead log into the database and
    // removes it (unless a server still has the database open).
    store.close().await;
    Ok(code)
}

/// The input of `room allow`: `-` is stdin, an existing path is read, anything else
/// is the key text itself.
fn key_source(arg: &str) -> Result<Box<dyn std::io::Read + Send>, Box<dyn std::error::Error>> {
    if arg == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let path = std::path::Path::new(arg);
    if !arg.contains('\n') && path.is_file() {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read {arg}: {e}"))?;
        return Ok(Box::new(file));
    }
    Ok(Box::new(std::io::Cursor::new(arg.as_bytes().to_vec())))
}

/// What the reading thread of `room allow` hands on: an entry, or a bad line.
type Read = Result<NewEntry, (usize, crate::identity::ParseError)>;

/// Reads and parses the input on its own thread, handing entries on in chunks, so
/// parsing and the database's writing overlap.
fn read_entries(
    mut source: Box<dyn std::io::Read + Send>,
    label: String,
    requirement: Option<String>,
) -> (tokio::sync::mpsc::Receiver<Result<Vec<Read>, String>>, std::thread::JoinHandle<()>) {
    // Room for about one batch of parsed lines (a 256 KiB read holds some 3,500), so
    // the parser keeps going while a batch is written instead of waiting for it.
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    let reader_thread = std::thread::spawn(move || {
        let mut reader = KeyListReader::default();
        let (mut found, mut buf) = (Vec::new(), vec![0u8; 256 * 1024]);
        loop {
            let read = match source.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(format!("cannot read the keys: {e}")));
                    return;
                }
            };
            if read == 0 {
                std::mem::take(&mut reader).finish(&mut found);
            } else {
                reader.feed(&buf[..read], &mut found);
            }
            let chunk: Vec<Read> = found
                .drain(..)
                .map(|(line, parsed)| {
                    parsed.map(|k| NewEntry::from_line(k, &label, requirement.clone())).map_err(|e| (line, e))
                })
                .collect();
            if (!chunk.is_empty() && tx.blocking_send(Ok(chunk)).is_err()) || read == 0 {
                return;
            }
        }
    });
    (rx, reader_thread)
}

/// `room allow`: every key of the input, read in chunks and written in batches (a
/// million-line file never sits in memory). Bad lines are named by number and the
/// good ones kept. Up to [`AUDIT_EACH_UP_TO`] keys are listed one by one; beyond
/// that, counted.
async fn allow(
    store: &Store,
    room: &RoomId,
    key: &str,
    label: &str,
    requirement: Option<String>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (mut chunks, reader_thread) = read_entries(key_source(key)?, label.to_owned(), requirement);
    let service = Whitelist::new(store, None);
    let mut import = service.import(room, Actor::operator());
    let (mut listed, mut bad) = (Vec::new(), 0usize);
    while let Some(chunk) = chunks.recv().await {
        for read in chunk? {
            match read {
                Ok(entry) => {
                    if listed.len() <= AUDIT_EACH_UP_TO {
                        listed.push((entry.identity.clone(), entry.label.clone()));
                    }
                    import.push(entry).await?;
                }
                Err((line, e)) => {
                    bad += 1;
                    eprintln!("line {line}: {e}");
                }
            }
        }
    }
    let _ = reader_thread.join();
    if import.is_empty() {
        return Err(if bad == 0 { "no key given" } else { "no key could be read; nothing was added" }.into());
    }
    let done = import.finish().await?;
    store.checkpoint().await?;
    if done.new.len() <= AUDIT_EACH_UP_TO {
        for ((identity, label), new) in listed.iter().zip(&done.new) {
            let label = if label.is_empty() { String::new() } else { format!("  {label}") };
            say!("{} {identity}{label}", if *new { "added" } else { "kept " });
        }
    } else {
        let added = done.added();
        say!("added {added} keys, kept {} already listed ({} transactions)", done.new.len() - added, done.batches);
    }
    if bad > 0 {
        eprintln!("{bad} line(s) could not be read; the others were added");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn entry_lines(e: &WhitelistEntry) {
    say!(
        "  {}  {}  {}  last admitted {}",
        e.identity,
        e.fingerprint,
        if e.label.is_empty() { "-" } else { &e.label },
        e.last_admitted_at.as_deref().unwrap_or("never")
    );
    if let Some(req) = &e.piv_requirement {
        say!("      PIV: requires {req}");
    }
    if let Some(ns) = &e.ssh_namespaces {
        say!("      SSH namespaces: {}", ns.join(","));
    }
    if let Some(valid) = e.valid_text() {
        say!("      {valid}");
    }
}

async fn show(
    store: &Store,
    room: &RoomId,
    search: &str,
    limit: u32,
    after: Option<String>,
    all: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let Some(record) = store.room(room).await? else {
        // A deleted room keeps its audit log.
        let audit = store.audit(room, 20, None).await?;
        if audit.is_empty() {
            return Err(format!("no room {room}").into());
        }
        say!("room {room} was deleted; its last audit events:");
        audit_lines(&audit);
        return Ok(ExitCode::SUCCESS);
    };
    say!("room     {}\nname     {}\ncreated  {}", record.id, record.name, record.created_at);
    if record.require_user_verification {
        say!("policy   user verification required");
    }
    say!("media    {}", crate::rooms::Media::from_stored(record.media.as_deref()).as_str());
    for o in &record.owners {
        say!("owner    {o}");
    }
    let total = store.whitelist_len(room).await?;
    let search = Search::parse(search);
    if all {
        say!("\nwhitelist ({total} keys):");
        let mut entries = std::pin::pin!(store.whitelist_stream(room));
        while let Some(entry) = futures_util::StreamExt::next(&mut entries).await {
            entry_lines(&entry?);
        }
    } else {
        let page = ListPage { search, after, limit: i64::from(limit.max(1)) };
        let entries = store.whitelist_page(room, &page).await?;
        match &page.search {
            Search::All => say!(
                "\nwhitelist ({total} keys), {} from {}:",
                entries.len(),
                match &page.after {
                    Some(a) => format!("after {a}"),
                    None => "the start".to_owned(),
                }
            ),
            s => say!("\nwhitelist ({total} keys), {} matching '{}':", entries.len(), s.text()),
        }
        for e in &entries {
            entry_lines(e);
        }
        if let Some(last) = entries.last().filter(|_| entries.len() as i64 == page.limit) {
            let cursor = &last.identity;
            let search = match page.search.text() {
                "" => String::new(),
                text => format!(" --search '{text}'"),
            };
            say!("  … more: keygate room show {room}{search} --after '{cursor}' (or --all)");
        }
    }
    let passkeys = store.room_credentials(room).await?;
    if !passkeys.is_empty() {
        say!("\nregistered passkeys of its members (offered as a hint in rooms of up to 1,000 keys):");
        for c in passkeys {
            say!("  {}  credential {}  counter {}", c.identity, c.id, c.counter);
        }
    }
    say!("\nrecent audit events:");
    audit_lines(&store.audit(room, 20, None).await?);
    Ok(ExitCode::SUCCESS)
}

fn audit_lines(records: &[crate::store::AuditRecord]) {
    for a in records {
        say!(
            "  {}  {:<16} {}  {}  {}",
            a.at,
            a.event,
            a.method.as_deref().unwrap_or("-"),
            a.identity.as_deref().unwrap_or("-"),
            a.reason.as_deref().unwrap_or("")
        );
    }
}
