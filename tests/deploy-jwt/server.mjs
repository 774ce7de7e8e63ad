// A Deploy stand-in for the integration tests that accepts a request only when its
// `Authorization: Bearer <JWT>` passes the checks Deploy's OIDC `access-token` settings make
// (issuer, audience, keyRetrievalUri / secretKey, jwsAlg, userNameClaimName,
// rolesClaimName). The checks are done by the `jose` library, not by patgate's code.
//
// Settings, from the environment:
//   PORT             port on 127.0.0.1; 0 (default) picks a free one
//   JWKS_URL         JSON Web Key Set to verify asymmetric tokens with (keyRetrievalUri)
//   HS256_SECRET     shared secret to verify HS* tokens with (secretKey)
//                    (at least one of JWKS_URL and HS256_SECRET)
//   ISSUER           required "iss"
//   AUDIENCE         required "aud" (a token's "aud" may be this string or a list holding it)
//   ALGORITHMS       comma list of accepted "alg" values, e.g. RS256 or EdDSA or HS256
//   USERNAME_CLAIM   claim holding the user name (default preferred_username)
//   ROLES_CLAIM      claim holding the roles, a list or one string (default groups)
//   ADMIN_ROLE       role that /deployit/security/check/admin answers true for (optional)
//   ROLE_PERMISSIONS JSON {"<role>": {"<scope>": ["<permission>", ...]}, ...}: what each role
//                    grants, "" being the global scope (optional; no permissions without it)
//
// A token is refused when its signature does not verify with a key of the set (or the
// secret), when its "alg" is not in ALGORITHMS (so also "none"), when "iss" or "aud" differ,
// when it is expired or not yet valid (5 s clock tolerance), when "exp" is missing, or when
// the user-name claim is missing or not a non-empty string.
//
// The key set is fetched on the first token; a token whose "kid" is not in the set makes
// the stand-in fetch the set again at once (no cool-down), so a key published later is
// found. The set is also refetched when older than 10 s.
//
// Answers:
//   GET /__stats (no token)   {"accepted": n, "refused": n, "last_refusal": "CODE: message"|null,
//                              "refusals": {"CODE": n, ...}}
//   DELETE /__stats           sets the counters back to zero
//   refused                   401 {"error": "<jose error code>", "message": "...",
//                                  "claim": "<the claim that failed, when jose names one>"}
//                             (no token: "error": "ERR_MISSING_BEARER")
//   /deployit/security/check/admin   200 application/xml <boolean>true|false</boolean>
//   /deployit/server/info            200 application/xml <server-info>...</server-info>
//   /deployit/security/role/roles    the token's roles: 200 application/xml
//                                    <list><string>ROLE</string>...</list>, or with
//                                    "Accept: application/json" ["ROLE", ...]
//   /deployit/security/granted-permissions
//                                    what ROLE_PERMISSIONS grants the token's roles, merged:
//                                    200 application/xml <map><entry key="SCOPE"><list>
//                                    <string>PERMISSION</string>...</list></entry>...</map>, or
//                                    with "Accept: application/json" {"SCOPE": [...], ...}
//   anything else            200 {"user", "roles", "path", "method", "claims", "headers"}
//                            ("headers": the request's header lines as [name, value] pairs)
//
// Prints `READY <port>` on stdout once listening; everything else goes to stderr.
// Exits on SIGTERM, SIGINT, or when stdin closes.

import { createServer } from 'node:http';
import { createRemoteJWKSet, jwtVerify, errors } from 'jose';

const CLOCK_TOLERANCE_SECONDS = 5;
const JWKS_MAX_AGE_MS = 10_000;

function fail(message) {
  process.stderr.write(`deploy-jwt: ${message}\n`);
  process.exit(2);
}

function setting(name, fallback) {
  const value = process.env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback === undefined) fail(`missing setting ${name}`);
  return fallback;
}

const port = Number(setting('PORT', '0'));
const jwksUrl = setting('JWKS_URL', '');
const secret = setting('HS256_SECRET', '');
const issuer = setting('ISSUER');
const audience = setting('AUDIENCE');
const algorithms = setting('ALGORITHMS')
  .split(',')
  .map((a) => a.trim())
  .filter((a) => a !== '');
const usernameClaim = setting('USERNAME_CLAIM', 'preferred_username');
const rolesClaim = setting('ROLES_CLAIM', 'groups');
const adminRole = setting('ADMIN_ROLE', '');
let rolePermissions = {};
try {
  rolePermissions = JSON.parse(setting('ROLE_PERMISSIONS', '{}'));
} catch (err) {
  fail(`ROLE_PERMISSIONS is not JSON: ${err.message}`);
}

if (!jwksUrl && !secret) fail('set JWKS_URL or HS256_SECRET (or both)');
if (algorithms.length === 0) fail('ALGORITHMS is empty');

const jwks = jwksUrl
  ? createRemoteJWKSet(new URL(jwksUrl), {
      cooldownDuration: 0,
      cacheMaxAge: JWKS_MAX_AGE_MS,
      timeoutDuration: 5000,
    })
  : null;
const secretKey = secret ? new TextEncoder().encode(secret) : null;

// HS* tokens are checked with the secret, all others with the key set. Which algorithms
// are allowed at all is decided before this, by the `algorithms` option.
async function keyFor(protectedHeader, token) {
  if (typeof protectedHeader.alg === 'string' && protectedHeader.alg.startsWith('HS')) {
    if (secretKey) return secretKey;
  } else if (jwks) {
    return jwks(protectedHeader, token);
  }
  throw new errors.JWKSNoMatchingKey(`no key configured for "alg" ${protectedHeader.alg}`);
}

async function verify(token) {
  const { payload } = await jwtVerify(token, keyFor, {
    issuer,
    audience,
    algorithms,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    requiredClaims: ['exp', usernameClaim],
  });
  const user = payload[usernameClaim];
  if (typeof user !== 'string' || user === '') {
    throw new errors.JWTClaimValidationFailed(
      `"${usernameClaim}" claim must be a non-empty string`,
      payload,
      usernameClaim,
      'invalid',
    );
  }
  const raw = payload[rolesClaim];
  let roles = [];
  if (Array.isArray(raw)) roles = raw.filter((r) => typeof r === 'string');
  else if (typeof raw === 'string' && raw !== '') roles = [raw];
  return { user, roles, claims: payload };
}

const stats = { accepted: 0, refused: 0, last_refusal: null, refusals: {} };

function send(res, status, type, body, extra = {}) {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

function sendJson(res, status, value, extra) {
  send(res, status, 'application/json', JSON.stringify(value), extra);
}

function refuse(res, code, message, claim) {
  stats.refused += 1;
  stats.last_refusal = `${code}: ${message}`;
  stats.refusals[code] = (stats.refusals[code] ?? 0) + 1;
  const challenge = code === 'ERR_MISSING_BEARER' ? 'Bearer' : 'Bearer error="invalid_token"';
  const body = claim === undefined ? { error: code, message } : { error: code, message, claim };
  sendJson(res, 401, body, { 'www-authenticate': challenge });
}

function xmlEscape(text) {
  return String(text).replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function wantsJson(req) {
  return /application\/json/i.test(req.headers.accept ?? '');
}

function xmlStrings(names) {
  return `<list>${names.map((n) => `<string>${xmlEscape(n)}</string>`).join('')}</list>`;
}

// What the roles grant, merged per scope, each permission once.
function granted(roles) {
  const byScope = {};
  for (const role of roles) {
    for (const [scope, permissions] of Object.entries(rolePermissions[role] ?? {})) {
      const merged = byScope[scope] ?? [];
      for (const p of permissions) if (!merged.includes(p)) merged.push(p);
      byScope[scope] = merged;
    }
  }
  return byScope;
}

async function handle(req, res) {
  // Read (and drop) any body first, as Deploy would before answering.
  for await (const _ of req);
  const url = new URL(req.url, 'http://127.0.0.1');
  const path = url.pathname;

  if (path === '/__stats') {
    if (req.method === 'DELETE') {
      Object.assign(stats, { accepted: 0, refused: 0, last_refusal: null, refusals: {} });
    }
    sendJson(res, 200, stats);
    return;
  }

  const authorization = req.headers.authorization ?? '';
  const match = /^Bearer +([^ ]+) *$/i.exec(authorization);
  if (!match) {
    refuse(res, 'ERR_MISSING_BEARER', 'no "Authorization: Bearer <JWT>" header');
    return;
  }
  let verified;
  try {
    verified = await verify(match[1]);
  } catch (err) {
    const code = typeof err?.code === 'string' ? err.code : (err?.name ?? 'Error');
    const claim = typeof err?.claim === 'string' ? err.claim : undefined;
    const detail = claim === undefined ? '' : ` (claim ${claim}, ${err.reason})`;
    refuse(res, code, `${err?.message ?? String(err)}${detail}`, claim);
    return;
  }
  stats.accepted += 1;
  const { user, roles, claims } = verified;

  if (path === '/deployit/security/check/admin') {
    const admin = adminRole !== '' && roles.includes(adminRole);
    send(res, 200, 'application/xml', `<boolean>${admin}</boolean>`);
    return;
  }
  if (path === '/deployit/server/info') {
    send(
      res,
      200,
      'application/xml',
      '<server-info><version>25.1.0</version><edition>Stand-in</edition>' +
        `<user>${xmlEscape(user)}</user></server-info>`,
    );
    return;
  }
  if (path === '/deployit/security/role/roles') {
    if (wantsJson(req)) sendJson(res, 200, roles);
    else send(res, 200, 'application/xml', xmlStrings(roles));
    return;
  }
  if (path === '/deployit/security/granted-permissions') {
    const byScope = granted(roles);
    if (wantsJson(req)) {
      sendJson(res, 200, byScope);
    } else {
      const entries = Object.entries(byScope)
        .map(([scope, ps]) => `<entry key="${xmlEscape(scope)}">${xmlStrings(ps)}</entry>`)
        .join('');
      send(res, 200, 'application/xml', `<map>${entries}</map>`);
    }
    return;
  }
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
  }
  sendJson(res, 200, { user, roles, path, method: req.method, claims, headers });
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    process.stderr.write(`deploy-jwt: ${err?.stack ?? err}\n`);
    if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: String(err) });
    else res.end();
  });
});
// Longer than a client pool's idle time, so pooled connections are not closed under it.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
}).catch((err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.message}`));

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();

process.stdout.write(`READY ${server.address().port}\n`);
