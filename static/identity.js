// Checking a peer's admission proof in this browser, so a peer need not trust the
// server: "webcrypto" (ECDSA P-256 over the payload text), "webauthn" (an ES256
// assertion whose challenge is the payload text), "ssh" (an SSHSIG over it, by an
// Ed25519, ECDSA or RSA key), "piv" (the slot key's signature over it) and "eth"
// (a Sign-In with Ethereum message naming it, recovered with static/secp256k1.js).
// The key comes from the peer's identity, not from the server's word.

import { b64u } from "/static/proof.js";
import { personalMessageHash, recoverAddress } from "/static/secp256k1.js";

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

const CURVES = {
  "P-256": { size: 32, p: P256.p, b: P256.b, hash: "SHA-256" },
  "P-384": {
    size: 48,
    p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
    hash: "SHA-384",
  },
};

/** A compressed point's uncompressed form (both curves have p ≡ 3 mod 4). */
function decompress(curve, bytes) {
  const { p, b, size } = CURVES[curve];
  const x = toBig(bytes.slice(1));
  const y2 = (modPow(x, 3n, p) - 3n * x + b + 3n * p) % p;
  let y = modPow(y2, (p + 1n) / 4n, p);
  if ((y * y) % p !== y2) throw new Error(`not a point on ${curve}`);
  if (Number(y & 1n) !== (bytes[0] & 1)) y = p - y;
  return Uint8Array.from([4, ...toBytes(x, size), ...toBytes(y, size)]);
}

/**
 * The key a did:key names: {kind: "P-256" | "P-384", point} (uncompressed),
 * {kind: "Ed25519", raw}, {kind: "RSA", n, e} (big-endian bytes), or null for a
 * DID that is not a did:key of these.
 */
export function keyOfDid(did) {
  if (!did.startsWith("did:key:z")) return null;
  const bytes = base58(did.slice("did:key:z".length));
  // The multicodec as a varint: ed25519-pub 0xed, p256-pub 0x1200, p384-pub 0x1201, rsa-pub 0x1205.
  if (bytes[0] === 0xed && bytes[1] === 0x01 && bytes.length === 34) return { kind: "Ed25519", raw: bytes.slice(2) };
  if (bytes[1] !== 0x24) return null;
  if (bytes[0] === 0x80 && bytes.length === 35) return { kind: "P-256", point: decompress("P-256", bytes.slice(2)) };
  if (bytes[0] === 0x81 && bytes.length === 51) return { kind: "P-384", point: decompress("P-384", bytes.slice(2)) };
  if (bytes[0] === 0x85) {
    // PKCS#1 RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }.
    const der = new Der(bytes.slice(2));
    const seq = new Der(der.take(0x30));
    const strip = (v) => (v[0] === 0 ? v.slice(1) : v);
    return { kind: "RSA", n: strip(seq.take(0x02)), e: strip(seq.take(0x02)) };
  }
  return null;
}

/** Reads DER one element at a time. */
class Der {
  constructor(bytes) {
    this.d = bytes;
    this.i = 0;
  }
  take(tag) {
    if (this.d[this.i++] !== tag) throw new Error("unexpected DER");
    let len = this.d[this.i++];
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + this.d[this.i++];
    }
    const v = this.d.slice(this.i, this.i + len);
    if (v.length !== len) throw new Error("truncated DER");
    this.i += len;
    return v;
  }
}

/** An ECDSA signature's r and s as WebCrypto's r‖s, each `size` bytes. */
function p1363(r, s, size) {
  const out = new Uint8Array(2 * size);
  for (const [v, at] of [[r, 0], [s, size]]) {
    let w = v;
    while (w.length > size && w[0] === 0) w = w.slice(1);
    if (w.length > size) throw new Error("an ECDSA integer too long for its curve");
    out.set(w, at + size - w.length);
  }
  return out;
}

/** A DER ECDSA signature as WebCrypto's r‖s. */
function derToP1363(der, size = 32) {
  const seq = new Der(new Der(new Uint8Array(der)).take(0x30));
  return p1363(seq.take(0x02), seq.take(0x02), size);
}

/** A WebCrypto verification key for a did:key's key. */
async function verifyKey(key, hash) {
  if (key.kind === "Ed25519") return crypto.subtle.importKey("raw", key.raw, { name: "Ed25519" }, false, ["verify"]);
  if (key.kind === "RSA") {
    const jwk = { kty: "RSA", n: b64u.encode(key.n), e: b64u.encode(key.e), ext: true };
    return crypto.subtle.importKey("jwk", jwk, { name: "RSASSA-PKCS1-v1_5", hash }, false, ["verify"]);
  }
  return crypto.subtle.importKey("raw", key.point, { name: "ECDSA", namedCurve: key.kind }, false, ["verify"]);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
const ECDSA = { name: "ECDSA", hash: "SHA-256" };

/**
 * Checks a forwarded proof for peer `info` in room `room`. Resolves to true when
 * this browser verified it, false when it cannot (a key type or signature kind it
 * does not check: a security key's `sk-` SSH signature); throws when the proof is
 * wrong. The key comes from the peer's identity (its did:key, or its wallet
 * address), never from the server's word.
 */
export async function verifyForwardedProof(info, room) {
  const proof = info.proof;
  if (!proof) return false;
  const payload = JSON.parse(proof.signed);
  if (payload.roomId !== room) throw new Error("the proof is for another room");
  if (payload.origin !== location.origin) throw new Error("the proof is for another site");
  if ((payload.fingerprint || null) !== (info.fingerprint || null)) throw new Error("the proof vouches for another certificate");
  if ((payload.mediaKey || null) !== (info.mediaKey || null)) throw new Error("the proof vouches for another media key");
  if (payload.purpose) throw new Error("the proof is not an admission");
  const signed = new TextEncoder().encode(proof.signed);
  if (proof.method === "eth") return verifyEth(proof, payload, info);
  const key = keyOfDid(info.identity);
  const notIdentity = () => new Error("the proof's key is not the peer's identity");
  if (!key) {
    // A wallet's identity for a key's proof; any other DID is one this page cannot read.
    if (info.identity.startsWith("did:pkh:")) throw notIdentity();
    return false;
  }
  if (proof.method === "webcrypto") {
    if (key.kind !== "P-256") throw notIdentity();
    const jwk = proof.publicKey || {};
    const x = new Uint8Array(b64u.decode(jwk.x || "")), y = new Uint8Array(b64u.decode(jwk.y || ""));
    if (!equal(x, key.point.slice(1, 33)) || !equal(y, key.point.slice(33))) throw new Error("the proof's key is not the peer's identity");
    if (!(await crypto.subtle.verify(ECDSA, await verifyKey(key), b64u.decode(proof.signature), signed))) throw new Error("bad signature");
    return true;
  }
  if (proof.method === "webauthn") {
    if (key.kind !== "P-256") throw notIdentity();
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
    if (!(await crypto.subtle.verify(ECDSA, await verifyKey(key), derToP1363(b64u.decode(r.signature)), message))) throw new Error("bad signature");
    return true;
  }
  if (proof.method === "piv") return verifyPiv(proof, key, signed);
  if (proof.method === "ssh") return verifySsh(proof, key, signed);
  return false;
}

/** A PIV slot signs the payload text: ECDSA (DER) with SHA-256, or RSA PKCS#1 v1.5 with SHA-256. */
async function verifyPiv(proof, key, signed) {
  // A PIV slot holds P-256, P-384 or RSA keys, never Ed25519.
  if (key.kind === "Ed25519") throw new Error("the proof's key is not the peer's identity");
  const sig = Uint8Array.from(atob(String(proof.signature || "")), (c) => c.charCodeAt(0));
  const ok =
    key.kind === "RSA"
      ? await crypto.subtle.verify("RSASSA-PKCS1-v1_5", await verifyKey(key, "SHA-256"), sig, signed)
      : await crypto.subtle.verify(ECDSA, await verifyKey(key), derToP1363(sig, CURVES[key.kind].size), signed);
  if (!ok) throw new Error("bad signature");
  return true;
}

/** Reads the SSH wire format: uint32 lengths, then bytes. */
class Wire {
  constructor(bytes) {
    this.d = bytes;
    this.i = 0;
  }
  u32() {
    if (this.i + 4 > this.d.length) throw new Error("truncated SSH signature");
    const v = new DataView(this.d.buffer, this.d.byteOffset + this.i, 4).getUint32(0);
    this.i += 4;
    return v;
  }
  bytes() {
    const n = this.u32();
    if (this.i + n > this.d.length) throw new Error("truncated SSH signature");
    const v = this.d.slice(this.i, this.i + n);
    this.i += n;
    return v;
  }
  text() {
    return new TextDecoder().decode(this.bytes());
  }
}

const sshString = (bytes) => {
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
};

/**
 * An SSHSIG (`ssh-keygen -Y sign -n keygate`) over the payload text, by the key of
 * the peer's did:key: Ed25519, ECDSA P-256 or P-384, or RSA (rsa-sha2-256/512).
 * Security keys' `sk-` signatures sign more than the message and are left to the
 * server (false).
 */
async function verifySsh(proof, key, signed) {
  const armored = String(proof.signature || "");
  const body = armored.replace(/-----(BEGIN|END) SSH SIGNATURE-----/g, "").replace(/\s+/g, "");
  const blob = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
  if (new TextDecoder().decode(blob.slice(0, 6)) !== "SSHSIG") throw new Error("not an SSH signature");
  const w = new Wire(blob.slice(6));
  if (w.u32() !== 1) throw new Error("an SSH signature of another version");
  const pub = new Wire(w.bytes());
  const namespace = w.text(), reserved = w.bytes(), hashAlg = w.text();
  const sig = new Wire(w.bytes());
  if (namespace !== "keygate") throw new Error(`an SSH signature for namespace ${namespace}`);
  const keyType = pub.text();
  if (keyType.startsWith("sk-")) return false;
  // The key inside the signature must be the peer's identity.
  if (keyType === "ssh-ed25519") {
    if (key.kind !== "Ed25519" || !equal(pub.bytes(), key.raw)) throw new Error("the signature's key is not the peer's identity");
  } else if (keyType === "ecdsa-sha2-nistp256" || keyType === "ecdsa-sha2-nistp384") {
    const curve = keyType.endsWith("256") ? "P-256" : "P-384";
    pub.text();
    if (key.kind !== curve || !equal(pub.bytes(), key.point)) throw new Error("the signature's key is not the peer's identity");
  } else if (keyType === "ssh-rsa") {
    const strip = (v) => (v[0] === 0 ? v.slice(1) : v);
    const e = strip(pub.bytes()), n = strip(pub.bytes());
    if (key.kind !== "RSA" || !equal(e, key.e) || !equal(n, key.n)) throw new Error("the signature's key is not the peer's identity");
  } else return false;
  const hash = { sha256: "SHA-256", sha512: "SHA-512" }[hashAlg];
  if (!hash) throw new Error(`an SSH signature hashed with ${hashAlg}`);
  const digest = new Uint8Array(await crypto.subtle.digest(hash, signed));
  const enc = (t) => new TextEncoder().encode(t);
  const toSign = Uint8Array.from([...enc("SSHSIG"), ...sshString(enc(namespace)), ...sshString(reserved), ...sshString(enc(hashAlg)), ...sshString(digest)]);
  const sigType = sig.text(), raw = sig.bytes();
  let ok;
  if (sigType === "ssh-ed25519" && key.kind === "Ed25519") ok = await crypto.subtle.verify("Ed25519", await verifyKey(key), raw, toSign);
  else if (sigType.startsWith("ecdsa-sha2-nistp") && key.kind.startsWith("P-")) {
    const rs = new Wire(raw);
    const size = CURVES[key.kind].size;
    ok = await crypto.subtle.verify({ name: "ECDSA", hash: CURVES[key.kind].hash }, await verifyKey(key), p1363(rs.bytes(), rs.bytes(), size), toSign);
  } else if ((sigType === "rsa-sha2-256" || sigType === "rsa-sha2-512") && key.kind === "RSA") {
    ok = await crypto.subtle.verify("RSASSA-PKCS1-v1_5", await verifyKey(key, sigType.endsWith("256") ? "SHA-256" : "SHA-512"), raw, toSign);
  } else throw new Error(`an SSH signature of kind ${sigType} for this key`);
  if (!ok) throw new Error("bad signature");
  return true;
}

/**
 * A wallet signs a Sign-In with Ethereum message built from the payload: it must
 * name this site, the payload's nonce, time and room, and the DTLS fingerprint and
 * media key as resources; the address recovered from the signature (secp256k1,
 * here in the page) must be the peer's identity.
 */
function verifyEth(proof, payload, info) {
  const address = /^did:pkh:eip155:\d+:(0x[0-9a-fA-F]{40})$/.exec(info.identity)?.[1];
  if (!address) throw new Error("a wallet proof for an identity that is not a wallet");
  const message = String(proof.message || "");
  const lines = message.split("\n");
  const has = (line) => lines.includes(line);
  const expected = [
    `URI: ${location.origin}`,
    `Nonce: ${payload.nonce}`,
    `Issued At: ${payload.issuedAt}`,
    `Request ID: ${payload.roomId}`,
    ...(payload.fingerprint ? [`- urn:keygate:dtls-fingerprint:${payload.fingerprint.replace(/ /g, ":")}`] : []),
    ...(payload.mediaKey ? [`- urn:keygate:media-key:${payload.mediaKey}`] : []),
  ];
  const missing = expected.find((l) => !has(l));
  if (missing) throw new Error(`the signed message does not say "${missing}"`);
  if (!lines[0].startsWith(`${location.host} wants you to sign in`)) throw new Error("the signed message is for another site");
  const hex = String(proof.signature || "").replace(/^0x/, "");
  if (!/^[0-9a-fA-F]{130}$/.test(hex)) throw new Error("a wallet signature is 65 bytes of hex");
  const sig = Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
  if (recoverAddress(personalMessageHash(message), sig) !== address.toLowerCase()) throw new Error("the signature is not the wallet's");
  return true;
}
