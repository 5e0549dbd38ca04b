// What a page needs to check a wallet's signature itself, with no third-party
// code: Keccak-256 (Ethereum's hash) and secp256k1 public-key recovery, in BigInt.
// Slow next to native code (tens of milliseconds a signature), and run once per
// peer.

const MASK = (1n << 64n) - 1n;
const RC = [
  0x0000000000000001n, 0x0000000000008082n, 0x800000000000808an, 0x8000000080008000n, 0x000000000000808bn, 0x0000000080000001n,
  0x8000000080008081n, 0x8000000000008009n, 0x000000000000008an, 0x0000000000000088n, 0x0000000080008009n, 0x000000008000000an,
  0x000000008000808bn, 0x800000000000008bn, 0x8000000000008089n, 0x8000000000008003n, 0x8000000000008002n, 0x8000000000000080n,
  0x000000000000800an, 0x800000008000000an, 0x8000000080008081n, 0x8000000000008080n, 0x0000000080000001n, 0x8000000080008008n,
];
// Rotation offsets r[x][y].
const ROT = [[0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61], [28, 55, 25, 21, 56], [27, 20, 39, 8, 14]];
const rotl = (v, n) => (n === 0 ? v : ((v << BigInt(n)) | (v >> BigInt(64 - n))) & MASK);

function keccakF(A) {
  for (let round = 0; round < 24; round++) {
    const C = [0, 1, 2, 3, 4].map((x) => A[x] ^ A[x + 5] ^ A[x + 10] ^ A[x + 15] ^ A[x + 20]);
    for (let x = 0; x < 5; x++) {
      const D = C[(x + 4) % 5] ^ rotl(C[(x + 1) % 5], 1);
      for (let y = 0; y < 25; y += 5) A[x + y] ^= D;
    }
    const B = new Array(25);
    for (let x = 0; x < 5; x++) for (let y = 0; y < 5; y++) B[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(A[x + 5 * y], ROT[x][y]);
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 25; y += 5) A[x + y] = B[x + y] ^ (~B[((x + 1) % 5) + y] & MASK & B[((x + 2) % 5) + y]);
    }
    A[0] ^= RC[round];
  }
}

/** Keccak-256 (the original padding, as Ethereum uses it; not SHA3-256). */
export function keccak256(bytes) {
  const rate = 136;
  const padded = new Uint8Array(Math.floor(bytes.length / rate) * rate + rate);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const A = new Array(25).fill(0n);
  for (let off = 0; off < padded.length; off += rate) {
    for (let i = 0; i < rate / 8; i++) {
      let lane = 0n;
      for (let b = 7; b >= 0; b--) lane = (lane << 8n) | BigInt(padded[off + i * 8 + b]);
      A[i] ^= lane;
    }
    keccakF(A);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((A[i >> 3] >> BigInt(8 * (i & 7))) & 0xffn);
  return out;
}

const P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const G = [0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n, 0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n];

const mod = (a, m) => ((a % m) + m) % m;
function inv(a, m) {
  let [r0, r1, t0, t1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [t0, t1] = [t1, t0 - q * t1];
  }
  if (r0 !== 1n) throw new Error("not invertible");
  return mod(t0, m);
}
function modPow(b, e, m) {
  let r = 1n;
  for (b = mod(b, m); e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
  return r;
}

// Points in Jacobian coordinates [X, Y, Z]; Z = 0 is the point at infinity.
function double([X, Y, Z]) {
  if (Z === 0n || Y === 0n) return [0n, 1n, 0n];
  const S = mod(4n * X * Y * Y, P), M = mod(3n * X * X, P);
  const X3 = mod(M * M - 2n * S, P);
  return [X3, mod(M * (S - X3) - 8n * Y ** 4n, P), mod(2n * Y * Z, P)];
}
function add(p1, p2) {
  if (p1[2] === 0n) return p2;
  if (p2[2] === 0n) return p1;
  const [X1, Y1, Z1] = p1, [X2, Y2, Z2] = p2;
  const U1 = mod(X1 * Z2 * Z2, P), U2 = mod(X2 * Z1 * Z1, P);
  const S1 = mod(Y1 * Z2 ** 3n, P), S2 = mod(Y2 * Z1 ** 3n, P);
  if (U1 === U2) return S1 === S2 ? double(p1) : [0n, 1n, 0n];
  const H = mod(U2 - U1, P), R = mod(S2 - S1, P);
  const X3 = mod(R * R - H ** 3n - 2n * U1 * H * H, P);
  return [X3, mod(R * (U1 * H * H - X3) - S1 * H ** 3n, P), mod(H * Z1 * Z2, P)];
}
function multiply(point, k) {
  let acc = [0n, 1n, 0n];
  for (let bit = BigInt(k.toString(2).length - 1); bit >= 0n; bit--) {
    acc = double(acc);
    if ((k >> bit) & 1n) acc = add(acc, point);
  }
  return acc;
}
function affine([X, Y, Z]) {
  const zi = inv(Z, P);
  return [mod(X * zi * zi, P), mod(Y * zi ** 3n, P)];
}

const big = (bytes) => bytes.reduce((n, b) => (n << 8n) | BigInt(b), 0n);
const bytes32 = (n) => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * (31 - i))) & 0xffn));

/** The address (0x + 40 lowercase hex) whose key made `signature` (65 bytes r‖s‖v) over `hash`. */
export function recoverAddress(hash, signature) {
  if (signature.length !== 65) throw new Error("a wallet signature is 65 bytes");
  const r = big(signature.slice(0, 32)), s = big(signature.slice(32, 64));
  const v = signature[64] >= 27 ? signature[64] - 27 : signature[64];
  if (v > 1 || r <= 0n || r >= N || s <= 0n || s >= N) throw new Error("not a valid signature");
  let y = modPow(mod(r ** 3n + 7n, P), (P + 1n) / 4n, P);
  if (mod(y * y - r ** 3n - 7n, P) !== 0n) throw new Error("not a valid signature");
  if (Number(y & 1n) !== v) y = P - y;
  const ri = inv(r, N), e = big(hash);
  const Q = add(multiply([G[0], G[1], 1n], mod(-e * ri, N)), multiply([r, y, 1n], mod(s * ri, N)));
  if (Q[2] === 0n) throw new Error("not a valid signature");
  const [x, yq] = affine(Q);
  const digest = keccak256(Uint8Array.from([...bytes32(x), ...bytes32(yq)]));
  return `0x${[...digest.slice(12)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** The EIP-191 hash a wallet's personal_sign signs for `message`. */
export function personalMessageHash(message) {
  const body = new TextEncoder().encode(message);
  return keccak256(Uint8Array.from([...new TextEncoder().encode(`\x19Ethereum Signed Message:\n${body.length}`), ...body]));
}
