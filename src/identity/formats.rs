//! Every key format a host can paste, parsed into an [`Identity`].
//!
//! Accepted: a DID, a JWK, an OpenSSH public-key line (also whole `authorized_keys`
//! and `allowed_signers` files), a PEM public key or X.509 certificate, and an
//! Ethereum address. Anything else is refused with [`ParseError::Unrecognized`],
//! whose message lists these formats.

use super::ssh_wire::{parse_public_key_blob, SSH_KEY_TYPES};
use super::{did, rsa_from_parts, EthAddress, Identity, PublicKey};
use base64::Engine;
use chrono::{DateTime, Utc};

/// Shown to whoever pastes something keygate cannot read.
pub const ACCEPTED_FORMATS: &str = "a DID (did:key:z… or did:pkh:eip155:1:0x…), a JWK \
(EC P-256/P-384, OKP Ed25519, RSA), a COSE key (hex or base64url), an OpenSSH public key line (ssh-ed25519, \
ecdsa-sha2-nistp256/384, ssh-rsa, sk-ssh-ed25519@openssh.com, \
sk-ecdsa-sha2-nistp256@openssh.com; whole authorized_keys or allowed_signers files too), \
a PEM public key or X.509 certificate, or an Ethereum address (0x…)";

/// Why a key could not be read. The messages are meant for the person who pasted it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("no key given")]
    Empty,
    #[error("not a key format keygate understands; paste {ACCEPTED_FORMATS}")]
    Unrecognized,
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error(
        "this is a private key; send only the public key (for a JWK, drop the \"d\" member) — \
         the private key must never leave your device"
    )]
    PrivateKey,
    #[error("{0} keys given where one was expected (line {1} is the second)")]
    Several(usize, usize),
    #[error("too long for a key: {0} bytes where keygate reads at most {1}")]
    TooLong(usize, usize),
}

/// The longest text read as one key (a line, a PEM block or a JWK), checked before
/// anything is decoded: an RSA-8192 certificate in PEM is about 3 KB, so 16 KiB
/// leaves room for any real key and bounds what a hostile one costs.
pub const MAX_KEY_TEXT: usize = 16 * 1024;

fn bounded(text: &str) -> Result<&str, ParseError> {
    if text.len() > MAX_KEY_TEXT {
        return Err(ParseError::TooLong(text.len(), MAX_KEY_TEXT));
    }
    Ok(text)
}

/// One key read from a line or block of text, with what the text said about it.
#[derive(Clone, Debug)]
pub struct KeyLine {
    pub identity: Identity,
    /// The comment of an OpenSSH line or the principals of an allowed_signers line:
    /// a helpful default label.
    pub comment: Option<String>,
    /// `namespaces="…"` of an allowed_signers line, when present.
    pub namespaces: Option<Vec<String>>,
    /// `valid-after="…"` and `valid-before="…"` of an allowed_signers line: the key
    /// is accepted only between these instants.
    pub valid: Validity,
    /// Which format the key arrived in ("ssh", "jwk", "pem", "did", "eth").
    pub format: &'static str,
}

impl KeyLine {
    fn bare(identity: Identity, format: &'static str) -> Self {
        KeyLine { identity, comment: None, namespaces: None, valid: Validity::default(), format }
    }
}

/// Parses exactly one key.
pub(crate) fn parse_one(text: &str) -> Result<KeyLine, ParseError> {
    let mut keys = parse_key_list(bounded(text)?).into_iter();
    match (keys.next(), keys.next()) {
        (None, _) => Err(ParseError::Empty),
        (Some((_, first)), None) => first,
        (Some(_), Some((second_line, _))) => Err(ParseError::Several(2 + keys.count(), second_line)),
    }
}

/// Parses text that may hold many keys: a whole authorized_keys or allowed_signers file,
/// or one key per line in any format, where a PEM block or a JWK spread over several
/// lines counts as one. Returns every key found with its 1-based line number (a
/// block's first line); comments and blank lines are skipped, and a bad line is
/// reported without affecting the others. See [`KeyListReader`] for text that arrives
/// in pieces.
pub fn parse_key_list(text: &str) -> Vec<(usize, Result<KeyLine, ParseError>)> {
    // One PEM block amid other text (as `openssl x509 -text` prints it) is one key.
    if text.matches("-----BEGIN ").count() == 1 && !text.trim_start().starts_with("-----BEGIN ") {
        if let Ok(key) = bounded(text.trim()).and_then(parse_pem) {
            let first_line = text.lines().position(|l| !l.trim().is_empty()).unwrap_or(0) + 1;
            return vec![(first_line, Ok(key))];
        }
    }
    let mut reader = KeyListReader::default();
    let mut keys = Vec::new();
    reader.feed(text.as_bytes(), &mut keys);
    reader.finish(&mut keys);
    keys
}

/// Reads a key list as it arrives (a file read in chunks, an upload as it streams),
/// one line at a time, with memory bounded by [`MAX_KEY_TEXT`] whatever the list's
/// length: the same rules as [`parse_key_list`], which uses it.
#[derive(Default)]
pub struct KeyListReader {
    /// Lines completed so far.
    line: usize,
    /// The line being read.
    partial: Vec<u8>,
    /// The line being read is already longer than any key.
    overlong: bool,
    /// A PEM block or a multi-line JWK being gathered.
    block: Option<Block>,
}

struct Block {
    first_line: usize,
    text: String,
    /// JSON: `{` minus `}` so far; `None` for PEM, which ends at its END line.
    depth: Option<i64>,
}

type Found = Vec<(usize, Result<KeyLine, ParseError>)>;

impl KeyListReader {
    /// Reads `bytes`, adding every key (or bad line) they complete to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Found) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            self.take(&bytes[..end]);
            let line = std::mem::take(&mut self.partial);
            self.complete(&line, out);
            bytes = &bytes[end + 1..];
        }
        self.take(bytes);
    }

    /// The end of the text: the last line, and a block left open.
    pub fn finish(mut self, out: &mut Found) {
        if !self.partial.is_empty() || self.overlong {
            let line = std::mem::take(&mut self.partial);
            self.complete(&line, out);
        }
        if let Some(block) = self.block.take() {
            let what = if block.depth.is_some() { "the JWK's closing }" } else { "the PEM block's END line" };
            out.push((block.first_line, Err(ParseError::InvalidKey(format!("the text ended before {what}")))));
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > MAX_KEY_TEXT {
            self.overlong = true;
            self.partial = Vec::new();
        }
    }

    fn complete(&mut self, raw: &[u8], out: &mut Found) {
        self.line += 1;
        let n = self.line;
        let overlong = std::mem::take(&mut self.overlong);
        let Some(text) = std::str::from_utf8(raw).ok().filter(|_| !overlong) else {
            // The line, or the block it is part of, is named; reading goes on with
            // the next line.
            let error = if overlong {
                ParseError::TooLong(MAX_KEY_TEXT + 1, MAX_KEY_TEXT)
            } else {
                ParseError::InvalidKey("this line is not UTF-8 text".into())
            };
            let at = self.block.take().map_or(n, |b| b.first_line);
            return out.push((at, Err(error)));
        };
        let text = if n == 1 { text.trim_start_matches('\u{feff}') } else { text };
        let line = text.trim();
        if let Some(block) = &mut self.block {
            block.text.push_str(line);
            block.text.push('\n');
            let ended = match &mut block.depth {
                Some(depth) => {
                    *depth += braces(line);
                    *depth <= 0
                }
                None => line.starts_with("-----END "),
            };
            if block.text.len() > MAX_KEY_TEXT {
                // No key is this long: report the block and read on from the next line.
                let first = block.first_line;
                self.block = None;
                return out.push((first, Err(ParseError::TooLong(MAX_KEY_TEXT + 1, MAX_KEY_TEXT))));
            }
            if ended {
                let Some(block) = self.block.take() else { return };
                let parsed = if block.depth.is_some() { parse_jwk_text(&block.text) } else { parse_pem(&block.text) };
                out.push((block.first_line, parsed));
            }
            return;
        }
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        if line.starts_with("-----BEGIN ") {
            self.block = Some(Block { first_line: n, text: format!("{line}\n"), depth: None });
            return;
        }
        if line.starts_with('{') {
            let depth = braces(line);
            if depth > 0 {
                self.block = Some(Block { first_line: n, text: format!("{line}\n"), depth: Some(depth) });
                return;
            }
            return out.push((n, bounded(line).and_then(parse_jwk_text)));
        }
        out.push((n, bounded(line).and_then(parse_line)));
    }
}

/// `{` minus `}` on a line of JSON (a JWK's values are base64url, without braces).
fn braces(line: &str) -> i64 {
    line.bytes().map(|b| i64::from(b == b'{') - i64::from(b == b'}')).sum()
}

fn parse_line(line: &str) -> Result<KeyLine, ParseError> {
    // A DID or an address may be followed by a comment, as `keygate room export` writes.
    let (first, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let comment = Some(rest.trim()).filter(|c| !c.is_empty()).map(str::to_owned);
    if first.starts_with("did:") {
        return did::parse(first).map(|id| KeyLine { comment, ..KeyLine::bare(id, "did") });
    }
    if first.starts_with("0x") || first.starts_with("0X") {
        return EthAddress::parse(first).map(|a| KeyLine { comment, ..KeyLine::bare(Identity::from_eth(a), "eth") });
    }
    if let Some(cbor) = cose_bytes(line) {
        let (key, _, _) = super::cose::from_cbor(&cbor)?;
        return Ok(KeyLine::bare(Identity::from_key(key), "cose"));
    }
    parse_ssh_line(line)
}

/// A single token of hex or base64url that decodes to a CBOR map: a COSE key, as
/// WebAuthn libraries print credential public keys.
fn cose_bytes(token: &str) -> Option<Vec<u8>> {
    if token.contains(char::is_whitespace) || token.len() < 40 {
        return None;
    }
    let hex_ok = token.len() % 2 == 0 && token.bytes().all(|b| b.is_ascii_hexdigit());
    let bytes = if hex_ok {
        (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?
    };
    // CBOR major type 5 (map) with a small entry count.
    matches!(bytes.first(), Some(0xa1..=0xb7)).then_some(bytes)
}

/// Splits on white space, keeping double-quoted runs (`command="a b"`) whole.
fn ssh_tokens(line: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match (c, start) {
            ('"', _) => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            (c, Some(s)) if c.is_whitespace() && !quoted => {
                tokens.push(&line[s..i]);
                start = None;
            }
            (c, None) if !c.is_whitespace() => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        tokens.push(&line[s..]);
    }
    tokens
}

/// An OpenSSH public key line: `[principals] [options] type base64 [comment]`.
fn parse_ssh_line(line: &str) -> Result<KeyLine, ParseError> {
    let tokens = ssh_tokens(line);
    let Some(at) = tokens.iter().position(|t| SSH_KEY_TYPES.contains(t)) else {
        if tokens.iter().any(|t| t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-")) {
            return Err(ParseError::Unsupported(format!(
                "SSH key type in '{}'",
                line.chars().take(40).collect::<String>()
            )));
        }
        return Err(ParseError::Unrecognized);
    };
    let named_type = tokens[at];
    let blob = tokens
        .get(at + 1)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or_else(|| ParseError::InvalidKey(format!("{named_type} key data is not base64")))?;
    let (kind, key) = parse_public_key_blob(&blob)?;
    if kind != named_type {
        return Err(ParseError::InvalidKey(format!("the line says {named_type} but the key data is {kind}")));
    }
    let before = &tokens[..at];
    let option = |name: &str| {
        before.iter().find_map(|t| {
            split_options(t).into_iter().find_map(|opt| opt.strip_prefix(name).map(|v| v.trim_matches('"').to_owned()))
        })
    };
    let namespaces = option("namespaces=").map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>());
    let valid = Validity {
        after: option("valid-after=").map(|v| ssh_time("valid-after", &v)).transpose()?,
        before: option("valid-before=").map(|v| ssh_time("valid-before", &v)).transpose()?,
    };
    // allowed_signers: the first token is a principals list unless it is an option.
    let principals = before.first().filter(|t| !t.contains('=') && !is_bare_option(t)).map(|t| t.to_string());
    let trailing = tokens[at + 2..].join(" ");
    let comment = (!trailing.is_empty()).then_some(trailing).or(principals);
    Ok(KeyLine { identity: Identity::from_key(key), comment, namespaces, valid, format: "ssh" })
}

/// When a listed key may be used: allowed_signers `valid-after` / `valid-before`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validity {
    pub after: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
}

impl Validity {
    /// Why the key may not be used at `now`, if it may not.
    pub fn refuses(&self, now: DateTime<Utc>) -> Option<String> {
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match (self.after, self.before) {
            (Some(after), _) if now < after => Some(format!("is valid only from {}", at(after))),
            (_, Some(before)) if now >= before => Some(format!("expired at {}", at(before))),
            _ => None,
        }
    }
}

/// An allowed_signers time, as OpenSSH reads it: `YYYYMMDD[Z]` or
/// `YYYYMMDDHHMM[SS][Z]`, in UTC with `Z` and in this machine's time zone without.
pub(crate) fn ssh_time(option: &str, text: &str) -> Result<DateTime<Utc>, ParseError> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let bad =
        || ParseError::InvalidKey(format!("{option}=\"{text}\" is not a time (YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z])"));
    let (digits, utc) = match text.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (text, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let field = |range: std::ops::Range<usize>| digits.get(range).and_then(|d| d.parse::<u32>().ok());
    let date = NaiveDate::from_ymd_opt(
        field(0..4).ok_or_else(bad)? as i32,
        field(4..6).ok_or_else(bad)?,
        field(6..8).ok_or_else(bad)?,
    )
    .ok_or_else(bad)?;
    let (h, m, sec) = match digits.len() {
        8 => (0, 0, 0),
        12 => (field(8..10).ok_or_else(bad)?, field(10..12).ok_or_else(bad)?, 0),
        14 => (field(8..10).ok_or_else(bad)?, field(10..12).ok_or_else(bad)?, field(12..14).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    let naive: NaiveDateTime = date.and_hms_opt(h, m, sec).ok_or_else(bad)?;
    if utc {
        return Ok(Utc.from_utc_datetime(&naive));
    }
    // A local time that a clock change skips or repeats takes its earlier reading.
    chrono::Local.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc)).ok_or_else(bad)
}

/// Splits an options field (`a,b="x,y",c`) on commas outside double quotes.
fn split_options(field: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in field.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&field[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&field[start..]);
    out
}

fn is_bare_option(t: &str) -> bool {
    matches!(
        t.split(',').next().unwrap_or(""),
        "cert-authority"
            | "restrict"
            | "no-pty"
            | "no-agent-forwarding"
            | "no-port-forwarding"
            | "no-user-rc"
            | "no-X11-forwarding"
            | "no-touch-required"
            | "verify-required"
    )
}

fn b64url(field: &str, v: Option<&serde_json::Value>) -> Result<Vec<u8>, ParseError> {
    let s = v.and_then(|v| v.as_str()).ok_or_else(|| ParseError::InvalidKey(format!("JWK has no \"{field}\"")))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| ParseError::InvalidKey(format!("JWK \"{field}\" is not base64url")))
}

fn parse_jwk_text(text: &str) -> Result<KeyLine, ParseError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ParseError::InvalidKey(format!("JWK is not valid JSON: {e}")))?;
    parse_jwk(&value).map(|(key, _)| KeyLine::bare(Identity::from_key(key), "jwk"))
}

/// Parses a public JWK. Returns the key and the bytes a signature verifier takes for
/// it: the uncompressed SEC1 point for EC, the raw key for OKP, PKCS#1 DER for RSA.
/// A JWK that carries private material is refused.
pub fn parse_jwk(jwk: &serde_json::Value) -> Result<(PublicKey, Vec<u8>), ParseError> {
    let obj = jwk.as_object().ok_or_else(|| ParseError::InvalidKey("a JWK is a JSON object".into()))?;
    if ["d", "p", "q", "dp", "dq", "qi"].iter().any(|k| obj.contains_key(*k)) {
        return Err(ParseError::PrivateKey);
    }
    let kty = obj.get("kty").and_then(|v| v.as_str()).unwrap_or("");
    let crv = obj.get("crv").and_then(|v| v.as_str()).unwrap_or("");
    match (kty, crv) {
        ("EC", "P-256" | "P-384") => {
            let size = if crv == "P-256" { 32 } else { 48 };
            let (x, y) = (b64url("x", obj.get("x"))?, b64url("y", obj.get("y"))?);
            if x.len() != size || y.len() != size {
                return Err(ParseError::InvalidKey(format!("{crv} JWK coordinates must be {size} bytes")));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let key = if size == 32 { PublicKey::p256_from_sec1(&point)? } else { PublicKey::p384_from_sec1(&point)? };
            Ok((key, point))
        }
        ("OKP", "Ed25519") => {
            let x = b64url("x", obj.get("x"))?;
            let raw: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| ParseError::InvalidKey("Ed25519 JWK \"x\" must be 32 bytes".into()))?;
            Ok((PublicKey::Ed25519(raw), x))
        }
        ("RSA", _) => {
            let key = rsa_from_parts(&b64url("n", obj.get("n"))?, &b64url("e", obj.get("e"))?)?;
            let der = key.key_bytes().to_vec();
            Ok((key, der))
        }
        ("EC", other) | ("OKP", other) => Err(ParseError::Unsupported(format!("JWK curve '{other}'"))),
        (other, _) => Err(ParseError::Unsupported(format!("JWK key type '{other}'"))),
    }
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

fn parse_pem(text: &str) -> Result<KeyLine, ParseError> {
    use spki::der::{Decode, DecodePem};
    let label = text.split("-----BEGIN ").nth(1).and_then(|rest| rest.split("-----").next()).unwrap_or("");
    if text.matches("-----BEGIN ").count() > 1 {
        return Err(ParseError::InvalidKey("several PEM blocks given; paste one public key or certificate".into()));
    }
    let start = text.find("-----BEGIN ").unwrap_or(0);
    let block = &text[start..];
    let key = match label {
        "PUBLIC KEY" => {
            let spki = spki::SubjectPublicKeyInfoOwned::from_pem(block)
                .map_err(|e| ParseError::InvalidKey(format!("PEM public key: {e}")))?;
            key_from_spki(&spki)?
        }
        "CERTIFICATE" => {
            let cert = x509_cert::Certificate::from_pem(block)
                .map_err(|e| ParseError::InvalidKey(format!("X.509 certificate: {e}")))?;
            let spki_der = spki::der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
                .map_err(|e| ParseError::InvalidKey(format!("X.509 certificate: {e}")))?;
            let spki = spki::SubjectPublicKeyInfoOwned::from_der(&spki_der)
                .map_err(|e| ParseError::InvalidKey(format!("X.509 certificate key: {e}")))?;
            key_from_spki(&spki)?
        }
        "RSA PUBLIC KEY" => {
            let (_, der) = pem_rfc7468_decode(block)?;
            PublicKey::rsa_from_pkcs1(&der)?
        }
        l if l.contains("PRIVATE KEY") => return Err(ParseError::PrivateKey),
        other => return Err(ParseError::Unsupported(format!("PEM block '{other}' (use PUBLIC KEY or CERTIFICATE)"))),
    };
    Ok(KeyLine::bare(Identity::from_key(key), "pem"))
}

fn pem_rfc7468_decode(block: &str) -> Result<(String, Vec<u8>), ParseError> {
    let body: String = block.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().concat();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| ParseError::InvalidKey("PEM body is not base64".into()))?;
    Ok((String::new(), der))
}

/// The key inside a SubjectPublicKeyInfo (as in a PEM public key or a certificate).
pub fn key_from_spki(spki: &spki::SubjectPublicKeyInfoOwned) -> Result<PublicKey, ParseError> {
    let oid = spki.algorithm.oid.to_string();
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| ParseError::InvalidKey("public key bit string is not whole bytes".into()))?;
    match oid.as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
                .map(|o| o.to_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => PublicKey::p256_from_sec1(bits),
                OID_P384 => PublicKey::p384_from_sec1(bits),
                other => Err(ParseError::Unsupported(format!("EC curve {other}"))),
            }
        }
        OID_ED25519 => Ok(PublicKey::Ed25519(
            bits.try_into().map_err(|_| ParseError::InvalidKey("Ed25519 key must be 32 bytes".into()))?,
        )),
        OID_RSA => PublicKey::rsa_from_pkcs1(bits),
        other => Err(ParseError::Unsupported(format!("public key algorithm {other}"))),
    }
}
