// A protocol v1 client that behaves like the browser page: WebCrypto ECDSA P-256,
// the signature taken over JSON.stringify(payload) of the challenge as received.
//
//   node --experimental-websocket tests/js/webcrypto_client.mjs <ws-url> <roomId> <key-file>
//        [--fingerprint "sha-256 AB:CD:..."] [--send-private-jwk] [--tamper]
//
// <key-file>          a PKCS#8 P-256 private key, raw DER or PEM ("BEGIN PRIVATE KEY").
// --fingerprint F     put a DTLS fingerprint into the request (and so into the payload).
// --send-private-jwk  send the JWK exactly as exported from the private key, "d" included;
//                     the server must refuse it with error code "private-key".
// --tamper            flip one character of the nonce in the payload sent back
//                     (the signature still covers the payload as received).
//
// Prints exactly one line on stdout, the JSON of the outcome: the first "welcome" or
// "error" frame after auth, or an "error" frame received before it; then closes the
// socket and exits 0. On a timeout (10 s), a connection failure or bad arguments it
// prints a line on stderr and exits 2. No dependencies: Node 20 has crypto.subtle
// globally, and WebSocket with --experimental-websocket (by default from Node 22).

import { readFileSync } from "node:fs";

const TIMEOUT_MS = 10_000;
const USAGE =
  "usage: webcrypto_client.mjs <ws-url> <roomId> <pkcs8-der-or-pem-file> " +
  '[--fingerprint "sha-256 AB:..."] [--send-private-jwk] [--tamper]';

function fail(message) {
  process.stderr.write(`webcrypto_client: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { positional: [], fingerprint: undefined, sendPrivateJwk: false, tamper: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--fingerprint") {
      if (i + 1 >= argv.length) fail("--fingerprint needs a value\n" + USAGE);
      opts.fingerprint = argv[++i];
    } else if (a.startsWith("--fingerprint=")) {
      opts.fingerprint = a.slice("--fingerprint=".length);
    } else if (a === "--send-private-jwk") {
      opts.sendPrivateJwk = true;
    } else if (a === "--tamper") {
      opts.tamper = true;
    } else if (a === "-h" || a === "--help") {
      process.stdout.write(USAGE + "\n");
      process.exit(0);
    } else if (a.startsWith("--")) {
      fail(`unknown option ${a}\n${USAGE}`);
    } else {
      opts.positional.push(a);
    }
  }
  if (opts.positional.length !== 3) fail(USAGE);
  return opts;
}

// PKCS#8 DER from a file holding either DER or a "PRIVATE KEY" PEM block.
function readPkcs8(path) {
  let bytes;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    fail(`cannot read ${path}: ${e.message}`);
  }
  const text = bytes.toString("latin1");
  if (!text.includes("-----BEGIN")) return new Uint8Array(bytes);
  const m = text.match(/-----BEGIN PRIVATE KEY-----([\s\S]*?)-----END PRIVATE KEY-----/);
  if (!m) fail(`${path}: expected a PKCS#8 "BEGIN PRIVATE KEY" PEM block (or raw DER)`);
  return new Uint8Array(Buffer.from(m[1].replace(/\s+/g, ""), "base64"));
}

function base64url(bytes) {
  return Buffer.from(bytes).toString("base64url"); // RFC 4648 §5, no padding
}

// The same payload with one hex digit of the nonce changed.
function tampered(payload) {
  const copy = structuredClone(payload);
  const nonce = String(copy.nonce ?? "");
  if (nonce.length === 0) {
    copy.nonce = "0";
  } else {
    const last = nonce[nonce.length - 1];
    copy.nonce = nonce.slice(0, -1) + (last === "0" ? "1" : "0");
  }
  return copy;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const [url, roomId, keyPath] = opts.positional;
  if (typeof WebSocket === "undefined") {
    fail("no global WebSocket; run with node --experimental-websocket (Node 20/21)");
  }
  if (!globalThis.crypto?.subtle) fail("no global crypto.subtle (Node 20 or later is needed)");

  const der = readPkcs8(keyPath);
  let privateKey;
  try {
    privateKey = await crypto.subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]);
  } catch (e) {
    fail(`${keyPath} is not a PKCS#8 P-256 private key: ${e.message}`);
  }
  const exported = await crypto.subtle.exportKey("jwk", privateKey);
  let jwk;
  if (opts.sendPrivateJwk) {
    jwk = exported; // as exported, "d" included: what must never be sent
  } else {
    jwk = { ...exported };
    delete jwk.d;
    delete jwk.key_ops;
    delete jwk.ext;
  }

  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    fail(`cannot connect to ${url}: ${e.message}`);
  }

  let done = false;
  let authSent = false;
  const timer = setTimeout(() => {
    if (done) return;
    done = true;
    try {
      ws.close();
    } catch {}
    fail(`no outcome within ${TIMEOUT_MS / 1000} s`);
  }, TIMEOUT_MS);

  const finish = (text) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    try {
      ws.close(1000);
    } catch {}
    process.stdout.write(text + "\n", () => process.exit(0));
  };

  ws.addEventListener("open", () => {
    const request = { type: "request", roomId };
    if (opts.fingerprint !== undefined) request.fingerprint = opts.fingerprint;
    ws.send(JSON.stringify(request));
  });

  ws.addEventListener("message", async (event) => {
    if (done) return;
    if (typeof event.data !== "string") return; // the protocol uses text frames only
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (msg.type === "error" || (authSent && msg.type === "welcome")) {
      finish(JSON.stringify(msg));
      return;
    }
    if (msg.type === "challenge" && !authSent) {
      authSent = true;
      try {
        const signed = new TextEncoder().encode(JSON.stringify(msg.payload));
        const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey, signed);
        const payload = opts.tamper ? tampered(msg.payload) : msg.payload;
        ws.send(
          JSON.stringify({
            type: "auth",
            method: "webcrypto",
            payload,
            signature: base64url(new Uint8Array(signature)),
            publicKey: jwk,
          }),
        );
      } catch (e) {
        if (!done) {
          done = true;
          fail(`cannot answer the challenge: ${e.message}`);
        }
      }
    }
  });

  ws.addEventListener("error", (event) => {
    if (done) return;
    done = true;
    fail(`connection to ${url} failed${event?.message ? `: ${event.message}` : ""}`);
  });

  ws.addEventListener("close", (event) => {
    if (done) return;
    done = true;
    fail(`connection closed (code ${event.code}) before an outcome`);
  });
}

main().catch((e) => fail(e?.stack ?? String(e)));
