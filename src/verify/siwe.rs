//! Sign-In with Ethereum (EIP-4361) messages: parsing to the specification,
//! formatting, and the time, domain and nonce checks of a verification.
//!
//! ```text
//! [scheme://]domain wants you to sign in with your Ethereum account:
//! 0xEIP55Address
//!
//! statement            (optional; then the line and the blank after it are absent,
//!                       leaving two blank lines)
//!
//! URI: uri
//! Version: 1
//! Chain ID: n
//! Nonce: ≥8 alphanumerics
//! Issued At: RFC 3339
//! [Expiration Time: RFC 3339]
//! [Not Before: RFC 3339]
//! [Request ID: pchar*]
//! [Resources:
//! - uri …]
//! ```

use crate::identity::EthAddress;
use chrono::{DateTime, FixedOffset, Utc};
use std::fmt;

const PREAMBLE: &str = " wants you to sign in with your Ethereum account:";

/// A field of the message, to name what was wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Scheme,
    Domain,
    Address,
    Statement,
    Uri,
    Version,
    ChainId,
    Nonce,
    IssuedAt,
    ExpirationTime,
    NotBefore,
    RequestId,
    Resources,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Scheme => "scheme",
            Field::Domain => "domain",
            Field::Address => "address",
            Field::Statement => "statement",
            Field::Uri => "URI",
            Field::Version => "version",
            Field::ChainId => "chain ID",
            Field::Nonce => "nonce",
            Field::IssuedAt => "issued-at",
            Field::ExpirationTime => "expiration time",
            Field::NotBefore => "not-before",
            Field::RequestId => "request ID",
            Field::Resources => "resources",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SiweError {
    #[error("not a Sign-In with Ethereum message: {0}")]
    Format(String),
    #[error("invalid {field}: {1}", field = .0.name())]
    Invalid(Field, String),
    #[error("the message has expired")]
    Expired,
    #[error("the message is not valid yet")]
    NotYetValid,
    #[error("the message is for domain {0}")]
    WrongDomain(String),
    #[error("the message carries another nonce")]
    WrongNonce,
}

/// A parsed, validated SIWE message. Times keep the text they were written as, so
/// formatting gives back the exact message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiweMessage {
    pub scheme: Option<String>,
    pub domain: String,
    pub address: EthAddress,
    pub statement: Option<String>,
    pub uri: String,
    pub version: String,
    pub chain_id: u64,
    pub nonce: String,
    pub issued_at: String,
    pub expiration_time: Option<String>,
    pub not_before: Option<String>,
    pub request_id: Option<String>,
    pub resources: Vec<String>,
}

fn invalid(field: Field, why: &str) -> SiweError {
    SiweError::Invalid(field, why.to_owned())
}

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~".contains(c)
}
fn is_sub_delim(c: char) -> bool {
    "!$&'()*+,;=".contains(c)
}
fn is_reserved(c: char) -> bool {
    ":/?#[]@".contains(c) || is_sub_delim(c)
}

/// Every `%` is followed by two hex digits.
fn pct_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, c)| {
        *c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// RFC 3986 authority: `[userinfo "@"] host [":" port]`.
fn valid_authority(s: &str) -> bool {
    if s.is_empty() || !pct_ok(s) {
        return false;
    }
    let (userinfo, hostport) = match s.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, s),
    };
    if userinfo.is_some_and(|u| !u.chars().all(|c| is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '%')) {
        return false;
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else { return false };
        if literal.is_empty() || !literal.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return false;
        }
        match after {
            "" => ("[]", None),
            p => match p.strip_prefix(':') {
                Some(port) => ("[]", Some(port)),
                None => return false,
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host_ok = host == "[]" || host.chars().all(|c| is_unreserved(c) || is_sub_delim(c) || c == '%');
    host_ok && !host.is_empty() && port.is_none_or(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// RFC 3986 URI: `scheme ":" hier-part [ "?" query ] [ "#" fragment ]`.
fn valid_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else { return false };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok || !pct_ok(rest) || !rest.chars().all(|c| is_unreserved(c) || is_reserved(c) || c == '%') {
        return false;
    }
    match rest.strip_prefix("//") {
        Some(after) => {
            let authority = after.split(['/', '?', '#']).next().unwrap_or("");
            authority.is_empty() || valid_authority(authority)
        }
        None => true,
    }
}

fn valid_time(s: &str) -> bool {
    DateTime::parse_from_rfc3339(s).is_ok() && s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T')
}

fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// What a SIWE message for a keygate challenge is built from.
pub struct ForChallenge<'a> {
    /// The server's origin: the message's URI, and its domain without the scheme.
    pub origin: &'a str,
    pub statement: String,
    /// The room (or the purpose's pseudo-room), as Request ID.
    pub request_id: &'a str,
    pub nonce: &'a str,
    pub issued_at: DateTime<Utc>,
    /// The expiration is this long after `issued_at`.
    pub lifetime: std::time::Duration,
    /// The DTLS fingerprint and media key the challenge vouches for, as resources.
    pub vouched: &'a crate::challenge::Vouched,
    pub chain_id: u64,
}

impl SiweMessage {
    /// The message a wallet at `address` signs for a challenge: the same nonce and
    /// issue time, an expiration at the end of the freshness window.
    pub fn for_challenge(address: EthAddress, c: ForChallenge<'_>) -> SiweMessage {
        use chrono::SecondsFormat::Millis;
        let expires = c.issued_at + chrono::Duration::from_std(c.lifetime).unwrap_or(chrono::Duration::zero());
        SiweMessage {
            scheme: None,
            domain: c.origin.split_once("://").map_or(c.origin, |(_, rest)| rest).trim_end_matches('/').to_owned(),
            address,
            statement: Some(c.statement),
            uri: c.origin.to_owned(),
            version: "1".into(),
            chain_id: c.chain_id,
            nonce: c.nonce.to_owned(),
            issued_at: c.issued_at.to_rfc3339_opts(Millis, true),
            expiration_time: Some(expires.to_rfc3339_opts(Millis, true)),
            not_before: None,
            request_id: Some(c.request_id.to_owned()),
            resources: (c.vouched.fingerprint.iter())
                .map(|f| format!("urn:keygate:dtls-fingerprint:{}", f.replace(' ', ":")))
                .chain(c.vouched.media_key.iter().map(|k| format!("urn:keygate:media-key:{k}")))
                .collect(),
        }
    }

    /// Checks every field against the specification (used after parsing, and for
    /// messages built from fields).
    pub fn validate(&self) -> Result<(), SiweError> {
        if let Some(s) = &self.scheme {
            let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if !ok {
                return Err(invalid(Field::Scheme, "not an RFC 3986 scheme"));
            }
        }
        if !valid_authority(&self.domain) {
            return Err(invalid(Field::Domain, "not an RFC 3986 authority"));
        }
        if let Some(st) = &self.statement {
            if !st.chars().all(|c| is_reserved(c) || is_unreserved(c) || c == ' ') {
                return Err(invalid(Field::Statement, "may hold only URI characters and spaces, on one line"));
            }
        }
        if !valid_uri(&self.uri) {
            return Err(invalid(Field::Uri, "not an RFC 3986 URI"));
        }
        if self.version != "1" {
            return Err(invalid(Field::Version, "must be 1"));
        }
        if self.nonce.len() < 8 || !self.nonce.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(Field::Nonce, "must be at least 8 letters and digits"));
        }
        for (field, time) in [
            (Field::IssuedAt, Some(&self.issued_at)),
            (Field::ExpirationTime, self.expiration_time.as_ref()),
            (Field::NotBefore, self.not_before.as_ref()),
        ] {
            if time.is_some_and(|t| !valid_time(t)) {
                return Err(invalid(field, "not an RFC 3339 date-time"));
            }
        }
        if let Some(id) = &self.request_id {
            if !id.chars().all(|c| is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@' || c == '%')
                || !pct_ok(id)
            {
                return Err(invalid(Field::RequestId, "may hold only URI path characters"));
            }
        }
        if self.resources.iter().any(|r| !valid_uri(r)) {
            return Err(invalid(Field::Resources, "every resource must be an RFC 3986 URI"));
        }
        Ok(())
    }

    /// Parses a message, strictly: fields in order, nothing missing, nothing extra.
    pub fn parse(text: &str) -> Result<SiweMessage, SiweError> {
        let mut lines = text.split('\n');
        let mut next = |what: &str| lines.next().ok_or_else(|| SiweError::Format(format!("missing {what}")));
        let first = next("the first line")?;
        let prefix = first
            .strip_suffix(PREAMBLE)
            .ok_or_else(|| SiweError::Format(format!("the first line must end with '{PREAMBLE}'")))?;
        let (scheme, domain) = match prefix.split_once("://") {
            Some((s, d)) => (Some(s.to_owned()), d.to_owned()),
            None => (None, prefix.to_owned()),
        };
        if domain.is_empty() {
            return Err(invalid(Field::Domain, "missing"));
        }
        let address_text = next("the address")?;
        let address = parse_checksummed(address_text)?;
        if !next("a blank line")?.is_empty() {
            return Err(SiweError::Format("a blank line must follow the address".into()));
        }
        let line = next("the statement or a blank line")?;
        let statement = if line.is_empty() {
            None
        } else {
            if !next("a blank line")?.is_empty() {
                return Err(invalid(Field::Statement, "must be one line followed by a blank line"));
            }
            Some(line.to_owned())
        };
        let line = next("the URI")?;
        let take = |line: &str, tag: &str, field: Field| -> Result<String, SiweError> {
            line.strip_prefix(tag).map(str::to_owned).ok_or_else(|| invalid(field, &format!("expected '{tag}…'")))
        };
        let uri = take(line, "URI: ", Field::Uri)?;
        let version = take(next("the version")?, "Version: ", Field::Version)?;
        let chain = take(next("the chain ID")?, "Chain ID: ", Field::ChainId)?;
        let chain_id = chain
            .parse::<u64>()
            .ok()
            .filter(|n| chain.chars().all(|c| c.is_ascii_digit()) && n.to_string() == chain)
            .ok_or_else(|| invalid(Field::ChainId, "must be a number without leading zeros"))?;
        let nonce = take(next("the nonce")?, "Nonce: ", Field::Nonce)?;
        let issued_at = take(next("issued-at")?, "Issued At: ", Field::IssuedAt)?;
        let optional = |tag: &str, lines_peek: &mut std::iter::Peekable<std::str::Split<'_, char>>| {
            let hit = lines_peek.peek().and_then(|l| l.strip_prefix(tag)).map(str::to_owned);
            if hit.is_some() {
                lines_peek.next();
            }
            hit
        };
        let mut rest = lines.peekable();
        let expiration_time = optional("Expiration Time: ", &mut rest);
        let not_before = optional("Not Before: ", &mut rest);
        let request_id = optional("Request ID: ", &mut rest);
        let mut resources = Vec::new();
        if rest.peek() == Some(&"Resources:") {
            rest.next();
            while let Some(r) = rest.peek().and_then(|l| l.strip_prefix("- ")) {
                resources.push(r.to_owned());
                rest.next();
            }
            // A message without resources has no Resources: line, so each message
            // has one text.
            if resources.is_empty() {
                return Err(invalid(Field::Resources, "a Resources: line must be followed by at least one resource"));
            }
        }
        if let Some(extra) = rest.next() {
            return Err(SiweError::Format(format!("unexpected line '{extra}' (fields out of order or unknown)")));
        }
        let msg = SiweMessage {
            scheme,
            domain,
            address,
            statement,
            uri,
            version,
            chain_id,
            nonce,
            issued_at,
            expiration_time,
            not_before,
            request_id,
            resources,
        };
        msg.validate()?;
        Ok(msg)
    }

    /// Checks the message at `now` and, when given, against the expected domain and
    /// nonce. The signature is checked separately ([`super::eth`]).
    pub fn check(&self, now: DateTime<Utc>, domain: Option<&str>, nonce: Option<&str>) -> Result<(), SiweError> {
        let at = |t: &Option<String>| t.as_deref().and_then(parse_time);
        if parse_time(&self.issued_at).is_none() {
            return Err(invalid(Field::IssuedAt, "not a valid date-time"));
        }
        if self.expiration_time.is_some() && at(&self.expiration_time).is_none() {
            return Err(invalid(Field::ExpirationTime, "not a valid date-time"));
        }
        if self.not_before.is_some() && at(&self.not_before).is_none() {
            return Err(invalid(Field::NotBefore, "not a valid date-time"));
        }
        if at(&self.expiration_time).is_some_and(|t| t <= now) {
            return Err(SiweError::Expired);
        }
        if at(&self.not_before).is_some_and(|t| t > now) {
            return Err(SiweError::NotYetValid);
        }
        if domain.is_some_and(|d| d != self.domain) {
            return Err(SiweError::WrongDomain(self.domain.clone()));
        }
        if nonce.is_some_and(|n| n != self.nonce) {
            return Err(SiweError::WrongNonce);
        }
        Ok(())
    }

    /// The first field in which `self` and `other` differ, if any.
    pub fn first_difference(&self, other: &SiweMessage) -> Option<Field> {
        [
            (Field::Scheme, self.scheme != other.scheme),
            (Field::Domain, self.domain != other.domain),
            (Field::Address, self.address != other.address),
            (Field::Statement, self.statement != other.statement),
            (Field::Uri, self.uri != other.uri),
            (Field::Version, self.version != other.version),
            (Field::ChainId, self.chain_id != other.chain_id),
            (Field::Nonce, self.nonce != other.nonce),
            (Field::IssuedAt, self.issued_at != other.issued_at),
            (Field::ExpirationTime, self.expiration_time != other.expiration_time),
            (Field::NotBefore, self.not_before != other.not_before),
            (Field::RequestId, self.request_id != other.request_id),
            (Field::Resources, self.resources != other.resources),
        ]
        .into_iter()
        .find_map(|(f, differs)| differs.then_some(f))
    }
}

/// SIWE requires the EIP-55 checksummed form of the address.
fn parse_checksummed(text: &str) -> Result<EthAddress, SiweError> {
    let address = EthAddress::parse(text).map_err(|e| invalid(Field::Address, &e.to_string()))?;
    if address.checksummed() != text {
        return Err(invalid(Field::Address, "must be written in EIP-55 checksummed form"));
    }
    Ok(address)
}

impl fmt::Display for SiweMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.scheme {
            write!(f, "{s}://")?;
        }
        write!(f, "{}{PREAMBLE}\n{}\n\n", self.domain, self.address)?;
        if let Some(st) = &self.statement {
            writeln!(f, "{st}")?;
        }
        write!(
            f,
            "\nURI: {}\nVersion: {}\nChain ID: {}\nNonce: {}\nIssued At: {}",
            self.uri, self.version, self.chain_id, self.nonce, self.issued_at
        )?;
        if let Some(t) = &self.expiration_time {
            write!(f, "\nExpiration Time: {t}")?;
        }
        if let Some(t) = &self.not_before {
            write!(f, "\nNot Before: {t}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, "\nRequest ID: {id}")?;
        }
        if !self.resources.is_empty() {
            write!(f, "\nResources:")?;
            for r in &self.resources {
                write!(f, "\n- {r}")?;
            }
        }
        Ok(())
    }
}

/// Builds a message from the fields of a JSON object (as the SIWE test suite
/// writes them), validating each.
pub fn from_fields(fields: &serde_json::Value) -> Result<SiweMessage, SiweError> {
    let text = |k: &str| fields.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let required = |k: &str, f: Field| text(k).ok_or_else(|| invalid(f, "missing"));
    let chain_id = fields
        .get("chainId")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| invalid(Field::ChainId, "missing or not a number"))?;
    let msg = SiweMessage {
        scheme: text("scheme"),
        domain: required("domain", Field::Domain)?,
        address: parse_checksummed(&required("address", Field::Address)?)?,
        statement: text("statement"),
        uri: required("uri", Field::Uri)?,
        version: required("version", Field::Version)?,
        chain_id,
        nonce: required("nonce", Field::Nonce)?,
        issued_at: required("issuedAt", Field::IssuedAt)?,
        expiration_time: text("expirationTime"),
        not_before: text("notBefore"),
        request_id: text("requestId"),
        resources: fields
            .get("resources")
            .and_then(|r| r.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    };
    msg.validate()?;
    Ok(msg)
}
