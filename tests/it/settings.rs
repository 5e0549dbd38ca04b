//! Settings as an operator meets them: one name per setting as flag, variable and
//! TOML key (earlier flag and variable names still work), a sample file from
//! `keygate config example` that `serve` reads, errors that name the setting, and
//! a start-up summary.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn keygate() -> Command {
    Command::new(keygate_bin())
}

fn said(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn flags_variables_and_the_file_share_names_and_errors_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let example = keygate().args(["config", "example"]).output().unwrap();
    assert!(example.status.success());
    let sample = String::from_utf8(example.stdout).unwrap();
    for name in ["max_peers_per_room", "ping_interval", "resume_window", "tls_cert", "trusted_proxies", "turn_secret"] {
        assert!(sample.contains(&format!("# {name} = ")), "{name} missing from the sample");
        let help = said(&keygate().args(["serve", "--help"]).output().unwrap());
        let flag = format!("--{}", name.replace('_', "-"));
        let var = format!("KEYGATE_{}", name.to_ascii_uppercase());
        assert!(help.contains(&flag) && help.contains(&var), "{flag} / {var} missing from --help");
    }
    // The sample, uncommented, is a file serve reads.
    let uncommented: String = sample
        .lines()
        .filter_map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")))
        .filter(|l| {
            !l.starts_with("tls_")
                && !l.starts_with("turn_")
                && !l.starts_with("piv_")
                && !l.starts_with("room_creators")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let file = dir.path().join("keygate.toml");
    std::fs::write(&file, uncommented).unwrap();
    let check = keygate().args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", said(&check));
    assert!(said(&check).contains("origin https://meet.example.com"), "{}", said(&check));

    // A variable under the new name, and under the old one; a bad value is named.
    let env_check = |var: &str, value: &str| keygate().args(["config", "check"]).env(var, value).output().unwrap();
    assert!(env_check("KEYGATE_MAX_PEERS_PER_ROOM", "4").status.success());
    let old = env_check("KEYGATE_MAX_PEERS", "4");
    assert!(
        old.status.success() && said(&old).contains("KEYGATE_MAX_PEERS is now KEYGATE_MAX_PEERS_PER_ROOM"),
        "{}",
        said(&old)
    );
    let bad = env_check("KEYGATE_PING_INTERVAL", "soon");
    assert!(!bad.status.success() && said(&bad).contains("KEYGATE_PING_INTERVAL: expected seconds"), "{}", said(&bad));
    let range = env_check("KEYGATE_RESUME_WINDOW", "100000");
    assert!(!range.status.success() && said(&range).contains("KEYGATE_RESUME_WINDOW"), "{}", said(&range));
    std::fs::write(&file, "max_peers_per_room = \"eight\"\n").unwrap();
    let typed = keygate().args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert!(
        !typed.status.success() && said(&typed).contains("keygate.toml") && said(&typed).contains("max_peers_per_room"),
        "{}",
        said(&typed)
    );
    std::fs::write(&file, "max_peers = 4\n").unwrap();
    let unknown = keygate().args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert!(!unknown.status.success() && said(&unknown).contains("unknown field `max_peers`"), "{}", said(&unknown));

    // Flags: the new name, an old alias, a listen without an address, an origin without a scheme.
    let db = dir.path().join("k.db");
    let serve = |args: &[&str]| keygate().arg("serve").arg("--db").arg(&db).args(args).output().unwrap();
    let port = serve(&["--listen", "8080"]);
    assert!(
        said(&port).contains("--listen '8080': give an address with the port, e.g. 127.0.0.1:8080"),
        "{}",
        said(&port)
    );
    let origin = serve(&["--listen", "127.0.0.1:0", "--origin", "meet.example.com"]);
    assert!(
        said(&origin).contains("origin: 'meet.example.com' needs a scheme: https://meet.example.com"),
        "{}",
        said(&origin)
    );
}

#[test]
fn serve_says_what_it_runs_with() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let mut child = keygate()
        .args(["serve", "--listen", "0.0.0.0:0", "--max-peers", "5", "--db"])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let summary: Vec<String> = (0..10).map_while(|_| lines.next().and_then(Result::ok)).collect();
    // `systemctl reload` sends SIGHUP whatever the settings: without TLS it is noted, not fatal.
    let hup = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP ended the server");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let summary = summary.join("\n");
    assert!(summary.starts_with("keygate listening on http://0.0.0.0:"), "{summary}");
    for part in [
        "database  ",
        "k.db",
        "bus       off (one server)",
        "janus     off (calls are mesh only)",
        "methods   eth, piv, ssh, webauthn, webcrypto",
        "TLS       off",
        "TURN      off",
        "5 peers per room",
        "ping 25 s",
    ] {
        assert!(summary.contains(part), "{part} missing from:\n{summary}");
    }
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("without an origin") && log.contains("not a secure context"), "{log}");
    assert!(log.contains("SIGHUP: no TLS certificate to reload"), "{log}");
}
