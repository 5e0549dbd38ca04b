// Registers a passkey or security key with keygate: options from the server,
// navigator.credentials.create in the browser, the result back to the server.

import { b64u, credentialJSON, passkeyAddressProblem, post } from "/static/proof.js";

export async function registerPasskey(label) {
  const problem = passkeyAddressProblem();
  if (problem) throw new Error(problem);
  const { registrationId, options } = await post("/webauthn/register/start", { label });
  const pk = options.publicKey;
  pk.challenge = b64u.decode(pk.challenge);
  pk.user.id = b64u.decode(pk.user.id);
  for (const c of pk.excludeCredentials || []) c.id = b64u.decode(c.id);
  const cred = await navigator.credentials.create({ publicKey: pk });
  const credential = credentialJSON(cred, {
    attestationObject: b64u.encode(cred.response.attestationObject),
    clientDataJSON: b64u.encode(cred.response.clientDataJSON),
    transports: cred.response.getTransports ? cred.response.getTransports() : [],
  });
  const result = await post("/webauthn/register/finish", { registrationId, credential, label });
  // Remember the credential id, so that this browser can offer it when signing in
  // even if the authenticator did not keep a discoverable credential.
  const known = JSON.parse(localStorage.getItem("keygate-passkeys") || "[]");
  localStorage.setItem("keygate-passkeys", JSON.stringify([...new Set([...known, result.credentialId])]));
  // And its identity, so that a refused page can say which identity to send the host.
  const identities = JSON.parse(localStorage.getItem("keygate-passkey-identities") || "{}");
  identities[result.credentialId] = result.identity;
  localStorage.setItem("keygate-passkey-identities", JSON.stringify(identities));
  return result;
}

const form = document.getElementById("register");
// Said before anyone tries: the browser's own words ("invalid domain") explain nothing.
if (form && passkeyAddressProblem()) {
  const warning = document.createElement("p");
  warning.className = "error";
  warning.setAttribute("role", "alert");
  const localhost = `${location.protocol}//localhost${location.port ? `:${location.port}` : ""}${location.pathname}`;
  warning.append(passkeyAddressProblem().replace(/ Open .*$/, " "));
  if (["127.0.0.1", "[::1]"].includes(location.hostname)) {
    const link = document.createElement("a");
    link.href = localhost;
    link.textContent = `Open ${localhost}`;
    warning.append(link);
  }
  form.before(warning);
}
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = document.getElementById("status");
    status.textContent = "Follow your browser's prompt…";
    try {
      const result = await registerPasskey(document.getElementById("label").value);
      document.getElementById("identity").textContent = result.identity;
      document.getElementById("fingerprint").textContent = result.keyFingerprint;
      document.getElementById("result").hidden = false;
      status.textContent = "Passkey created.";
    } catch (e) {
      status.textContent = `Could not create a passkey: ${e.message}`;
    }
  });
}
