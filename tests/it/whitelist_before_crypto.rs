//! "The whitelist is checked before any signature is verified: an unknown key costs
//! no crypto." The server's count of signature checks (on /metrics) is its own, so
//! other tests running at once do not move it.

use crate::common::*;
use keygate::client::ws::Client;

#[tokio::test]
async fn an_unknown_key_never_reaches_signature_verification() {
    let s = TestServer::start().await;
    let (owner, guest, stranger) = (key(), key(), key());
    let room = s.room(&owner, &[&guest]).await;
    let before = metric(&s, "keygate_signature_checks_total").await;

    for _ in 0..20 {
        let mut c = s.connect().await;
        let challenge = c.request(join(&room)).await.unwrap();
        c.send(&Client::webcrypto_auth(&challenge, &stranger).unwrap()).await.unwrap();
        assert_eq!(c.recv().await.unwrap()["code"], "not-admitted");
    }
    assert_eq!(metric(&s, "keygate_signature_checks_total").await, before, "unknown keys cost crypto");
    assert_eq!(metric(&s, "keygate_refusals_total").await, 20.0);

    // A whitelisted key does cost exactly one check.
    admitted(&s, &room, &guest).await;
    assert_eq!(metric(&s, "keygate_signature_checks_total").await, before + 1.0);
    s.shutdown().await;
}
