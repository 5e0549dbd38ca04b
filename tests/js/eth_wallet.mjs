// An Ethereum wallet for the tests, built on ethers v6 (an implementation independent of
// the server's): EIP-55 addresses, EIP-191 personal_sign, and a protocol v1 client that
// answers a Sign-In with Ethereum (EIP-4361) challenge.
//
//   node --experimental-websocket --no-warnings tests/js/eth_wallet.mjs <command> ...
//
//   address <private-key-hex>
//       Print the EIP-55 checksummed address of the key.
//   sign <private-key-hex> <message-file>
//       Sign the file's content, read as UTF-8 exactly as it is (no trimming, a BOM is
//       kept), with personal_sign; print the 0x-prefixed 65-byte signature (r || s || v).
//   join <ws-url> <roomId> <private-key-hex> [--address-case lower|checksum]
//        [--tamper FIELD] [--wrong-key HEX]
//       Ask to join the room with the key's address (checksummed by default), sign the
//       SIWE message of the challenge ("siwe") and send it back with method "eth".
//       --address-case lower  send the address in lowercase in the request.
//       --tamper FIELD        change the value of one field of the SIWE message before
//                             signing and sending it; FIELD is one of domain, uri, nonce,
//                             chain, issued, statement.
//       --wrong-key HEX       sign with this key instead (the request keeps the address
//                             of <private-key-hex>).
//       Prints exactly one line on stdout, the JSON of the outcome: the first "welcome" or
//       "error" frame after auth, or an "error" frame received before it; or, when the
//       challenge carries no SIWE message, the challenge itself. Then closes the socket
//       and exits 0. On a timeout (10 s), a connection failure or bad arguments it prints
//       a line on stderr and exits 2.
//
// Private keys are 32 bytes of hex, with or without "0x". Depends on ethers and Node
// built-ins only; Node 20 needs --experimental-websocket for the global WebSocket.

import { readFileSync } from "node:fs";
import { Wallet } from "ethers";

const TIMEOUT_MS = 10_000;
const TAMPER_FIELDS = ["domain", "uri", "nonce", "chain", "issued", "statement"];
const USAGE = [
  "usage: eth_wallet.mjs address <private-key-hex>",
  "       eth_wallet.mjs sign <private-key-hex> <message-file>",
  "       eth_wallet.mjs join <ws-url> <roomId> <private-key-hex> [--address-case lower|checksum]",
  `            [--tamper ${TAMPER_FIELDS.join("|")}] [--wrong-key HEX]`,
].join("\n");

function fail(message) {
  process.stderr.write(`eth_wallet: ${message}\n`);
  process.exit(2);
}

function wallet(hex, what = "private key") {
  const s = String(hex).trim();
  const prefixed = /^0x/i.test(s) ? "0x" + s.slice(2) : "0x" + s;
  if (!/^0x[0-9a-fA-F]{64}$/.test(prefixed)) fail(`${what} must be 32 bytes of hex, got ${JSON.stringify(hex)}`);
  try {
    return new Wallet(prefixed);
  } catch (e) {
    fail(`invalid ${what}: ${e.shortMessage ?? e.message}`);
  }
}

function println(text) {
  process.stdout.write(text + "\n", () => process.exit(0));
}

// ---------------------------------------------------------------------------------------
// Tampering with one field of an EIP-4361 message:
//
//   ${scheme}://${domain} wants you to sign in with your Ethereum account:   (scheme optional)
//   ${address}
//
//   ${statement}                                                             (optional)
//
//   URI: ${uri}
//   Version: 1
//   Chain ID: ${chain-id}
//   Nonce: ${nonce}
//   Issued At: ${issued-at}
//   ...

const PREAMBLE_SUFFIX = " wants you to sign in with your Ethereum account:";

// Lines split on "\n"; a "\r" ending a line stays outside the value edited.
function splitLines(text) {
  return text.split("\n").map((line) =>
    line.endsWith("\r") ? { body: line.slice(0, -1), eol: "\r" } : { body: line, eol: "" },
  );
}

function joinLines(lines) {
  return lines.map((l) => l.body + l.eol).join("\n");
}

// Replace the value of the first line starting with `prefix` by edit(value).
function editTagged(lines, prefix, edit) {
  const line = lines.find((l) => l.body.startsWith(prefix));
  if (!line) fail(`cannot tamper: the SIWE message has no "${prefix.trim()}" line`);
  line.body = prefix + edit(line.body.slice(prefix.length));
}

function otherChar(c) {
  return c === "0" ? "1" : "0";
}

// One second later, or earlier when the seconds are 59, keeping the text's format.
function shiftOneSecond(timestamp) {
  const m = timestamp.match(/^(.*T\d{2}:\d{2}:)(\d{2})(.*)$/);
  if (!m) fail(`cannot tamper: "Issued At" is not an RFC 3339 timestamp: ${JSON.stringify(timestamp)}`);
  const sec = Number(m[2]);
  const moved = sec >= 59 ? sec - 1 : sec + 1;
  return m[1] + String(moved).padStart(2, "0") + m[3];
}

function tamper(text, field) {
  const lines = splitLines(text);
  switch (field) {
    case "domain": {
      const first = lines[0];
      if (!first || !first.body.endsWith(PREAMBLE_SUFFIX)) fail("cannot tamper: no SIWE preamble line");
      const authority = first.body.slice(0, -PREAMBLE_SUFFIX.length);
      const sep = authority.indexOf("://");
      first.body =
        (sep >= 0
          ? authority.slice(0, sep + 3) + "evil." + authority.slice(sep + 3)
          : "evil." + authority) + PREAMBLE_SUFFIX;
      break;
    }
    case "uri":
      editTagged(lines, "URI: ", (v) => v + "/x");
      break;
    case "nonce":
      editTagged(lines, "Nonce: ", (v) => (v.length === 0 ? "0" : v.slice(0, -1) + otherChar(v[v.length - 1])));
      break;
    case "chain":
      editTagged(lines, "Chain ID: ", (v) => {
        if (!/^\d+$/.test(v)) fail(`cannot tamper: "Chain ID" is not a number: ${JSON.stringify(v)}`);
        return v === "1" ? "5" : (BigInt(v) + 1n).toString();
      });
      break;
    case "issued":
      editTagged(lines, "Issued At: ", shiftOneSecond);
      break;
    case "statement": {
      // Line 0 preamble, line 1 address, line 2 empty, line 3 the statement when present.
      const line = lines[3];
      if (!(lines.length > 4 && lines[2].body === "" && line.body !== "" && !line.body.startsWith("URI: "))) {
        fail("cannot tamper: the SIWE message has no statement");
      }
      line.body += " now";
      break;
    }
    default:
      fail(`unknown --tamper field ${JSON.stringify(field)} (one of ${TAMPER_FIELDS.join(", ")})`);
  }
  const out = joinLines(lines);
  if (out === text) fail(`tampering with ${field} left the message unchanged`);
  return out;
}

// ---------------------------------------------------------------------------------------
// Commands

function cmdAddress(args) {
  if (args.length !== 1) fail(USAGE);
  println(wallet(args[0]).address);
}

async function cmdSign(args) {
  if (args.length !== 2) fail(USAGE);
  const w = wallet(args[0]);
  let bytes;
  try {
    bytes = readFileSync(args[1]);
  } catch (e) {
    fail(`cannot read ${args[1]}: ${e.message}`);
  }
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    fail(`${args[1]} is not valid UTF-8`);
  }
  println(await w.signMessage(text));
}

function parseJoinArgs(argv) {
  const opts = { positional: [], addressCase: "checksum", tamper: undefined, wrongKey: undefined };
  const value = (i, name) => {
    if (i + 1 >= argv.length) fail(`${name} needs a value\n${USAGE}`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--address-case") {
      opts.addressCase = value(i++, a);
    } else if (a === "--tamper") {
      opts.tamper = value(i++, a);
    } else if (a === "--wrong-key") {
      opts.wrongKey = value(i++, a);
    } else if (a.startsWith("--")) {
      fail(`unknown option ${a}\n${USAGE}`);
    } else {
      opts.positional.push(a);
    }
  }
  if (opts.positional.length !== 3) fail(USAGE);
  if (opts.addressCase !== "lower" && opts.addressCase !== "checksum") {
    fail(`--address-case must be lower or checksum, got ${JSON.stringify(opts.addressCase)}`);
  }
  if (opts.tamper !== undefined && !TAMPER_FIELDS.includes(opts.tamper)) {
    fail(`--tamper must be one of ${TAMPER_FIELDS.join(", ")}, got ${JSON.stringify(opts.tamper)}`);
  }
  return opts;
}

function cmdJoin(args) {
  const opts = parseJoinArgs(args);
  const [url, roomId, keyHex] = opts.positional;
  const identity = wallet(keyHex);
  const signer = opts.wrongKey !== undefined ? wallet(opts.wrongKey, "--wrong-key") : identity;
  const address = opts.addressCase === "lower" ? identity.address.toLowerCase() : identity.address;
  if (typeof WebSocket === "undefined") {
    fail("no global WebSocket; run with node --experimental-websocket (Node 20/21)");
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

  const abort = (message) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    try {
      ws.close();
    } catch {}
    fail(message);
  };

  const finish = (text) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    try {
      ws.close(1000);
    } catch {}
    println(text);
  };

  ws.addEventListener("open", () => {
    ws.send(JSON.stringify({ type: "request", roomId, address }));
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
    if (msg === null || typeof msg !== "object") return;
    if (msg.type === "error" || (authSent && msg.type === "welcome")) {
      finish(JSON.stringify(msg));
      return;
    }
    if (msg.type === "challenge" && !authSent) {
      if (typeof msg.siwe !== "string") {
        finish(JSON.stringify(msg)); // no SIWE message to sign: the caller decides
        return;
      }
      authSent = true;
      try {
        const message = opts.tamper !== undefined ? tamper(msg.siwe, opts.tamper) : msg.siwe;
        const signature = await signer.signMessage(message);
        if (done) return;
        ws.send(
          JSON.stringify({
            type: "auth",
            method: "eth",
            payload: msg.payload,
            message,
            signature,
          }),
        );
      } catch (e) {
        abort(`cannot answer the challenge: ${e.message}`);
      }
    }
  });

  ws.addEventListener("error", (event) => {
    abort(`connection to ${url} failed${event?.message ? `: ${event.message}` : ""}`);
  });

  ws.addEventListener("close", (event) => {
    abort(`connection closed (code ${event.code}) before an outcome`);
  });
}

async function main() {
  const [command, ...args] = process.argv.slice(2);
  switch (command) {
    case "address":
      return cmdAddress(args);
    case "sign":
      return cmdSign(args);
    case "join":
      return cmdJoin(args);
    case "-h":
    case "--help":
      return println(USAGE);
    default:
      fail(command === undefined ? USAGE : `unknown command ${JSON.stringify(command)}\n${USAGE}`);
  }
}

main().catch((e) => fail(e?.stack ?? String(e)));
