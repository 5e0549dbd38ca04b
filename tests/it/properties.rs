//! Property tests (proptest): key-format conversions and protocol round trips over
//! generated keys and messages, in seconds, on every CI run. The same properties
//! the fuzz targets check, from the other side: the fuzzer mutates bytes, these
//! generate well-formed values.

use keygate::fuzzing::{formats_of, round_trips, target};
use keygate::identity::{rsa_from_parts, EthAddress, Identity, PublicKey};
use keygate::protocol::read_frame;
use keygate::verify::siwe::{ForChallenge, SiweMessage};
use proptest::prelude::*;
use serde_json::{json, Value};

fn ec_key(scalar: [u8; 32], p384: bool) -> Option<PublicKey> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    if p384 {
        let mut wide = [1u8; 48];
        wide[16..].copy_from_slice(&scalar);
        let secret = p384::SecretKey::from_slice(&wide).ok()?;
        PublicKey::p384_from_sec1(secret.public_key().to_encoded_point(false).as_bytes()).ok()
    } else {
        let secret = p256::SecretKey::from_slice(&scalar).ok()?;
        PublicKey::p256_from_sec1(secret.public_key().to_encoded_point(true).as_bytes()).ok()
    }
}

fn key() -> impl Strategy<Value = PublicKey> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(PublicKey::Ed25519),
        (any::<[u8; 32]>(), any::<bool>()).prop_filter_map("scalar out of range", |(s, wide)| ec_key(s, wide)),
        (prop::collection::vec(any::<u8>(), 256..=512), prop_oneof![Just(vec![3u8]), Just(vec![1, 0, 1])])
            .prop_filter_map("not an RSA key", |(mut n, e)| {
                n[0] |= 0x80;
                *n.last_mut()? |= 1;
                rsa_from_parts(&n, &e).ok()
            }),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any key: its DID, JWK, PEM, OpenSSH line and COSE forms each read back as it.
    #[test]
    fn every_key_reads_back_from_every_format(key in key()) {
        let identity = Identity::from_key(key);
        prop_assert!(round_trips(&identity).is_ok(), "{:?}", round_trips(&identity));
        prop_assert_eq!(formats_of(&identity).unwrap().len(), 6);
    }

    /// Any Ethereum account: checksummed, lower case and did:pkh are the same identity.
    #[test]
    fn every_account_reads_back_from_every_format(bytes in any::<[u8; 20]>()) {
        let identity = Identity::from_eth(EthAddress::from_bytes(bytes));
        prop_assert!(round_trips(&identity).is_ok(), "{:?}", round_trips(&identity));
    }

    /// A list of keys in mixed formats reads the same whatever pieces it streams in.
    #[test]
    fn a_key_list_reads_the_same_in_any_pieces(keys in prop::collection::vec(key(), 1..6), cut in any::<u8>()) {
        let mut list = String::new();
        for key in keys {
            for (format, text) in formats_of(&Identity::from_key(key)).unwrap() {
                if matches!(format, "did" | "openssh" | "pem" | "cose hex") {
                    list.push_str(&text);
                    list.push('\n');
                }
            }
        }
        let mut input = vec![cut];
        input.extend_from_slice(list.as_bytes());
        let outcome = (target("key_stream").unwrap().run)(&input);
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }

    /// Every client frame a client can write reads back as the same message.
    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        let text = frame.to_string();
        let message = read_frame(&text);
        prop_assert!(message.is_ok(), "{} does not read: {:?}", text, message.err());
        let outcome = (target("frame").unwrap().run)(text.as_bytes());
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }

    /// A Sign-In with Ethereum message for any challenge prints and parses back as itself.
    #[test]
    fn siwe_messages_round_trip(
        address in any::<[u8; 20]>(),
        room in "[A-Za-z0-9_-]{1,64}",
        nonce in "[A-Za-z0-9]{8,32}",
        secs in 1_600_000_000i64..2_000_000_000,
        port in 1u16..,
        fingerprint in prop::option::of("[0-9A-F]{2}(:[0-9A-F]{2}){3,31}"),
        media_key in prop::option::of("B[A-Za-z0-9_-]{86}"),
    ) {
        let origin = format!("http://localhost:{port}");
        let vouched = keygate::challenge::Vouched { fingerprint: fingerprint.map(|f| format!("sha-256 {f}")), media_key };
        let message = SiweMessage::for_challenge(EthAddress::from_bytes(address), ForChallenge {
            origin: &origin,
            statement: format!("Join {room}"),
            request_id: &room,
            nonce: &nonce,
            issued_at: chrono::DateTime::from_timestamp(secs, 0).unwrap(),
            lifetime: std::time::Duration::from_secs(120),
            vouched: &vouched,
            chain_id: 1,
        });
        let printed = message.to_string();
        prop_assert_eq!(SiweMessage::parse(&printed), Ok(message));
        let outcome = (target("siwe").unwrap().run)(printed.as_bytes());
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn peer() -> impl Strategy<Value = String> {
    "[0-9a-f]{16}"
}

fn client_frame() -> impl Strategy<Value = Value> {
    prop_oneof![
        (
            prop::option::of("[A-Za-z0-9_-]{1,64}"),
            any::<bool>(),
            prop::option::of(text()),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(room, create, name, webauthn, ticket)| {
                json!({"type": "request", "roomId": room, "create": create, "name": name,
                       "webauthn": webauthn, "ticket": ticket, "fingerprint": null, "address": null})
            }),
        (
            "webcrypto|webauthn|ssh|piv|eth|ticket",
            json_value(),
            prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..4)
        )
            .prop_map(|(method, payload, proof)| {
                let mut frame = json!({"type": "auth", "method": method, "payload": payload});
                for (k, v) in proof {
                    if !matches!(k.as_str(), "type" | "method" | "payload") {
                        frame[k] = v;
                    }
                }
                frame
            }),
        peer().prop_map(|p| json!({"type": "verify-peer", "peerId": p})),
        (peer(), json_value()).prop_map(|(p, data)| json!({"type": "signal", "to": p, "data": data})),
        (
            prop::collection::vec(text(), 0..3),
            prop::collection::vec((text(), text()), 0..3),
            prop::collection::vec(text(), 0..3)
        )
            .prop_map(|(keys, labelled, remove)| {
                let mut add: Vec<Value> = keys.into_iter().map(Value::from).collect();
                add.extend(labelled.into_iter().map(|(key, label)| json!({"key": key, "label": label})));
                json!({"type": "whitelist", "add": add, "remove": remove})
            }),
        (peer(), "fingerprint-mismatch|no-fingerprint|proof-invalid")
            .prop_map(|(p, problem)| json!({"type": "report", "peerId": p, "problem": problem})),
        Just(json!({"type": "ping"})),
    ]
}
