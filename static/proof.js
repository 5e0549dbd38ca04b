// Proving a key to keygate from a page: a browser key (WebCrypto P-256, kept in
// IndexedDB and not extractable), a passkey, a wallet (EIP-1193), or an SSH
// signature pasted back. Used by the sign-in and invite pages.

export const b64u = {
  encode(buf) {
    let s = "";
    for (const byte of new Uint8Array(buf)) s += String.fromCharCode(byte);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
  decode(s) {
    const b = atob(s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "="));
    return Uint8Array.from(b, (c) => c.charCodeAt(0)).buffer;
  },
};

const ALG = { name: "ECDSA", namedCurve: "P-256" };

function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("keygate", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("keys");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Reads (no value) or writes a structured-cloneable value kept in IndexedDB. */
export async function stored(name, value) {
  const conn = await db();
  return new Promise((resolve, reject) => {
    const tx = conn.transaction("keys", value === undefined ? "readonly" : "readwrite");
    const store = tx.objectStore("keys");
    const req = value === undefined ? store.get(name) : store.put(value, name);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export function pemToDer(pem) {
  const body = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0)).buffer;
}

function derToPem(der) {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der))).match(/.{1,64}/g).join("\n");
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

/** Imports a PKCS#8 key as this browser's key, kept non-extractable. */
export async function importBrowserKey(pkcs8) {
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, ALG, false, ["sign"]);
  // The public half comes from a transient extractable import.
  const temp = await crypto.subtle.importKey("pkcs8", pkcs8, ALG, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", temp);
  delete jwk.d;
  const publicKey = await crypto.subtle.importKey("jwk", { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, ALG, true, ["verify"]);
  const pair = { privateKey, publicKey };
  await stored("default", pair);
  return pair;
}

/** Makes a new browser key; returns its PKCS#8 PEM backup. */
export async function newBrowserKeyWithBackup() {
  const pair = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const der = await crypto.subtle.exportKey("pkcs8", pair.privateKey);
  await importBrowserKey(der);
  return derToPem(der);
}

export async function browserKey() {
  const existing = await stored("default");
  if (existing) return existing;
  const pair = await crypto.subtle.generateKey(ALG, false, ["sign", "verify"]);
  await stored("default", pair);
  return pair;
}

/** A PublicKeyCredential as the server's JSON endpoints take it (base64url fields). */
export function credentialJSON(cred, response) {
  return { id: cred.id, rawId: b64u.encode(cred.rawId), type: cred.type, extensions: cred.getClientExtensionResults(), response };
}

export async function post(url, body) {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}) });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(json.error || `HTTP ${res.status}`);
  return json;
}

/** The `webcrypto` proof fields for a challenge payload: signed with this browser's key. */
export async function browserKeyProof(payload) {
  const pair = await browserKey();
  const text = new TextEncoder().encode(JSON.stringify(payload));
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, text);
  const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
  return { signature: b64u.encode(sig), publicKey: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } };
}

/** A passkey assertion for the server's request options, as the `webauthn` proof's `credential`. */
/**
 * Why passkeys cannot work on this page's address, or "" when they can: browsers
 * refuse WebAuthn on an IP address ("This is an invalid domain"); on this machine,
 * the same server answers at localhost.
 */
export function passkeyAddressProblem() {
  const host = location.hostname;
  const ip = /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.includes(":") || host.startsWith("[");
  if (!ip) return "";
  const loopback = host === "127.0.0.1" || host === "[::1]" || host === "::1";
  return loopback
    ? `Passkeys need a name, not an address: browsers refuse them on ${host}. Open ${location.protocol}//localhost${location.port ? `:${location.port}` : ""}${location.pathname} instead.`
    : `Passkeys need a name, not an address: browsers refuse them on ${host}. Open this page by the server's domain name.`;
}

/** The identity of the passkey this page last used, when this browser registered it. */
export function lastPasskeyIdentity() {
  const identities = JSON.parse(localStorage.getItem("keygate-passkey-identities") || "{}");
  return (lastPasskey && identities[lastPasskey]) || "";
}
let lastPasskey = null;

export async function passkeyCredential(options) {
  const problem = passkeyAddressProblem();
  if (problem) throw new Error(problem);
  const pk = options.publicKey;
  pk.challenge = b64u.decode(pk.challenge);
  // Offer the passkeys this browser registered, besides any the server offers.
  const known = JSON.parse(localStorage.getItem("keygate-passkeys") || "[]");
  const offered = new Set((pk.allowCredentials || []).map((c) => c.id));
  if (offered.size > 0 || known.length > 0) {
    pk.allowCredentials = [...(pk.allowCredentials || []), ...known.filter((id) => !offered.has(id)).map((id) => ({ type: "public-key", id }))];
  }
  for (const c of pk.allowCredentials || []) c.id = b64u.decode(c.id);
  const cred = await navigator.credentials.get({ publicKey: pk });
  lastPasskey = cred.id;
  return credentialJSON(cred, {
    authenticatorData: b64u.encode(cred.response.authenticatorData),
    clientDataJSON: b64u.encode(cred.response.clientDataJSON),
    signature: b64u.encode(cred.response.signature),
    userHandle: cred.response.userHandle ? b64u.encode(cred.response.userHandle) : null,
  });
}

/** The wallet's (EIP-1193) first account. */
export async function walletAddress() {
  if (!window.ethereum) throw new Error("no wallet found in this browser (it needs an EIP-1193 wallet such as a browser extension)");
  const [address] = await window.ethereum.request({ method: "eth_requestAccounts" });
  return address;
}

/** The wallet's personal_sign signature of a SIWE message. */
export async function walletSignature(message) {
  const address = await walletAddress();
  const hex = "0x" + Array.from(new TextEncoder().encode(message), (b) => b.toString(16).padStart(2, "0")).join("");
  return window.ethereum.request({ method: "personal_sign", params: [hex, address] });
}

export async function proveWithBrowserKey(urls) {
  const ch = await post(urls.challenge);
  return post(urls.verify, { challengeId: ch.challengeId, method: "webcrypto", payload: ch.payload, ...(await browserKeyProof(ch.payload)) });
}

export async function proveWithPasskey(urls) {
  const ch = await post(urls.challenge);
  const credential = await passkeyCredential(ch.webauthn);
  return post(urls.verify, { challengeId: ch.challengeId, method: "webauthn", payload: ch.payload, credential });
}

export async function proveWithWallet(urls) {
  const ch = await post(urls.challenge, { address: await walletAddress() });
  const signature = await walletSignature(ch.siwe);
  return post(urls.verify, { challengeId: ch.challengeId, method: "eth", payload: ch.payload, message: ch.siwe, signature });
}

/** The normalized identity of a key, as the server computes it. */
export async function identityOf(key) {
  return post("/identity", { key: typeof key === "string" ? key : JSON.stringify(key) });
}

/** This browser's key's identity (making the key if there is none yet). */
export async function browserIdentity() {
  const pair = await browserKey();
  const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
  return identityOf({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y });
}

export function download(name, text) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "application/x-pem-file" }));
  a.download = name;
  a.click();
}

/** Wires the buttons of a page that proves a key: ids browser-key, passkey, wallet, ssh-*. */
export function signIn(urls) {
  const status = document.getElementById("status");
  const run = (fn) => async (event) => {
    event.preventDefault();
    status.textContent = "Working…";
    try {
      const result = await fn(urls);
      status.textContent = "Done.";
      urls.done(result);
    } catch (e) {
      status.textContent = `Not signed in: ${e.message}`;
    }
  };
  const on = (id, fn) => document.getElementById(id)?.addEventListener("click", run(fn));
  on("browser-key", proveWithBrowserKey);
  on("passkey", proveWithPasskey);
  on("wallet", proveWithWallet);
  on("import", async (u) => {
    await importBrowserKey(pemToDer(document.getElementById("import-pem").value));
    return proveWithBrowserKey(u);
  });
  on("export", async (u) => {
    download("keygate-browser-key.pem", await newBrowserKeyWithBackup());
    return proveWithBrowserKey(u);
  });
  let sshChallenge = null;
  document.getElementById("ssh-start")?.addEventListener("click", async (event) => {
    event.preventDefault();
    try {
      sshChallenge = await post(urls.challenge);
      const cmd = document.getElementById("ssh-command");
      cmd.textContent = sshChallenge.ssh.command;
      for (const id of ["ssh-command", "ssh-signature", "ssh-send"]) document.getElementById(id).hidden = false;
      status.textContent = "Run the command in a terminal and paste the signature below.";
    } catch (e) {
      status.textContent = `Could not get a challenge: ${e.message}`;
    }
  });
  on("ssh-send", async (u) => {
    if (!sshChallenge) throw new Error("get a command first");
    const signature = document.getElementById("ssh-signature").value;
    return post(u.verify, { challengeId: sshChallenge.challengeId, method: "ssh", payload: sshChallenge.payload, signature });
  });
}
