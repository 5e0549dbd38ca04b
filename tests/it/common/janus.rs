//! Debian's Janus on loopback in a temporary directory: the VideoRoom plugin and
//! the WebSocket transport only, started by the test and stopped when dropped.

use super::{free_port, tool};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct JanusServer {
    child: Child,
    dir: tempfile::TempDir,
    /// Its WebSocket API (`ws://127.0.0.1:PORT`), subprotocol `janus-protocol`.
    pub url: String,
}

/// A VideoRoom handle of the test's own on a Janus: what an operator (or a curious
/// server) sees there.
pub struct VideoRoomView {
    api: std::sync::Arc<keygate::sfu::janus::Janus>,
    session: u64,
    handle: u64,
}

impl VideoRoomView {
    /// Sends a VideoRoom request; Janus's answer (`plugindata.data`).
    pub async fn ask(&self, body: serde_json::Value) -> serde_json::Value {
        let answer = self.api.message(self.session, self.handle, body, None).await.unwrap();
        answer["plugindata"]["data"].clone()
    }

    /// Every room on this Janus, as `list` describes them.
    pub async fn rooms(&self) -> Vec<serde_json::Value> {
        self.ask(serde_json::json!({"request": "list"})).await["list"].as_array().cloned().unwrap_or_default()
    }
}

impl JanusServer {
    /// A VideoRoom handle of the test's own on this Janus.
    pub async fn view(&self) -> VideoRoomView {
        let api = keygate::sfu::janus::Janus::connect(&self.url).await.unwrap();
        let session = api.create_session().await.unwrap();
        let (handle, _) = api.attach(session, "janus.plugin.videoroom").await.unwrap();
        VideoRoomView { api, session, handle }
    }

    /// None (outside CI) without janus.
    pub fn start() -> Option<JanusServer> {
        let janus = tool("janus")?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let lib = ["/usr/lib/x86_64-linux-gnu/janus", "/usr/lib/aarch64-linux-gnu/janus", "/usr/lib/janus"]
            .into_iter()
            .find(|p| std::path::Path::new(p).join("plugins").is_dir())
            .expect("janus's plugins are installed with it");
        let port = free_port();
        let keep = |folder: &str, wanted: &str| -> String {
            std::fs::read_dir(format!("{lib}/{folder}"))
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter(|n| n.ends_with(".so") && n != wanted)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let files = [
            (
                "janus.jcfg",
                format!(
                    "general: {{ configs_folder = \"{d}\" plugins_folder = \"{lib}/plugins\" transports_folder = \"{lib}/transports\"
                       events_folder = \"{lib}/events\" loggers_folder = \"{lib}/loggers\" debug_level = 4 }}
                     media: {{ rtp_port_range = \"40000-60000\" }}
                     nat: {{ ice_lite = false }}
                     plugins: {{ disable = \"{}\" }}
                     transports: {{ disable = \"{}\" }}
                     events: {{ broadcast = false }}
                     loggers: {{ disable = \"{}\" }}",
                    keep("plugins", "libjanus_videoroom.so"),
                    keep("transports", "libjanus_websockets.so"),
                    keep("loggers", "")
                ),
            ),
            (
                "janus.transport.websockets.jcfg",
                format!(
                    "general: {{ json = \"compact\" ws = true ws_port = {port} ws_ip = \"127.0.0.1\" wss = false }}
                     admin: {{ admin_ws = false admin_wss = false }}"
                ),
            ),
            ("janus.plugin.videoroom.jcfg", "general: { }".to_owned()),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let child = Self::spawn(&janus, dir.path(), port);
        Some(JanusServer { child, dir, url: format!("ws://127.0.0.1:{port}") })
    }

    /// Runs janus on the configuration in `dir` and waits until it listens on `port`.
    fn spawn(janus: &std::path::Path, dir: &std::path::Path, port: u16) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("janus.log")).unwrap();
        let child = Command::new(janus)
            .arg("-F")
            .arg(dir)
            .arg("--log-stdout")
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut up = false;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(dir.join("janus.log")).unwrap_or_default();
        assert!(up, "janus did not start:\n{log}");
        child
    }

    /// Stops janus and starts it again on the same port: it forgets every session.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
        self.child = Self::spawn(&tool("janus").unwrap(), self.dir.path(), port);
    }

    /// What Janus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default()
    }
}

impl Drop for JanusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
