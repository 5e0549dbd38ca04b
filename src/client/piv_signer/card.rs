//! The card itself, through the `yubikey` crate (the `pcsc` cargo feature).

use super::{PivError, PivSource, SlotId};
use crate::identity::{Identity, PublicKey};
use base64::Engine;
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode, EncodePem};
use yubikey::piv::AlgorithmId;
use yubikey::{Certificate, YubiKey};

fn slot_name(slot: SlotId) -> String {
    format!("{:02x}", u8::from(slot))
}

fn card_error(e: yubikey::Error) -> PivError {
    match e {
        yubikey::Error::PcscError { inner: Some(pcsc::Error::NoService | pcsc::Error::ServiceStopped) } => {
            PivError::NoService
        }
        yubikey::Error::PcscError { inner: Some(pcsc::Error::NoReadersAvailable) } => PivError::NoReader,
        yubikey::Error::PcscError { inner: None } => PivError::SeveralCards,
        yubikey::Error::NotFound => PivError::NoCard,
        yubikey::Error::WrongPin { tries: 0 } => PivError::PinBlocked,
        yubikey::Error::WrongPin { tries } => PivError::WrongPin(tries),
        other => PivError::Card(other.to_string()),
    }
}

/// The card, its slot certificate (DER) and the key's kind.
struct Slot {
    card: YubiKey,
    certificate: Vec<u8>,
    identity: Identity,
    algorithm: AlgorithmId,
}

fn open_slot(slot: SlotId) -> Result<Slot, PivError> {
    let mut card = YubiKey::open().map_err(card_error)?;
    let certificate = match Certificate::read(&mut card, slot) {
        Ok(c) => c.cert.to_der().map_err(|e| PivError::Card(e.to_string()))?,
        Err(yubikey::Error::InvalidObject | yubikey::Error::NotFound) => {
            return Err(PivError::NoCertificate(slot_name(slot)))
        }
        Err(e) => return Err(card_error(e)),
    };
    let pem = x509_cert::Certificate::from_der(&certificate)
        .and_then(|c| c.to_pem(x509_cert::der::pem::LineEnding::LF))
        .map_err(|e| PivError::Card(format!("the slot certificate does not parse: {e}")))?;
    let identity = Identity::parse(&pem).map_err(|e| PivError::UnsupportedKey(slot_name(slot), e.to_string()))?;
    let unsupported = |what: &str| {
        PivError::UnsupportedKey(
            slot_name(slot),
            format!("{what} keys cannot sign here; use ECC P-256, P-384 or RSA 2048"),
        )
    };
    let algorithm = match identity.public_key() {
        Some(PublicKey::P256(_)) => AlgorithmId::EccP256,
        Some(PublicKey::P384(_)) => AlgorithmId::EccP384,
        Some(PublicKey::Rsa(der)) => match pkcs1::RsaPublicKey::from_der(der) {
            Ok(k) if k.modulus.as_bytes().len() == 256 => AlgorithmId::Rsa2048,
            _ => return Err(unsupported("RSA keys other than 2048-bit")),
        },
        _ => return Err(unsupported(identity.kind())),
    };
    Ok(Slot { card, certificate, identity, algorithm })
}

/// The identity of the key in `slot`, read from its certificate (no PIN needed).
pub fn identity(slot: SlotId) -> Result<(Identity, String), PivError> {
    let s = open_slot(slot)?;
    let about = format!("YubiKey {} (firmware {}), slot {}", s.card.serial(), s.card.version(), slot_name(slot));
    Ok((s.identity, about))
}

/// The PIN: `KEYGATE_PIV_PIN`, else asked on the terminal without echo.
fn pin(serial: yubikey::Serial) -> Result<zeroize::Zeroizing<String>, PivError> {
    if let Ok(pin) = std::env::var("KEYGATE_PIV_PIN") {
        return Ok(zeroize::Zeroizing::new(pin));
    }
    rpassword::prompt_password(format!("PIV PIN for YubiKey {serial}: "))
        .map(zeroize::Zeroizing::new)
        .map_err(|_| PivError::NoPin)
}

/// The `piv` proof fields for `text` (the challenge payload as issued).
pub fn proof(source: PivSource, text: &[u8]) -> Result<serde_json::Value, PivError> {
    let Slot { mut card, certificate, identity: _, algorithm } = open_slot(source.slot)?;
    let pin = pin(card.serial())?;
    card.verify_pin(pin.as_bytes()).map_err(card_error)?;
    drop(pin);
    let digest = Sha256::digest(text);
    let input = match algorithm {
        AlgorithmId::Rsa2048 => pkcs1_v15_sha256(&digest, 256),
        _ => digest.to_vec(),
    };
    let signature = match yubikey::piv::sign_data(&mut card, &input, algorithm, source.slot) {
        Ok(s) => s.to_vec(),
        Err(yubikey::Error::AuthenticationError) => return Err(PivError::NotSigned),
        Err(yubikey::Error::GenericError) => return Err(PivError::NotSigned),
        Err(e) => return Err(card_error(e)),
    };
    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    let mut fields = serde_json::json!({
        "method": "piv",
        "certificate": b64(&certificate),
        "signature": b64(&signature),
    });
    if source.attest {
        let slot = yubikey::piv::attest(&mut card, source.slot).map_err(|e| match e {
            yubikey::Error::NotSupported | yubikey::Error::GenericError => {
                PivError::NoAttestation(slot_name(source.slot))
            }
            e => card_error(e),
        })?;
        let device = match Certificate::read(&mut card, SlotId::Attestation) {
            Ok(c) => c.cert.to_der().map_err(|e| PivError::Card(e.to_string()))?,
            Err(_) => return Err(PivError::NoAttestation(slot_name(source.slot))),
        };
        fields["attestation"] = serde_json::json!({ "slot": b64(&slot), "device": b64(&device) });
    }
    Ok(fields)
}

/// EMSA-PKCS1-v1_5 encoding of a SHA-256 digest for a `len`-byte RSA key: the card
/// applies the raw RSA operation to exactly this block.
fn pkcs1_v15_sha256(digest: &[u8], len: usize) -> Vec<u8> {
    const PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
        0x20,
    ];
    let t_len = PREFIX.len() + digest.len();
    let mut block = vec![0xff; len];
    block[0] = 0x00;
    block[1] = 0x01;
    block[len - t_len - 1] = 0x00;
    block[len - t_len..len - digest.len()].copy_from_slice(&PREFIX);
    block[len - digest.len()..].copy_from_slice(digest);
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs1_block_is_emsa_v15() {
        let block = pkcs1_v15_sha256(&[0xab; 32], 256);
        assert_eq!(&block[..2], &[0x00, 0x01]);
        assert_eq!(block[256 - 52], 0x00);
        assert!(block[2..256 - 52].iter().all(|b| *b == 0xff));
        assert_eq!(&block[256 - 32..], &[0xab; 32]);
    }

    #[test]
    fn pin_errors_say_what_to_do() {
        assert!(card_error(yubikey::Error::WrongPin { tries: 2 }).to_string().contains("2 tries left"));
        assert!(card_error(yubikey::Error::WrongPin { tries: 1 }).to_string().contains("1 try left"));
        assert!(card_error(yubikey::Error::WrongPin { tries: 0 }).to_string().contains("PUK"));
    }
}
