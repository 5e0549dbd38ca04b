//! Signing challenges with a YubiKey's PIV application, through PC/SC (the
//! `yubikey` crate): the slot's certificate names the key, the card signs SHA-256
//! of the challenge text after the PIN, and, on request, the card attests that the
//! key was generated on it (slot attestation + the f9 device certificate).
//!
//! ```text
//! keygate (this)                      pcscd ── YubiKey PIV
//!   SELECT PIV, GET VERSION, GET SERIAL  ─▶
//!   GET DATA slot certificate            ─▶  (chained with GET RESPONSE past 256 bytes)
//!   VERIFY PIN                           ─▶  63 Cx: x tries left · 69 83: blocked
//!   GENERAL AUTHENTICATE(SHA-256(text))  ─▶  signature (touch, if the slot asks)
//!   ATTEST slot, GET DATA f9             ─▶  --attest only
//! ```
//!
//! The PIN comes from `KEYGATE_PIV_PIN` or is asked on the terminal without echo;
//! it is never logged and is dropped (zeroized by the crate) after use.

#[cfg(feature = "pcsc")]
mod card;
#[cfg(feature = "pcsc")]
pub use card::{identity, proof};
#[cfg(feature = "pcsc")]
pub use yubikey::piv::SlotId;

/// The PIV slots, by name (this build has no PC/SC: they exist for the command line).
#[cfg(not(feature = "pcsc"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotId {
    Authentication,
    Signature,
    KeyManagement,
    CardAuthentication,
}

/// A build without the `pcsc` feature cannot reach a card.
#[cfg(not(feature = "pcsc"))]
pub fn identity(_slot: SlotId) -> Result<(crate::identity::Identity, String), PivError> {
    Err(PivError::NotBuilt)
}

/// A build without the `pcsc` feature cannot reach a card.
#[cfg(not(feature = "pcsc"))]
pub fn proof(_source: PivSource, _text: &[u8]) -> Result<serde_json::Value, PivError> {
    Err(PivError::NotBuilt)
}

/// Which slot, and whether to send the card's attestation.
#[derive(Clone, Copy, Debug)]
pub struct PivSource {
    pub slot: SlotId,
    pub attest: bool,
}

/// Parses a slot name as people write it: `9a` (authentication) or `9c` (signature),
/// also `9d`, `9e`.
pub fn parse_slot(text: &str) -> Result<SlotId, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "9a" => Ok(SlotId::Authentication),
        "9c" => Ok(SlotId::Signature),
        "9d" => Ok(SlotId::KeyManagement),
        "9e" => Ok(SlotId::CardAuthentication),
        other => Err(format!("unknown PIV slot '{other}': use 9a (authentication), 9c (signature), 9d or 9e")),
    }
}

/// What went wrong, phrased for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum PivError {
    #[error("the smart card service is not running: start pcscd (e.g. `sudo systemctl start pcscd`)")]
    NoService,
    #[error("no smart card reader found: insert your YubiKey")]
    NoReader,
    #[error("no YubiKey with a PIV application found in any reader: insert it (or close an app holding it)")]
    NoCard,
    #[error("several YubiKeys are connected: leave only the one to sign with")]
    SeveralCards,
    #[error("slot {0} holds no certificate: generate a key and certificate in it first (e.g. `ykman piv keys generate` and `ykman piv certificates generate`)")]
    NoCertificate(String),
    #[error("slot {0}: {1}")]
    UnsupportedKey(String, String),
    #[error("wrong PIN: {0} {tries} left before the PIN is blocked", tries = if *.0 == 1 { "try" } else { "tries" })]
    WrongPin(u8),
    #[error("the PIN is blocked (no tries left): unblock it with the PUK (`ykman piv access unblock-pin`)")]
    PinBlocked,
    #[error("no PIN given: set KEYGATE_PIV_PIN or run keygate in a terminal")]
    NoPin,
    #[error("the card did not sign: if the key needs a touch, touch the YubiKey while it blinks (it waits about 15 s) and try again")]
    NotSigned,
    #[error(
        "this YubiKey cannot attest slot {0} (attestation needs firmware 4.3 or later and a key generated on the card)"
    )]
    NoAttestation(String),
    #[error("the smart card failed: {0}")]
    Card(String),
    #[error("this keygate was built without PC/SC (cargo feature `pcsc`): build it with the default features to use a YubiKey")]
    NotBuilt,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_parse_as_people_write_them() {
        assert!(matches!(parse_slot("9a"), Ok(SlotId::Authentication)));
        assert!(matches!(parse_slot("9C"), Ok(SlotId::Signature)));
        assert!(parse_slot("82").is_err_and(|e| e.contains("9a (authentication)")));
    }
}
