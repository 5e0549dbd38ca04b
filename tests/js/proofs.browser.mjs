// Chromium checks, in the page, the admission proofs the server forwarded for
// peers of every method (tests/it/e2ee.rs admits them through the real server:
// a browser key, passkey-less methods by their real signers — ssh-keygen's
// Ed25519, ECDSA P-256, P-384 and RSA keys, a wallet, a PIV slot), with
// static/identity.js; then the same proofs tampered three ways (another payload,
// another media key, another identity) must each be refused.
//
//   node tests/js/proofs.browser.mjs http://localhost:PORT ARTIFACT_DIR PEERS.json ROOM
//
// Prints a JSON line of what was checked, then "ok", and exits 0.

import { readFileSync } from "node:fs";
import { base, expect, participant, run } from "./browser_kit.mjs";

const [, , , , peersFile, room] = process.argv;
const peers = JSON.parse(readFileSync(peersFile, "utf8"));

await run("proofs", async () => {
  const page = await participant("checker");
  await page.goto(`${base}/keys`);
  const results = await page.evaluate(
    async ([peers, room]) => {
      const { verifyForwardedProof } = await import("/static/identity.js");
      const outcome = async (info) => {
        try {
          return (await verifyForwardedProof(info, room)) ? "verified" : "not checked";
        } catch (e) {
          return `refused: ${e.message}`;
        }
      };
      const out = [];
      for (const [label, info] of peers) {
        const t0 = performance.now();
        const genuine = await outcome(info);
        const ms = Math.round(performance.now() - t0);
        // Another payload: the same proof over a payload with another nonce.
        const signed = JSON.parse(info.proof.signed);
        signed.nonce = signed.nonce.replace(/^./, (c) => (c === "0" ? "1" : "0"));
        const otherPayload = await outcome({ ...info, proof: { ...info.proof, signed: JSON.stringify(signed) } });
        // Another media key than the one the proof signed.
        const otherKey = peers.find(([l]) => l !== label)[1].mediaKey;
        const otherMediaKey = await outcome({ ...info, mediaKey: otherKey });
        // The proof passed off as another peer's (of the same kind when there is one).
        // A wallet's proof as another address's; a key's as another key's of the same method.
        const twin = peers.find(([l, i]) => l !== label && i.method === info.method) || peers.find(([l]) => l !== label);
        const other = info.identity.startsWith("did:pkh:")
          ? info.identity.replace(/.$/, (c) => (c === "0" ? "1" : "0"))
          : twin[1].identity;
        const otherIdentity = await outcome({ ...info, identity: other });
        out.push({ label, method: info.method, genuine, ms, otherPayload, otherMediaKey, otherIdentity });
      }
      return out;
    },
    [peers, room],
  );
  for (const r of results) {
    expect(r.genuine === "verified", `${r.label}: the genuine proof verifies in the browser (${r.genuine})`);
    for (const tamper of ["otherPayload", "otherMediaKey", "otherIdentity"]) {
      expect(r[tamper].startsWith("refused"), `${r.label}: ${tamper} is refused (${r[tamper]})`);
    }
  }
  console.log(JSON.stringify(results.map(({ label, ms, otherPayload, otherIdentity }) => ({ label, ms, otherPayload, otherIdentity }))));
});
