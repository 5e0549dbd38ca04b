//! Ethereum account addresses with EIP-55 mixed-case checksums.

use super::ParseError;
use sha3::{Digest, Keccak256};
use std::fmt;

/// A 20-byte Ethereum account address. Displays in EIP-55 checksummed form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthAddress([u8; 20]);

impl EthAddress {
    /// Parses `0x` + 40 hex digits. All-lowercase and all-uppercase addresses carry no
    /// checksum and are accepted as they are; a mixed-case address must carry a valid
    /// EIP-55 checksum, since a typo in it would otherwise name a stranger's account.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let hex = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .ok_or_else(|| ParseError::InvalidKey("an Ethereum address starts with 0x".into()))?;
        if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseError::InvalidKey("an Ethereum address is 0x followed by 40 hexadecimal digits".into()));
        }
        let mut bytes = [0u8; 20];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            bytes[i] = (hex_val(chunk[0]) << 4) | hex_val(chunk[1]);
        }
        let address = EthAddress(bytes);
        let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper && address.checksummed()[2..] != *hex {
            return Err(ParseError::InvalidKey(format!(
                "Ethereum address {text} has a wrong EIP-55 checksum (mixed case must match {})",
                address.checksummed()
            )));
        }
        Ok(address)
    }

    /// From the raw 20 bytes (e.g. recovered from a signature).
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        EthAddress(bytes)
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The EIP-55 checksummed text, `0x…`.
    pub fn checksummed(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let lower: Vec<u8> = self.0.iter().flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]).collect();
        let hash = Keccak256::digest(&lower);
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.iter().enumerate() {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 15;
            out.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() as char } else { *c as char });
        }
        out
    }
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

impl fmt::Display for EthAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.checksummed())
    }
}

impl fmt::Debug for EthAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EthAddress({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples from the EIP-55 specification.
    const EIP55: [&str; 4] = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn eip55_examples_round_trip() {
        for a in EIP55 {
            assert_eq!(EthAddress::parse(a).map(|x| x.to_string()).ok().as_deref(), Some(a));
            let lower = a.to_ascii_lowercase();
            assert_eq!(EthAddress::parse(&lower).map(|x| x.to_string()).ok().as_deref(), Some(a));
        }
    }

    #[test]
    fn wrong_checksum_is_refused() {
        let bad = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        let err = EthAddress::parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("EIP-55"), "{err}");
        assert!(EthAddress::parse("0x1234").is_err());
        assert!(EthAddress::parse("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_err());
    }
}
