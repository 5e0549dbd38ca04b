//! Packaging: the systemd unit in dist/ passes `systemd-analyze verify` (with the
//! binary these tests built in place of /usr/local/bin/keygate), keeps its
//! hardening, and starts keygate the way the README says.

use crate::common::*;

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let Some(analyze) = tool("systemd-analyze") else { return };
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/keygate.service")).unwrap();
    for line in [
        "DynamicUser=yes",
        "StateDirectory=keygate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=65536",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing from dist/keygate.service");
    }
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("keygate.service");
    std::fs::write(&local, unit.replace("/usr/local/bin/keygate", &keygate_bin().display().to_string())).unwrap();
    let out = std::process::Command::new(analyze).arg("verify").arg(&local).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    // Its command line is one keygate takes.
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let mut args: Vec<String> = exec.split_whitespace().skip(1).map(str::to_owned).collect();
    let config = dir.path().join("keygate.toml");
    std::fs::write(&config, "").unwrap();
    args.iter_mut().for_each(|a| {
        if a == "/etc/keygate/keygate.toml" {
            *a = config.display().to_string();
        }
    });
    assert_eq!(args.first().map(String::as_str), Some("serve"));
    let config_at = args.iter().position(|a| a == "--config").unwrap();
    let check = std::process::Command::new(keygate_bin())
        .args(["config", "check", "--config", &args[config_at + 1]])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}
