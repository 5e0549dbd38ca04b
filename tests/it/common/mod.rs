//! Shared test harness: the real server on an ephemeral port with a fresh SQLite
//! file, real WebSocket clients, and helpers to reach test data and tools.
#![allow(dead_code)]

mod janus;
mod nginx;
pub mod piv_card;
pub mod piv_pki;
pub use janus::JanusServer;
pub use nginx::Nginx;

use keygate::client::p256_key::P256Key;
use keygate::client::ws::Client;
use keygate::config::Settings;
use keygate::identity::Identity;
use keygate::ids::RoomId;
use keygate::server::Server;
use keygate::store::{AuditRecord, NewEntry, Store};
use keygate::whitelist::{Actor, Whitelist};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct TestServer {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = match std::env::var("KEYGATE_TEST_STORE").as_deref() {
            Ok("postgres") => postgres_database().await,
            _ => dir.path().join("keygate.db"),
        };
        let mut settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), db: db.clone(), ..Settings::default() };
        adjust(&mut settings);
        let server = Server::start(settings).await.unwrap();
        TestServer { server: Some(server), dir, db }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.server().addr())
    }

    pub fn http(&self) -> String {
        format!("http://{}", self.server().addr())
    }

    /// A client; with `KEYGATE_RECORD_FRAMES=DIR` set (scripts/fuzz does), every
    /// frame it sends is also written to DIR, to seed the frame fuzz target.
    pub async fn connect(&self) -> Client {
        let client = Client::connect(&self.url()).await.unwrap();
        match std::env::var_os("KEYGATE_RECORD_FRAMES") {
            Some(dir) => client.record_to(dir.into()),
            None => client,
        }
    }

    /// Creates a room owned by `owner` whitelisting `allowed` (as the operator).
    pub async fn room(&self, owner: &P256Key, allowed: &[&P256Key]) -> RoomId {
        let store = &self.server().gateway().store;
        let id = RoomId::generate();
        store.create_room(&id, "test", &identity(owner)).await;
        for k in allowed {
            store.allow(&id, &identity(k), "guest").await;
        }
        id
    }

    /// The room's audit log, newest first, once every queued event is written.
    pub async fn audit(&self, room: &RoomId) -> Vec<AuditRecord> {
        let gw = self.server().gateway();
        gw.audit.flush().await;
        gw.store.audit(room, 100, None).await.unwrap()
    }

    /// Waits until the audit log has an event matching `pred` (events are written
    /// asynchronously); fails after 10 s.
    pub async fn audit_has(&self, room: &RoomId, pred: impl Fn(&AuditRecord) -> bool) -> AuditRecord {
        for _ in 0..200 {
            if let Some(e) = self.audit(room).await.into_iter().find(|e| pred(e)) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no matching audit event in {:?}", self.audit(room).await);
    }

    /// Stops the server (sockets get `shutting-down`) and starts it again on the
    /// same address and database, as an operator's restart would.
    pub async fn restart(&mut self) {
        let server = self.server.take().unwrap();
        let settings = server.gateway().settings.clone();
        server.shutdown().await;
        self.server = Some(Server::start(settings).await.unwrap());
    }

    /// Stops the server and keeps its directory (the database stays for inspection).
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

pub fn identity(key: &P256Key) -> keygate::identity::Identity {
    keygate::identity::Identity::parse(&key.public_jwk().to_string()).unwrap()
}

pub fn key() -> P256Key {
    P256Key::generate().unwrap()
}

pub fn join(room: &RoomId) -> Value {
    json!({"type": "request", "roomId": room.as_str()})
}

/// Admits `key` into `room` on a new connection.
pub async fn admitted(server: &TestServer, room: &RoomId, key: &P256Key) -> (Client, Value) {
    let mut c = server.connect().await;
    let welcome = c.join_webcrypto(join(room), key).await.unwrap();
    (c, welcome)
}

/// The stable code of a server `error`; any other failure fails the test.
pub fn server_code(e: keygate::client::ws::ClientError) -> String {
    match e {
        keygate::client::ws::ClientError::Server { code, .. } => code,
        other => panic!("expected a server error, got {other}"),
    }
}

/// Fetches a metric from the server's /metrics over real HTTP.
pub async fn metric(server: &TestServer, name: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.server().addr();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("metric {name} missing in {body}"))
}

/// Whether this run is in CI, where a missing tool or data set is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// The third-party test vectors: `$KEYGATE_VECTORS`, or `../shared/vectors` beside
/// the repository. `None` (with a note) outside CI when neither exists; in CI that
/// is a failure, never a skip.
pub fn vectors() -> Option<PathBuf> {
    let dir = std::env::var_os("KEYGATE_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(!in_ci(), "test vectors not found at {} (set KEYGATE_VECTORS)", dir.display());
    eprintln!("skipping: test vectors not found at {} (set KEYGATE_VECTORS)", dir.display());
    None
}

/// A system tool the test needs: in CI its absence fails the test.
pub fn tool(name: &str) -> Option<PathBuf> {
    // Daemons (nginx, pcscd) live in sbin, which a user's PATH may not have.
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|p| p.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(!in_ci(), "{name} is required for this test and is not installed");
        eprintln!("skipping: {name} is not installed");
    }
    found
}

/// Debian's nats-server on a free loopback port, with no configuration and no
/// storage, for as long as this lives.
pub struct NatsServer {
    child: std::process::Child,
    pub url: String,
}

impl NatsServer {
    /// None (with a note) outside CI when nats-server is missing.
    pub fn start() -> Option<Self> {
        let bin = tool("nats-server")?;
        let port = free_port();
        let child = std::process::Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start on port {port}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(NatsServer { child, url: format!("nats://127.0.0.1:{port}") })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a database at `db` with one room owned by `owner`, as an operator
/// would before the first start (`keygate room create --create-db`); its id.
pub fn room_from_cli(db: &Path, owner: &P256Key) -> String {
    let out = std::process::Command::new(keygate_bin())
        .args(["room", "create", "--create-db", "--owner", &owner.public_jwk().to_string(), "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The keygate binary built for these tests.
pub fn keygate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keygate"))
}

/// Reads frames until one of type `kind` (skipping others, e.g. peer-joined).
pub async fn until(c: &mut Client, kind: &str) -> Value {
    loop {
        let f = c.recv().await.unwrap();
        if f["type"] == kind {
            return f;
        }
    }
}

/// POSTs JSON to the server over a real socket; returns (status, body).
pub async fn post_json(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.server().addr();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let status: u16 = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    // Chunked bodies: take the JSON between the first '{' and the last '}'.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&body[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, json)
}

/// A connection pool of the test's own to a server's SQLite file: what is on disk,
/// whatever the server has in memory.
pub async fn db_pool(db: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap()
}

/// A free loopback port, for servers whose settings must name their own origin.
/// Waits (up to 10 s) until `check` holds.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 10 s");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs a playwright-core script from tests/js against a fresh server on a fixed
/// loopback port (http://localhost is a secure context: WebCrypto, IndexedDB and
/// WebAuthn work there). Returns the script's stdout once it printed "ok" last;
/// None (outside CI) when node, Chromium or the npm packages are missing.
pub async fn run_browser_script(script: &str, adjust: impl FnOnce(&mut Settings)) -> Option<String> {
    let (s, node, artifacts) = start_browser_script(script, adjust).await?;
    let stdout = run_node(node, &artifacts, script).await;
    s.shutdown().await;
    Some(stdout)
}

/// Runs `script` against a fresh server that the test restarts when the script
/// prints "in-call" (answering "restarted"); the script's stdout lines, or None
/// (outside CI) when the browser tools are missing.
pub async fn run_browser_restarting(script: &str, adjust: impl FnOnce(&mut Settings)) -> Option<Vec<String>> {
    let (mut s, node, artifacts) = start_browser_script(script, adjust).await?;
    let restart = async || {
        s.restart().await;
        "restarted"
    };
    let seen = run_browser_pausing(node, &artifacts, "in-call", restart).await;
    s.shutdown().await;
    Some(seen)
}

/// Runs a browser script's `node` command to its end; its stdout, once it printed
/// "ok" last and exited 0 (otherwise the test fails with both outputs).
pub async fn run_node(mut node: tokio::process::Command, artifacts: &Path, script: &str) -> String {
    let out = node.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "browser flow {script} failed (screenshots in {}):\n{}\n{}",
        artifacts.display(),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `ssh-keygen -Y sign -n NAMESPACE` of `data` with the key at `key`: the armored signature.
pub fn sign_with_ssh_keygen(key: &Path, namespace: &str, data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A new, empty database in the PostgreSQL server that `scripts/with-postgres`
/// started (`KEYGATE_TEST_POSTGRES`), as the `--db` URL of a server.
pub async fn postgres_database() -> PathBuf {
    let admin = std::env::var("KEYGATE_TEST_POSTGRES")
        .expect("KEYGATE_TEST_POSTGRES is not set: run the tests under scripts/with-postgres");
    let name =
        format!("kg_{}", keygate::ids::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect::<String>());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let _ = sqlx::Connection::close(conn).await;
    let base = admin.rsplit_once('/').unwrap().0;
    PathBuf::from(format!("{base}/{name}"))
}

/// A server on a fixed loopback port and the `node` command that runs `script`
/// against it (not yet started), with the script's artifact directory; None (outside
/// CI) when node, Chromium or the npm packages are missing.
pub async fn start_browser_script(
    script: &str,
    adjust: impl FnOnce(&mut Settings),
) -> Option<(TestServer, tokio::process::Command, PathBuf)> {
    let port = free_port();
    let (node, artifacts) = browser_command(script, &format!("http://localhost:{port}"))?;
    let s = TestServer::with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        adjust(c);
    })
    .await;
    Some((s, node, artifacts))
}

/// Runs a browser script (from [`browser_command`]) that prints `pause` and then
/// waits for a line on its stdin: `act` runs at that point, and the line it returns
/// is written. Returns the script's stdout; fails the test unless the script got
/// to `pause` and then exited printing "ok".
pub async fn run_browser_pausing(
    mut node: tokio::process::Command,
    artifacts: &Path,
    pause: &str,
    act: impl AsyncFnOnce() -> &'static str,
) -> Vec<String> {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut child = node.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let paused = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let done = line == pause;
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if paused {
        let answer = act().await;
        child.stdin.as_mut().unwrap().write_all(format!("{answer}\n").as_bytes()).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    while let Ok(Some(line)) = stdout.next_line().await {
        seen.push(line);
    }
    assert!(
        paused && out.status.success() && seen.last().is_some_and(|l| l == "ok"),
        "browser flow failed (screenshots in {}):\n{}\n{}",
        artifacts.display(),
        seen.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    seen
}

/// The `node` command that runs `script` against the service at `base` (not yet
/// started), with the script's artifact directory; None (outside CI) when node,
/// Chromium or the npm packages are missing.
pub fn browser_command(script: &str, base: &str) -> Option<(tokio::process::Command, PathBuf)> {
    let (Some(_), Some(_)) = (tool("node"), tool("chromium")) else { return None };
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !js.join("node_modules/playwright-core").is_dir() {
        assert!(!in_ci(), "playwright-core is not installed: run npm ci --prefix tests/js");
        eprintln!("skipping: playwright-core is not installed (npm ci --prefix tests/js)");
        return None;
    }
    let name = script.trim_end_matches(".browser.mjs");
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts").join(name);
    let mut node = tokio::process::Command::new("node");
    node.arg(js.join(script)).arg(base).arg(&artifacts).kill_on_drop(true);
    Some((node, artifacts))
}

/// Test seeding of rooms and whitelists, through the one whitelist service (as the
/// operator, like the CLI), so every seeded change has its audit row as any other.
/// Live rooms are not told: tests that change a room in a call use
/// `gateway().whitelist()` or wait for the change log.
#[allow(async_fn_in_trait)]
pub trait Seed {
    async fn create_room(&self, id: &RoomId, name: &str, owner: &Identity);
    async fn allow(&self, room: &RoomId, identity: &Identity, label: &str) -> bool;
    async fn allow_key(
        &self,
        room: &RoomId,
        identity: &Identity,
        label: &str,
        ssh_namespaces: Option<&[String]>,
    ) -> bool;
    /// Adds the key of one line of a key list (an allowed_signers line keeps its
    /// options) and returns its identity.
    async fn allow_line(&self, room: &RoomId, line: &str) -> Identity;
    async fn set_piv_requirement(&self, room: &RoomId, identity: &Identity, requirement: Option<&str>);
    async fn set_reverify_every(&self, room: &RoomId, secs: Option<i64>);
    async fn set_max_peers(&self, room: &RoomId, max: Option<i64>);
    async fn set_require_user_verification(&self, room: &RoomId, on: bool);
    /// How the room's calls carry media.
    async fn set_media(&self, room: &RoomId, media: keygate::rooms::Media);
    /// The room's whole list, in identity order (test rooms are small).
    async fn listed(&self, room: &RoomId) -> Vec<keygate::store::WhitelistEntry>;
}

impl Seed for Store {
    async fn listed(&self, room: &RoomId) -> Vec<keygate::store::WhitelistEntry> {
        let page = keygate::store::ListPage { search: keygate::store::Search::All, after: None, limit: 100_000 };
        self.whitelist_page(room, &page).await.unwrap()
    }

    async fn create_room(&self, id: &RoomId, name: &str, owner: &Identity) {
        Whitelist::new(self, None).create_room(id, name, owner, Actor::operator(), None).await.unwrap();
    }

    async fn allow(&self, room: &RoomId, identity: &Identity, label: &str) -> bool {
        self.allow_key(room, identity, label, None).await
    }

    async fn allow_key(
        &self,
        room: &RoomId,
        identity: &Identity,
        label: &str,
        ssh_namespaces: Option<&[String]>,
    ) -> bool {
        let mut entry = NewEntry::labelled(identity, label);
        entry.ssh_namespaces = ssh_namespaces.map(<[String]>::to_vec);
        Whitelist::new(self, None).add(room, Actor::operator(), &[entry]).await.unwrap()[0]
    }

    async fn allow_line(&self, room: &RoomId, line: &str) -> Identity {
        let parsed = keygate::identity::parse_key_list(line).pop().unwrap().1.unwrap();
        let identity = parsed.identity.clone();
        Whitelist::new(self, None)
            .add(room, Actor::operator(), &[NewEntry::from_line(parsed, "", None)])
            .await
            .unwrap();
        identity
    }

    async fn set_piv_requirement(&self, room: &RoomId, identity: &Identity, requirement: Option<&str>) {
        let mut entry = NewEntry::labelled(identity, "");
        entry.piv_requirement = requirement.map(str::to_owned);
        Whitelist::new(self, None).add(room, Actor::operator(), &[entry]).await.unwrap();
    }

    async fn set_reverify_every(&self, room: &RoomId, secs: Option<i64>) {
        Whitelist::new(self, None).settings(room, Actor::operator(), |s| s.reverify_every_secs = secs).await.unwrap();
    }

    async fn set_max_peers(&self, room: &RoomId, max: Option<i64>) {
        Whitelist::new(self, None).settings(room, Actor::operator(), |s| s.max_peers = max).await.unwrap();
    }

    async fn set_require_user_verification(&self, room: &RoomId, on: bool) {
        let edit = |s: &mut keygate::store::RoomSettings| s.require_user_verification = on;
        Whitelist::new(self, None).settings(room, Actor::operator(), edit).await.unwrap();
    }

    async fn set_media(&self, room: &RoomId, media: keygate::rooms::Media) {
        let edit = |s: &mut keygate::store::RoomSettings| s.media = Some(media.as_str().to_owned());
        Whitelist::new(self, None).settings(room, Actor::operator(), edit).await.unwrap();
    }
}

/// Signs `client` in with `key` through /signin/challenge and /signin/verify.
/// The answer to a challenge issued over HTTP, signed with a browser key.
pub fn http_answer(ch: &Value, key: &P256Key) -> Value {
    json!({
        "challengeId": ch["challengeId"], "method": "webcrypto", "payload": ch["payload"],
        "signature": key.sign_b64(ch["payload"].to_string().as_bytes()).unwrap(), "publicKey": key.public_jwk(),
    })
}

pub async fn sign_in(s: &TestServer, client: &reqwest::Client, key: &P256Key) -> Value {
    let base = s.http();
    let ch: Value =
        client.post(format!("{base}/signin/challenge")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    assert_eq!(ch["payload"]["purpose"], "sign-in");
    let answer = http_answer(&ch, key);
    let res = client.post(format!("{base}/signin/verify")).json(&answer).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    res.json().await.unwrap()
}

pub fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Runs the keygate binary on the database `db`.
pub fn keygate(args: &[&str], db: &std::path::Path) -> std::process::Output {
    std::process::Command::new(keygate_bin()).args(args).env("KEYGATE_DB", db).output().unwrap()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
