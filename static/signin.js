// The sign-in page: prove a key, then go where the server says.
import { signIn } from "/static/proof.js";

signIn({ challenge: "/signin/challenge", verify: "/signin/verify", done: (r) => { location.href = r.next; } });
