// A real OpenID provider (oidc-provider) for the integration tests, on loopback over http.
//
// Settings, from the environment (each also as `--name=value` on the command line, e.g.
// `--port=0`; the command line wins):
//   OIDC_PORT            port on 127.0.0.1; 0 (default) picks a free one
//   OIDC_ISSUER_PATH     path part of the issuer, e.g. "/realms/other" (default: none);
//                        the issuer is http://127.0.0.1:<port><path>
//   OIDC_ISSUER          the whole issuer instead; "{port}" in it is replaced by the port
//   OIDC_CLIENT_ID       the one static client
//   OIDC_CLIENT_SECRET
//   OIDC_REDIRECT_URIS   JSON list of redirect URIs (or one URI)
//   OIDC_TOKEN_AUTH      client_secret_basic (default) or client_secret_post
//   OIDC_ACCOUNTS        JSON list of {sub, preferred_username, email, groups}
//
// Flow: GET <issuer>/auth?... -> 303 <issuer>/interaction/<uid>; POST there the form
// login=<preferred_username>&password=<anything> -> 303 <issuer>/auth/<uid> -> 303 to the
// client's redirect URI with code and state. Consent is never asked. An unknown login name
// gets 401 and the form again.
//
// Refresh tokens: the client may use grant_type=refresh_token; every sign-in gets one
// (with or without offline_access). A refresh reads the account again, so its ID token
// carries the groups as they are now.
//
// Control routes for the tests, outside the issuer (no authentication, loopback only):
//   POST /__control/groups?sub=S   body: JSON list of groups  -> the account's groups
//   POST /__control/revoke?sub=S   destroys the account's grants: its refresh tokens are
//                                  refused with invalid_grant; a new sign-in works
//   POST /__control/mint?count=N&prefix=P
//                                  makes N accounts (sub P-i, preferred_username Pi,
//                                  groups ["deployers"]), each with a grant and a refresh
//                                  token as a sign-in would leave them, for the
//                                  re-validation benchmark; answers the JSON list
//                                  [{sub, username, email, refresh_token}]
//
// Prints `READY <issuer>` on stdout once listening; everything else goes to stderr.
// Exits on SIGTERM, SIGINT, or when stdin closes.

import { randomBytes, generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';
import { createServer } from 'node:http';

// Keep stdout for the READY line: the library prints notices with console.info.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

// The signing key is made on a worker thread while the library loads.
const keyPair = promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
const { default: Provider } = await import('oidc-provider');

function setting(name, fallback) {
  const flag = `--${name.toLowerCase().replace(/^oidc_/, '').replaceAll('_', '-')}=`;
  const arg = process.argv.slice(2).find((a) => a.startsWith(flag));
  if (arg !== undefined) return arg.slice(flag.length);
  const env = process.env[name];
  if (env !== undefined && env !== '') return env;
  if (fallback === undefined) fail(`missing setting ${name}`);
  return fallback;
}

function fail(message) {
  process.stderr.write(`provider: ${message}\n`);
  process.exit(2);
}

function json(name, text) {
  try {
    return JSON.parse(text);
  } catch (err) {
    return fail(`${name} is not JSON: ${err.message}`);
  }
}

const port = Number(setting('OIDC_PORT', '0'));
const issuerPath = setting('OIDC_ISSUER_PATH', '').replace(/\/+$/, '');
const issuerTemplate = setting('OIDC_ISSUER', '');
const clientId = setting('OIDC_CLIENT_ID');
const clientSecret = setting('OIDC_CLIENT_SECRET');
const redirectText = setting('OIDC_REDIRECT_URIS');
const redirectUris = redirectText.trim().startsWith('[')
  ? json('OIDC_REDIRECT_URIS', redirectText)
  : [redirectText];
const tokenAuth = setting('OIDC_TOKEN_AUTH', 'client_secret_basic');
if (!['client_secret_basic', 'client_secret_post'].includes(tokenAuth)) {
  fail(`OIDC_TOKEN_AUTH must be client_secret_basic or client_secret_post, not ${tokenAuth}`);
}
const accounts = json('OIDC_ACCOUNTS', setting('OIDC_ACCOUNTS', '[]'));
const bySub = new Map(accounts.map((a) => [String(a.sub), a]));
// An account signs in with its login name, which is its preferred_username unless it has
// a `login` of its own (two people claiming one username).
const byLogin = new Map(accounts.map((a) => [String(a.login ?? a.preferred_username), a]));

const SCOPES = ['openid', 'profile', 'email', 'groups', 'offline_access'];
// Grants made per account, so that the tests can revoke them.
const grantsBySub = new Map();

// The request handler is set once the provider exists; the provider needs the port first.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));
server.keepAliveTimeout = 1000;
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const actualPort = server.address().port;
const issuer = issuerTemplate
  ? issuerTemplate.replaceAll('{port}', String(actualPort)).replace(/\/+$/, '')
  : `http://127.0.0.1:${actualPort}${issuerPath}`;
const mount = new URL(issuer).pathname.replace(/\/+$/, '');

const { privateKey } = await keyPair;
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'test-rs256' };

// Kept in memory without a size limit: the library's development adapter forgets all
// but the last thousand records, and the re-validation benchmark holds ten thousand
// grants with their refresh tokens.
const stores = new Map();
const grantMembers = new Map();
class MapAdapter {
  constructor(name) {
    this.name = name;
    if (!stores.has(name)) stores.set(name, new Map());
    this.store = stores.get(name);
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
    this.store.set(id, { payload, expiresAt });
    if (payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, []);
      grantMembers.get(payload.grantId).push([this.name, id]);
    }
    if (payload.uid) this.store.set(`uid:${payload.uid}`, { id });
    if (payload.userCode) this.store.set(`userCode:${payload.userCode}`, { id });
  }

  async find(id) {
    const entry = this.store.get(id);
    if (!entry || !entry.payload) return undefined;
    if (entry.expiresAt && entry.expiresAt < Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    const entry = this.store.get(`uid:${uid}`);
    return entry ? this.find(entry.id) : undefined;
  }

  async findByUserCode(userCode) {
    const entry = this.store.get(`userCode:${userCode}`);
    return entry ? this.find(entry.id) : undefined;
  }

  async consume(id) {
    const entry = this.store.get(id);
    if (entry?.payload) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const [name, id] of grantMembers.get(grantId) ?? []) stores.get(name)?.delete(id);
    grantMembers.delete(grantId);
  }
}

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: tokenAuth,
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  scopes: SCOPES,
  // The claims of the requested scopes go into the ID token too, not only to userinfo.
  conformIdTokenClaims: false,
  // A refresh token at every sign-in, as providers that issue them for offline_access
  // do without a consent prompt (Okta, Entra ID, Keycloak).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    RefreshToken: 86400,
  },
  async renderError(ctx, out) {
    ctx.type = 'text/plain; charset=utf-8';
    ctx.body = `${out.error}: ${out.error_description ?? ''}\n`;
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
  },
  interactions: {
    url: (_ctx, interaction) => `${mount}/interaction/${interaction.uid}`,
  },
  async findAccount(_ctx, sub) {
    const account = bySub.get(String(sub));
    if (!account) return undefined;
    return {
      accountId: String(account.sub),
      async claims() {
        return {
          sub: String(account.sub),
          preferred_username: account.preferred_username,
          email: account.email,
          groups: account.groups ?? [],
        };
      },
    };
  },
  // No consent screen: every login grants the supported scopes to the one client.
  async loadExistingGrant(ctx) {
    const { Grant } = ctx.oidc.provider;
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const grant = await Grant.find(grantId);
      if (grant) return grant;
    }
    const grant = new Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPES.join(' '));
    const id = await grant.save();
    const sub = String(ctx.oidc.session.accountId);
    if (!grantsBySub.has(sub)) grantsBySub.set(sub, new Set());
    grantsBySub.get(sub).add(id);
    return grant;
  },
});

// Errors by name and description only: no tokens, codes or secrets.
for (const event of ['server_error', 'authorization.error', 'userinfo.error']) {
  provider.on(event, (_ctx, err) => {
    process.stderr.write(`provider: ${event}: ${err.name} ${err.error_description ?? err.message}\n`);
  });
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function form(res, status, uid, message) {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(`<!doctype html><title>Sign in</title>${message ? `<p>${escapeHtml(message)}</p>` : ''}
<form method="post" action="${escapeHtml(`${mount}/interaction/${uid}`)}">
<input name="login" autofocus><input name="password" type="password"><button>Sign in</button>
</form>\n`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res, uid) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    res.statusCode = 400;
    res.end(`${err.name}: ${err.message}\n`);
    return;
  }
  if (details.uid !== uid) {
    res.statusCode = 400;
    res.end('interaction cookie does not match the URL\n');
    return;
  }
  if (req.method === 'GET') {
    form(res, 200, uid);
    return;
  }
  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.end();
    return;
  }
  const body = await readForm(req);
  const { name } = details.prompt;
  if (name === 'login') {
    const account = byLogin.get(body.get('login') ?? '');
    if (!account) {
      form(res, 401, uid, 'Unknown user');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: String(account.sub) } });
    return;
  }
  if (name === 'consent') {
    // Not reached while loadExistingGrant grants everything; kept for completeness.
    const grant = new provider.Grant({ clientId: details.params.client_id, accountId: details.session.accountId });
    grant.addOIDCScope(SCOPES.join(' '));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.statusCode = 400;
  res.end(`unexpected prompt ${name}\n`);
}

/** Accounts with a refresh token each, as if every one of them had signed in. */
async function mint(count, prefix) {
  const client = await provider.Client.find(clientId);
  const now = Math.floor(Date.now() / 1000);
  const made = [];
  for (let i = 0; i < count; i += 1) {
    const account = {
      sub: `${prefix}-${i}`, preferred_username: `${prefix}${i}`, email: `${prefix}${i}@example.com`, groups: ['deployers'],
    };
    bySub.set(account.sub, account);
    byLogin.set(account.preferred_username, account);
    const grant = new provider.Grant({ clientId, accountId: account.sub });
    grant.addOIDCScope(SCOPES.join(' '));
    const grantId = await grant.save();
    grantsBySub.set(account.sub, new Set([grantId]));
    const refreshToken = new provider.RefreshToken({
      client, accountId: account.sub, grantId, scope: SCOPES.join(' '), gty: 'authorization_code', authTime: now, iiat: now, rotations: 0,
    });
    made.push({
      sub: account.sub, username: account.preferred_username, email: account.email, refresh_token: await refreshToken.save(),
    });
  }
  return made;
}

async function control(req, res, url) {
  if (url.pathname === '/__control/mint' && req.method === 'POST') {
    const count = Math.min(Number(url.searchParams.get('count') ?? '0'), 1_000_000);
    const made = await mint(count, url.searchParams.get('prefix') || 'bench');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(made));
    return;
  }
  const sub = url.searchParams.get('sub') ?? '';
  const account = bySub.get(sub);
  if (req.method !== 'POST' || !account) {
    res.statusCode = account ? 405 : 404;
    res.end();
    return;
  }
  if (url.pathname === '/__control/groups') {
    const body = [];
    for await (const chunk of req) body.push(chunk);
    account.groups = JSON.parse(Buffer.concat(body).toString('utf8'));
  } else if (url.pathname === '/__control/revoke') {
    for (const id of grantsBySub.get(sub) ?? []) {
      const grant = await provider.Grant.find(id);
      if (grant) await grant.destroy();
    }
    grantsBySub.delete(sub);
  } else {
    res.statusCode = 404;
    res.end();
    return;
  }
  res.statusCode = 204;
  res.end();
}

const callback = provider.callback();
const interactionPath = new RegExp(`^${mount.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/interaction/([^/?]+)$`);
handler = (req, res) => {
  const path = req.url.split('?')[0];
  if (path.startsWith('/__control/')) {
    control(req, res, new URL(req.url, 'http://127.0.0.1')).catch((err) => {
      process.stderr.write(`provider: control: ${err.name} ${err.message}\n`);
      res.statusCode = 500;
      res.end();
    });
    return;
  }
  const match = interactionPath.exec(path);
  if (match) {
    interaction(req, res, match[1]).catch((err) => {
      process.stderr.write(`provider: interaction: ${err.name} ${err.message}\n`);
      if (!res.headersSent) res.statusCode = 500;
      res.end();
    });
    return;
  }
  if (mount) {
    if (path !== mount && !path.startsWith(`${mount}/`)) {
      res.statusCode = 404;
      res.end();
      return;
    }
    // As a framework mounting it would: the provider works out its mount path from this.
    req.originalUrl = req.url;
    req.url = req.url.slice(mount.length) || '/';
  }
  callback(req, res);
};

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

process.stdout.write(`READY ${issuer}\n`);
