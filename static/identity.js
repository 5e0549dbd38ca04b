// Checking a peer's admission proof in this browser, so a peer need not trust the
// server for methods WebCrypto can verify: "webcrypto" (ECDSA P-256 over the
// payload text) and "webauthn" (an ES256 assertion whose challenge is the payload
// text). The key comes from the peer's did:key, not from the server's word.

import { b64u } from "/static/proof.js";

const P256 = {
  p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
  b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
};
const BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

function base58(text) {
  let n = 0n;
  for (const ch of text) {
    const d = BASE58.indexOf(ch);
    if (d < 0) throw new Error("not base58");
    n = n * 58n + BigInt(d);
  }
  const bytes = [];
  for (; n > 0n; n >>= 8n) bytes.unshift(Number(n & 0xffn));
  for (const ch of text) {
    if (ch !== "1") break;
    bytes.unshift(0);
  }
  return Uint8Array.from(bytes);
}

function modPow(base, exp, m) {
  let r = 1n;
  for (base %= m; exp > 0n; exp >>= 1n, base = (base * base) % m) if (exp & 1n) r = (r * base) % m;
  return r;
}

const toBig = (bytes) => bytes.reduce((n, b) => (n << 8n) | BigInt(b), 0n);
const toBytes = (n, len) => Uint8Array.from({ length: len }, (_, i) => Number((n >> BigInt(8 * (len - 1 - i))) & 0xffn));

/** The uncompressed P-256 point (65 bytes) of a did:key, or null for other key types. */
export function p256PointOfDid(did) {
  if (!did.startsWith("did:key:z")) return null;
  const bytes = base58(did.slice("did:key:z".length));
  // multicodec p256-pub (0x1200) as a varint, then the compressed point.
  if (bytes.length !== 35 || bytes[0] !== 0x80 || bytes[1] !== 0x24) return null;
  const { p, b } = P256;
  const x = toBig(bytes.slice(3));
  const y2 = (modPow(x, 3n, p) - 3n * x + b + 3n * p) % p;
  let y = modPow(y2, (p + 1n) / 4n, p); // p ≡ 3 (mod 4)
  if ((y * y) % p !== y2) throw new Error("not a point on P-256");
  if (Number(y & 1n) !== (bytes[2] & 1)) y = p - y;
  return Uint8Array.from([4, ...toBytes(x, 32), ...toBytes(y, 32)]);
}

async function importPoint(point) {
  return crypto.subtle.importKey("raw", point, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
}

/** A DER ECDSA signature as WebCrypto's r‖s (32 bytes each). */
function derToP1363(der) {
  const d = new Uint8Array(der);
  let i = 2;
  const int = () => {
    if (d[i++] !== 0x02) throw new Error("bad DER signature");
    const len = d[i++];
    let v = d.slice(i, i + len);
    i += len;
    while (v.length > 32 && v[0] === 0) v = v.slice(1);
    const out = new Uint8Array(32);
    out.set(v, 32 - v.length);
    return out;
  };
  return Uint8Array.from([...int(), ...int()]);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
const ECDSA = { name: "ECDSA", hash: "SHA-256" };

/**
 * Checks a forwarded proof for peer `info` in room `room`. Resolves to true when
 * this browser verified it, false when it cannot (another method or key type);
 * throws when the proof is wrong.
 */
export async function verifyForwardedProof(info, room) {
  const proof = info.proof;
  if (!proof) return false;
  const point = p256PointOfDid(info.identity);
  if (!point) return false;
  const payload = JSON.parse(proof.signed);
  if (payload.roomId !== room) throw new Error("the proof is for another room");
  if (payload.origin !== location.origin) throw new Error("the proof is for another site");
  if ((payload.fingerprint || null) !== (info.fingerprint || null)) throw new Error("the proof vouches for another certificate");
  if ((payload.mediaKey || null) !== (info.mediaKey || null)) throw new Error("the proof vouches for another media key");
  if (payload.purpose) throw new Error("the proof is not an admission");
  const key = await importPoint(point);
  const signed = new TextEncoder().encode(proof.signed);
  if (proof.method === "webcrypto") {
    const jwk = proof.publicKey || {};
    const x = new Uint8Array(b64u.decode(jwk.x || "")), y = new Uint8Array(b64u.decode(jwk.y || ""));
    if (!equal(x, point.slice(1, 33)) || !equal(y, point.slice(33))) throw new Error("the proof's key is not the peer's identity");
    if (!(await crypto.subtle.verify(ECDSA, key, b64u.decode(proof.signature), signed))) throw new Error("bad signature");
    return true;
  }
  if (proof.method === "webauthn") {
    const r = proof.credential.response;
    const clientDataJSON = new Uint8Array(b64u.decode(r.clientDataJSON));
    const clientData = JSON.parse(new TextDecoder().decode(clientDataJSON));
    if (clientData.type !== "webauthn.get") throw new Error("not an assertion");
    if (clientData.origin !== location.origin) throw new Error("the assertion is for another site");
    if (!equal(new Uint8Array(b64u.decode(clientData.challenge)), signed)) throw new Error("the assertion signs another challenge");
    const authData = new Uint8Array(b64u.decode(r.authenticatorData));
    // The relying party id is this host or a parent domain of it.
    const labels = location.hostname.split(".");
    const rpIds = labels.map((_, i) => labels.slice(i).join(".")).filter((d) => d.includes(".") || d === location.hostname);
    const hashes = await Promise.all(rpIds.map((d) => sha256(new TextEncoder().encode(d))));
    if (!hashes.some((h) => equal(authData.slice(0, 32), h))) throw new Error("the assertion is for another relying party");
    if (!(authData[32] & 1)) throw new Error("the authenticator did not see the user");
    const message = Uint8Array.from([...authData, ...(await sha256(clientDataJSON))]);
    if (!(await crypto.subtle.verify(ECDSA, key, derToP1363(b64u.decode(r.signature)), message))) throw new Error("bad signature");
    return true;
  }
  return false;
}
