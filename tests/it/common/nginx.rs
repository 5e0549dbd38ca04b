//! Debian's nginx on loopback in a temporary directory, in front of keygate
//! servers, started by the test and stopped when dropped.

use super::tool;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The proxy settings every route uses (WebSocket upgrade, the client's address).
const PROXY: &str = "proxy_http_version 1.1;
                     proxy_set_header Host $host;
                     proxy_set_header Upgrade $http_upgrade;
                     proxy_set_header Connection \"upgrade\";
                     proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;";

pub struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Each `(listen, upstream)` port pair a route of its own, with a short
    /// `proxy_read_timeout`. None (outside CI) without nginx.
    pub fn start(routes: &[(u16, u16)], read_timeout: &str) -> Option<Nginx> {
        let mut servers = String::new();
        for (listen, upstream) in routes {
            servers.push_str(&format!(
                "server {{ listen 127.0.0.1:{listen};
                   location / {{ proxy_pass http://127.0.0.1:{upstream}; {PROXY} proxy_read_timeout {read_timeout}; }} }}\n"
            ));
        }
        let listens: Vec<u16> = routes.iter().map(|(l, _)| *l).collect();
        Self::run(&servers, &listens)
    }

    /// A load balancer on `listen` spreading connections over `upstreams` in turn
    /// (round robin), as a service of several servers is deployed. A request with
    /// the cookie `kgnode=N` goes to the N-th upstream (from 0) instead, so a test
    /// can put a browser on the server it wants.
    pub fn balance(listen: u16, upstreams: &[u16]) -> Option<Nginx> {
        let members: String = upstreams.iter().map(|p| format!("server 127.0.0.1:{p};")).collect();
        let pinned: String = upstreams.iter().enumerate().map(|(n, p)| format!("{n} 127.0.0.1:{p};")).collect();
        let servers = format!(
            "upstream keygate {{ {members} }}
             map $cookie_kgnode $keygate {{ default keygate; {pinned} }}
             server {{ listen 127.0.0.1:{listen};
               location / {{ proxy_pass http://$keygate; {PROXY} proxy_read_timeout 1h; }} }}\n"
        );
        Self::run(&servers, &[listen])
    }

    fn run(servers: &str, listens: &[u16]) -> Option<Nginx> {
        let nginx = tool("nginx")?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let conf = format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log warn;
             events {{ worker_connections 256; }}
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
                    fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
                    {servers} }}"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for listen in listens {
            let mut up = false;
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", *listen)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            assert!(up, "nginx did not start: {log}");
        }
        Some(Nginx { child, _dir: dir })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
