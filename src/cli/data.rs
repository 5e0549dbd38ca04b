//! `keygate backup FILE` and `keygate restore FILE`, and the check that commands
//! working on an existing database do not create a new one by mistake.
//!
//! A running server keeps recent writes in `DB-wal`: a `cp` of the database file
//! misses them. `backup` asks SQLite for a consistent snapshot instead (`VACUUM
//! INTO`, one read transaction: everything committed before it starts, nothing
//! after), while the server goes on serving. `restore` puts a backup in place of
//! the database once no process has it open.

use super::CliResult;
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::store::shown_db as shown;

/// Refuses a PostgreSQL `--db` for what works on a SQLite file only.
fn sqlite_only(db: &Path, what: &'static str) -> Result<(), crate::store::StoreError> {
    if crate::store::is_postgres(db) {
        return Err(crate::store::StoreError::SqliteOnly(what));
    }
    Ok(())
}

/// Refuses a database path that does not exist, naming it.
pub(super) fn must_exist(db: &Path) -> Result<(), String> {
    if db.is_file() {
        return Ok(());
    }
    Err(format!(
        "no keygate database at {} — check --db (or KEYGATE_DB); `keygate serve` creates it on first start, \
         or pass --create-db to create it here",
        shown(db)
    ))
}

/// What a database holds, for a person to check a backup by.
async fn summary(store: &Store) -> Result<String, crate::store::StoreError> {
    let (rooms, keys, audit) = store.counts().await?;
    Ok(format!("{rooms} rooms, {keys} whitelisted keys, {audit} audit rows"))
}

pub(super) async fn backup(db: &Path, file: &Path) -> CliResult {
    sqlite_only(db, "keygate backup")?;
    must_exist(db)?;
    if file.exists() {
        return Err(
            format!("{} already exists; choose a new file name (a backup never overwrites)", shown(file)).into()
        );
    }
    // Written beside the target and renamed: a backup cut short leaves no file
    // that looks whole.
    let partial = PathBuf::from(format!("{}.partial", file.display()));
    let _ = std::fs::remove_file(&partial);
    let store = Store::open(db).await?;
    let written = store.backup_to(&partial).await;
    store.close().await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(format!("backing up {} failed: {e}", shown(db)).into());
    }
    let copy = Store::open_read_only(&partial).await?;
    let checked = copy.integrity().await;
    let what = summary(&copy).await;
    copy.close().await;
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&partial);
        return Err(format!("the backup did not check out ({e}); nothing was written").into());
    }
    std::fs::rename(&partial, file).map_err(|e| format!("cannot write {}: {e}", shown(file)))?;
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    say!("backed up {} to {} ({}; {:.1} MB)", shown(db), shown(file), what?, bytes as f64 / 1e6);
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn restore(db: &Path, file: &Path, force: bool) -> CliResult {
    sqlite_only(db, "keygate restore")?;
    if !file.is_file() {
        return Err(format!("no backup at {}", shown(file)).into());
    }
    // A keygate database, whole: read-only, so a bad file is not changed either.
    let backup =
        Store::open_read_only(file).await.map_err(|e| format!("{} is not a keygate database: {e}", shown(file)))?;
    let checked = backup.integrity().await;
    let what = summary(&backup).await;
    backup.close().await;
    checked.map_err(|e| format!("{} is damaged: {e}", shown(file)))?;
    let what = what.map_err(|e| format!("{} is not a keygate database: {e}", shown(file)))?;
    if db.exists() {
        if !force {
            return Err(format!(
                "{} exists; restoring replaces it: stop the server, then run again with --force \
                 (the current database is kept as {}.before-restore)",
                shown(db),
                db.display()
            )
            .into());
        }
        if Store::in_use(db).await? {
            return Err(format!("{} is open in another process (a running server?): stop it first", shown(db)).into());
        }
    }
    let incoming = PathBuf::from(format!("{}.restoring", db.display()));
    std::fs::copy(file, &incoming).map_err(|e| format!("cannot write {}: {e}", incoming.display()))?;
    std::fs::File::open(&incoming).and_then(|f| f.sync_all()).map_err(|e| format!("{}: {e}", incoming.display()))?;
    if db.exists() {
        // The old database with its log files, moved aside together: a log left
        // beside the restored file would be replayed into it.
        for suffix in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", db.display()));
            if from.exists() {
                let to = PathBuf::from(format!("{}.before-restore{suffix}", db.display()));
                std::fs::rename(&from, &to).map_err(|e| format!("cannot move {} aside: {e}", from.display()))?;
            }
        }
    }
    std::fs::rename(&incoming, db).map_err(|e| format!("cannot put the backup in place at {}: {e}", shown(db)))?;
    say!("restored {} from {} ({what})", shown(db), shown(file));
    Ok(ExitCode::SUCCESS)
}
