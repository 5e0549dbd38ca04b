//! A test PKI made with the openssl command line, shaped like a YubiKey's: a root,
//! a device (f9) certificate under it, and per slot a key, a self-signed slot
//! certificate and an attestation signed by the device key.

use base64::Engine;
use keygate::identity::Identity;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestPiv {
    pub dir: PathBuf,
}

pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

pub fn genkey(dir: &Path, name: &str, kind: &str) {
    let out = format!("{name}.key");
    match kind {
        "rsa" => openssl(dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &out]),
        curve => openssl(
            dir,
            &["genpkey", "-algorithm", "EC", "-pkeyopt", &format!("ec_paramgen_curve:{curve}"), "-out", &out],
        ),
    };
}

impl TestPiv {
    /// A root and a device (f9) certificate under it.
    pub fn new(dir: &Path) -> TestPiv {
        genkey(dir, "root", "P-256");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "root.key",
                "-subj",
                "/CN=Test Attestation Root",
                "-days",
                "30",
                "-out",
                "root.pem",
            ],
        );
        genkey(dir, "device", "P-256");
        openssl(dir, &["req", "-new", "-key", "device.key", "-subj", "/CN=Test PIV Attestation", "-out", "device.csr"]);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "device.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-out",
                "device.pem",
            ],
        );
        TestPiv { dir: dir.to_owned() }
    }

    /// A slot key of `kind`, its self-signed slot certificate, and an attestation
    /// of it signed by the device key with the given policy bytes.
    pub fn slot(&self, name: &str, kind: &str, pin: u8, touch: u8) {
        self.slot_attested_by(name, kind, pin, touch, "device.pem", "device.key");
    }

    /// What an attacker with a YubiKey of its own can make: a software key `name`
    /// with a "slot attestation" signed by the genuinely attested slot key `by`,
    /// claiming whatever policy it likes.
    pub fn forged_slot(&self, name: &str, by: &str, pin: u8, touch: u8) {
        self.slot_attested_by(name, "P-256", pin, touch, &format!("{by}.att.pem"), &format!("{by}.key"));
    }

    fn slot_attested_by(&self, name: &str, kind: &str, pin: u8, touch: u8, ca: &str, ca_key: &str) {
        let d = &self.dir;
        genkey(d, name, kind);
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={name}"),
                "-days",
                "30",
                "-out",
                &format!("{name}.pem"),
            ],
        );
        let ext = format!(
            "[yk]\n1.3.6.1.4.1.41482.3.3 = DER:050403\n1.3.6.1.4.1.41482.3.7 = DER:0204009C4E68\n1.3.6.1.4.1.41482.3.8 = DER:{pin:02x}{touch:02x}\n1.3.6.1.4.1.41482.3.9 = DER:04\n"
        );
        std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                "/CN=YubiKey PIV Attestation 9a",
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                ca,
                "-CAkey",
                ca_key,
                "-CAcreateserial",
                "-days",
                "30",
                "-extfile",
                &format!("{name}.ext"),
                "-extensions",
                "yk",
                "-out",
                &format!("{name}.att.pem"),
            ],
        );
    }

    pub fn text(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap()
    }

    /// SHA-256 of `message` signed by the slot key, as a PIV card returns it.
    pub fn sign(&self, name: &str, message: &str) -> String {
        std::fs::write(self.dir.join("message"), message).unwrap();
        let sig = openssl(&self.dir, &["dgst", "-sha256", "-sign", &format!("{name}.key"), "message"]);
        base64::engine::general_purpose::STANDARD.encode(sig)
    }

    pub fn identity(&self, name: &str) -> Identity {
        Identity::parse(&self.text(&format!("{name}.pem"))).unwrap()
    }

    pub fn auth(&self, challenge: &Value, name: &str, attested_as: Option<&str>) -> Value {
        let mut auth = json!({
            "type": "auth", "method": "piv", "payload": challenge["payload"],
            "certificate": self.text(&format!("{name}.pem")),
            "signature": self.sign(name, &challenge["payload"].to_string()),
        });
        if let Some(att) = attested_as {
            auth["attestation"] =
                json!({"slot": self.text(&format!("{att}.att.pem")), "device": self.text("device.pem")});
        }
        auth
    }
}
