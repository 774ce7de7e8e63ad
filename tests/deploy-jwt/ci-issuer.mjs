// A CI system's OpenID issuer for the token-exchange tests, as GitHub Actions and GitLab
// run one: a discovery document and a JWKS on 127.0.0.1, and identity tokens signed by
// the `jose` library (not by patgate's code), shaped by the test.
//
// Prints `READY <issuer URL>` once listening. Exits when stdin closes.
//
//   GET  /.well-known/openid-configuration   {"issuer", "jwks_uri"}
//   GET  /jwks                                the current public key (503 while down)
//   POST /mint     {"claims": {...}, "sign": "key"|"other-key"|"none"|"hs256-public"}
//                  → the compact JWT; iss, iat, exp (5 min), jti are filled in unless given
//   POST /rotate   a new signing key with a new kid; the old one leaves the JWKS
//   POST /down     {"down": true|false}: the JWKS answers 503 while down
//   GET  /stats    {"jwks_fetches": n}

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';

let key = await newKey();
const other = await newKey();
let down = false;
let jwksFetches = 0;
let issuer = '';

async function newKey() {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  jwk.kid = randomUUID();
  jwk.alg = 'RS256';
  jwk.use = 'sig';
  return { publicKey, privateKey, jwk };
}

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function mint({ claims = {}, sign = 'key' }) {
  const now = Math.floor(Date.now() / 1000);
  const full = { iss: issuer, iat: now, nbf: now, exp: now + 300, jti: randomUUID(), ...claims };
  for (const [name, value] of Object.entries(full)) {
    if (value === null) delete full[name];
  }
  if (sign === 'none') {
    return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(full)}.`;
  }
  if (sign === 'hs256-public') {
    // The classic confusion: HMAC with the public key as the secret.
    const secret = new TextEncoder().encode(await exportSPKI(key.publicKey));
    return new SignJWT(full).setProtectedHeader({ alg: 'HS256', kid: key.jwk.kid }).sign(secret);
  }
  const signer = sign === 'other-key' ? other : key;
  // "other-key" claims the current kid: only the signature tells them apart.
  return new SignJWT(full)
    .setProtectedHeader({ alg: 'RS256', kid: key.jwk.kid, typ: 'JWT' })
    .sign(signer.privateKey);
}

function body(req) {
  return new Promise((resolve) => {
    let text = '';
    req.on('data', (chunk) => { text += chunk; });
    req.on('end', () => resolve(text ? JSON.parse(text) : {}));
  });
}

const server = http.createServer(async (req, res) => {
  const send = (status, value, type = 'application/json') => {
    res.writeHead(status, { 'content-type': type });
    res.end(typeof value === 'string' ? value : JSON.stringify(value));
  };
  try {
    if (req.method === 'GET' && req.url === '/.well-known/openid-configuration') {
      return send(200, { issuer, jwks_uri: `${issuer}/jwks` });
    }
    if (req.method === 'GET' && req.url === '/jwks') {
      jwksFetches += 1;
      if (down) return send(503, { error: 'down' });
      return send(200, { keys: [key.jwk] });
    }
    if (req.method === 'GET' && req.url === '/stats') return send(200, { jwks_fetches: jwksFetches });
    if (req.method === 'POST' && req.url === '/mint') return send(200, await mint(await body(req)), 'text/plain');
    if (req.method === 'POST' && req.url === '/rotate') {
      key = await newKey();
      return send(200, { kid: key.jwk.kid });
    }
    if (req.method === 'POST' && req.url === '/down') {
      down = Boolean((await body(req)).down);
      return send(200, { down });
    }
    return send(404, { error: 'not found' });
  } catch (e) {
    return send(500, { error: String(e) });
  }
});

server.listen(0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  console.log(`READY ${issuer}`);
});

const stop = () => { server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
