//! A software PIV card for the tests, plugged into the real PC/SC stack: it connects
//! to vsmartcard's vpcd (loaded by pcscd) on 127.0.0.1:35963 through the `vpicc`
//! crate and answers the APDUs the `yubikey` crate sends, as a YubiKey 5 would:
//!
//! | APDU | INS | answer |
//! |---|---|---|
//! | SELECT PIV | A4 | 90 00 |
//! | GET VERSION | FD | 5.4.3 |
//! | GET SERIAL | F8 | 4-byte serial |
//! | VERIFY PIN | 20 | 90 00, 63 Cx (x tries left), 69 83 (blocked) |
//! | GET DATA 5FC105 / 5FC10A / 5FFF01 | CB | slot certificate, or the f9 device certificate |
//! | GENERAL AUTHENTICATE | 87 | ECDSA over the given digest (P-256/P-384); 69 82 without the PIN |
//! | ATTEST | F9 | the slot's attestation certificate |
//! | GET RESPONSE | C0 | the next 256 bytes of a long answer (61 xx while more remain) |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A key in a slot.
pub enum SlotKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

pub struct Slot {
    pub key: SlotKey,
    /// The slot certificate (DER).
    pub certificate: Vec<u8>,
    /// What ATTEST returns for this slot (DER), if the card can attest it.
    pub attestation: Option<Vec<u8>>,
    /// The key needs a touch that never comes: signing fails as on a touch timeout.
    pub touch_times_out: bool,
}

/// What the card remembers, shared with the test so it can look and change it.
pub struct CardState {
    pub serial: u32,
    pub pin: Vec<u8>,
    pub tries_left: u8,
    pub slots: HashMap<u8, Slot>,
    /// The f9 device certificate (DER).
    pub device_certificate: Option<Vec<u8>>,
    /// The instruction bytes received, in order.
    pub seen: Vec<u8>,
    verified: bool,
    pending: Vec<u8>,
}

impl CardState {
    pub fn new(serial: u32, pin: &str) -> Self {
        CardState {
            serial,
            pin: pin.as_bytes().to_vec(),
            tries_left: 3,
            slots: HashMap::new(),
            device_certificate: None,
            seen: Vec::new(),
            verified: false,
            pending: Vec::new(),
        }
    }
}

/// The card as vpicc drives it.
pub struct SoftPiv(pub Arc<Mutex<CardState>>);

const OK: [u8; 2] = [0x90, 0x00];

fn status(sw: u16) -> Vec<u8> {
    sw.to_be_bytes().to_vec()
}

/// BER-TLV with a definite length.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

/// Reads one TLV: (tag, value, rest).
fn read_tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        n if n < 0x80 => (n as usize, rest),
        0x81 => (*rest.first()? as usize, &rest[1..]),
        0x82 => (((*rest.first()? as usize) << 8) | *rest.get(1)? as usize, &rest[2..]),
        _ => return None,
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

impl CardState {
    /// Answers with up to 256 bytes now and `61 xx` while more remain.
    fn long_answer(&mut self, data: Vec<u8>) -> Vec<u8> {
        self.pending = data;
        self.next_chunk()
    }

    fn next_chunk(&mut self) -> Vec<u8> {
        let n = self.pending.len().min(256);
        let mut out: Vec<u8> = self.pending.drain(..n).collect();
        match self.pending.len() {
            0 => out.extend(OK),
            left => out.extend([0x61, left.min(255) as u8]),
        }
        out
    }

    fn execute(&mut self, apdu: &[u8]) -> Vec<u8> {
        if apdu.len() < 4 {
            return status(0x6700);
        }
        let (ins, p1, p2) = (apdu[1], apdu[2], apdu[3]);
        let data = match apdu.get(4) {
            Some(&lc) if apdu.len() >= 5 + lc as usize => &apdu[5..5 + lc as usize],
            _ => &[][..],
        };
        self.seen.push(ins);
        if ins != 0xC0 {
            self.pending.clear();
        }
        match ins {
            0xA4 if data.starts_with(&[0xa0, 0x00, 0x00, 0x03, 0x08]) => OK.to_vec(),
            0xA4 => status(0x6A82),
            0xFD => [5, 4, 3, 0x90, 0x00].to_vec(),
            0xF8 => {
                let mut out = self.serial.to_be_bytes().to_vec();
                out.extend(OK);
                out
            }
            0x20 if p2 == 0x80 => self.verify_pin(data),
            0xCB if p1 == 0x3F && p2 == 0xFF => self.get_data(data),
            0x87 => self.general_authenticate(p1, p2, data),
            0xF9 => match self.slots.get(&p1).and_then(|s| s.attestation.clone()) {
                Some(cert) => self.long_answer(cert),
                None => status(0x6A80),
            },
            0xC0 if !self.pending.is_empty() => self.next_chunk(),
            _ => status(0x6D00),
        }
    }

    fn verify_pin(&mut self, data: &[u8]) -> Vec<u8> {
        if self.tries_left == 0 {
            return status(0x6983);
        }
        if data.is_empty() {
            return if self.verified { OK.to_vec() } else { status(0x63C0 | u16::from(self.tries_left)) };
        }
        let given: Vec<u8> = data.iter().copied().take_while(|b| *b != 0xff).collect();
        if given == self.pin {
            self.tries_left = 3;
            self.verified = true;
            OK.to_vec()
        } else {
            self.tries_left -= 1;
            self.verified = false;
            match self.tries_left {
                0 => status(0x6983),
                n => status(0x63C0 | u16::from(n)),
            }
        }
    }

    fn get_data(&mut self, data: &[u8]) -> Vec<u8> {
        let Some((0x5C, id, _)) = read_tlv(data) else { return status(0x6A80) };
        let cert = match id {
            [0x5F, 0xC1, 0x05] => self.slots.get(&0x9a).map(|s| s.certificate.clone()),
            [0x5F, 0xC1, 0x0A] => self.slots.get(&0x9c).map(|s| s.certificate.clone()),
            [0x5F, 0xC1, 0x0B] => self.slots.get(&0x9d).map(|s| s.certificate.clone()),
            [0x5F, 0xC1, 0x01] => self.slots.get(&0x9e).map(|s| s.certificate.clone()),
            [0x5F, 0xFF, 0x01] => self.device_certificate.clone(),
            _ => None,
        };
        match cert {
            Some(der) => {
                let mut object = tlv(0x70, &der);
                object.extend(tlv(0x71, &[0x00]));
                object.extend(tlv(0xFE, &[]));
                self.long_answer(tlv(0x53, &object))
            }
            None => status(0x6A82),
        }
    }

    fn general_authenticate(&mut self, algorithm: u8, slot: u8, data: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let Some((0x7C, inner, _)) = read_tlv(data) else { return status(0x6A80) };
        let Some((0x82, _, rest)) = read_tlv(inner) else { return status(0x6A80) };
        let Some((0x81, digest, _)) = read_tlv(rest) else { return status(0x6A80) };
        if !self.verified {
            return status(0x6982);
        }
        let Some(s) = self.slots.get(&slot) else { return status(0x6A82) };
        if s.touch_times_out {
            return status(0x6985);
        }
        let signature =
            match (&s.key, algorithm) {
                (SlotKey::P256(k), 0x11) => PrehashSigner::<p256::ecdsa::Signature>::sign_prehash(k, digest)
                    .map(|s| s.to_der().as_bytes().to_vec()),
                (SlotKey::P384(k), 0x14) => PrehashSigner::<p384::ecdsa::Signature>::sign_prehash(k, digest)
                    .map(|s| s.to_der().as_bytes().to_vec()),
                _ => return status(0x6A80),
            };
        match signature {
            Ok(der) => self.long_answer(tlv(0x7C, &tlv(0x82, &der))),
            Err(_) => status(0x6F00),
        }
    }
}

impl vpicc::VSmartCard for SoftPiv {
    /// A reset (the yubikey crate resets the card when it lets go) forgets the PIN.
    fn reset(&mut self) {
        if let Ok(mut card) = self.0.lock() {
            card.verified = false;
            card.pending.clear();
        }
    }

    fn power_off(&mut self) {
        self.reset();
    }

    fn execute(&mut self, apdu: &[u8]) -> Vec<u8> {
        match self.0.lock() {
            Ok(mut card) => card.execute(apdu),
            Err(_) => status(0x6F00),
        }
    }
}
