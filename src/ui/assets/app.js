// patgate pages: every view is built here from the JSON API under /patgate/api/v1/.
// User-supplied strings only ever become text nodes (never markup), and every state
// change sends the session's CSRF token.
'use strict';

const API = '/patgate/api/v1';
const EXPIRATIONS = {
  '7d': '7 days', '30d': '30 days', '45d': '45 days', '60d': '60 days', '1y': '1 year', 'never': 'No expiration',
};
const EXPIRATION_SECONDS = { '7d': 7 * 86400, '30d': 30 * 86400, '45d': 45 * 86400, '60d': 60 * 86400, '1y': 365 * 86400 };
const PILL_CLASS = {
  never: 'pill-neutral', days: 'pill-neutral', warning_days: 'pill-warning', warning_hours: 'pill-warning', expired: 'pill-expired',
};
const AUDIT_ACTIONS = [
  'token.created', 'token.deleted', 'token.expired', 'token.used_from_new_address', 'token.refused',
  'signin.succeeded', 'signin.failed', 'signout', 'settings.changed', 'user.disabled', 'user.enabled',
  'user.email_changed', 'user.roles_changed', 'user.suspended', 'user.reinstated', 'smtp_server.created', 'smtp_server.changed', 'smtp_server.deleted', 'smtp_server.test_mail',
];

let me = null;
let idCounter = 0;

// ------------------------------------------------------------------ DOM helpers

/** An element; string and number children become text nodes, never markup. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'value') el.value = value;
    else if (key === 'checked') el.checked = Boolean(value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function uid(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A labelled field: label, control, optional hint. */
function field(labelText, control, opts = {}) {
  const id = control.id || uid('f');
  control.id = id;
  const hintId = opts.hint ? uid('hint') : null;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  if (opts.required) control.required = true;
  return h('div', { class: `field${opts.wide ? ' wide' : ''}` },
    h('label', { for: id }, labelText, opts.required ? h('span', { class: 'req', 'aria-hidden': 'true' }, '*') : null),
    control,
    opts.hint ? h('span', { class: 'hint', id: hintId }, opts.hint) : null);
}

/** An on/off switch with its label and explanation. */
function switchRow(labelText, hintText, checked, id) {
  const input = h('input', { type: 'checkbox', role: 'switch', id, checked });
  const hintId = uid('hint');
  input.setAttribute('aria-describedby', hintId);
  return {
    input,
    row: h('div', { class: 'switch-row' },
      h('span', { class: 'switch' }, input, h('span', { class: 'track', 'aria-hidden': 'true' })),
      h('div', { class: 'text' }, h('label', { for: id }, labelText), h('p', { class: 'hint', id: hintId }, hintText))),
  };
}

/** The place beside an action where its error (or success) is shown. */
function messageSlot() {
  return h('p', { class: 'error-text', role: 'alert', 'aria-live': 'assertive' });
}

function showError(slot, error) {
  slot.className = 'error-text';
  slot.textContent = error ? error.message || String(error) : '';
}

function showStatus(slot, text) {
  slot.className = 'status-text';
  slot.textContent = text;
}

function callout(kind, ...content) {
  const icons = { info: 'i', warning: '!', error: '!', success: '✓' };
  return h('div', { class: `callout callout-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'icon', 'aria-hidden': 'true' }, icons[kind]),
    h('div', {}, content));
}

function pageHead(title, lead, ...right) {
  return h('div', { class: 'page-head' },
    h('div', {}, h('h1', {}, title), lead ? h('p', { class: 'lead' }, lead) : null),
    right.length ? h('div', { class: 'actions' }, right) : null);
}

function setMain(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children.flat().filter(Boolean));
}

/** Disables a button while its action runs. */
async function busy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ time

const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZoneName: 'short',
});

/** An instant in the browser's own time zone, with the exact UTC value in `datetime`. */
function time(iso, empty) {
  if (!iso) return h('span', { class: 'muted' }, empty || '—');
  const at = new Date(iso);
  return h('time', { datetime: iso, title: at.toISOString() }, dateTimeFormat.format(at));
}

/** The exact time left until `iso`, counted from now (time zones do not enter into it). */
function remaining(iso) {
  let seconds = Math.floor((new Date(iso).getTime() - Date.now()) / 1000);
  if (seconds <= 0) return 'expired';
  const days = Math.floor(seconds / 86400);
  seconds -= days * 86400;
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds - hours * 3600) / 60);
  const parts = [];
  if (days) parts.push(`${days} day${days === 1 ? '' : 's'}`);
  if (hours) parts.push(`${hours} hour${hours === 1 ? '' : 's'}`);
  if (!days) parts.push(`${minutes} minute${minutes === 1 ? '' : 's'}`);
  return `${parts.join(', ')} left`;
}

function pill(expiresIn, expiresAt) {
  const label = expiresIn.state === 'never' ? 'Never' : expiresIn.label;
  const el = h('span', { class: `pill ${PILL_CLASS[expiresIn.state] || 'pill-neutral'}`, 'data-state': expiresIn.state }, label);
  if (expiresAt && expiresIn.state !== 'expired') el.title = remaining(expiresAt);
  return el;
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && me && me.csrf_token) headers['X-CSRF-Token'] = me.csrf_token;
  let response;
  try {
    response = await fetch(API + path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'The gateway could not be reached. Check your connection and try again.');
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && me && path !== '/session') {
      goSignIn();
      throw new ApiError(401, 'unauthenticated', 'Your session has ended. Sign in again.');
    }
    const message = data && data.message
      ? sentence(data.message)
      : `The request failed (HTTP ${response.status}).`;
    throw new ApiError(response.status, data && data.error, message);
  }
  return data;
}

function sentence(text) {
  const s = String(text);
  const first = s.charAt(0).toUpperCase() + s.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

function goSignIn() {
  const next = location.pathname === '/patgate/signin' ? '/patgate/' : location.pathname + location.search;
  location.replace(`/patgate/signin?next=${encodeURIComponent(next)}`);
}

// ------------------------------------------------------------------ shell

const NAV = [
  { href: '/patgate/', text: 'Access tokens' },
  { href: '/patgate/admin/settings', text: 'System settings', admin: true },
  { href: '/patgate/admin/smtp-servers', text: 'SMTP servers', admin: true },
  { href: '/patgate/admin/users', text: 'Users', admin: true },
  { href: '/patgate/admin/tokens', text: 'Token inventory', admin: true },
  { href: '/patgate/admin/audit', text: 'Audit log', admin: true },
  { href: '/patgate/admin/trust-policies', text: 'CI trust', admin: true },
  { href: '/patgate/service-accounts', text: 'Service accounts' },
];

function renderShell() {
  const nav = document.getElementById('nav');
  nav.replaceChildren(...NAV.filter((item) => !item.admin || me.admin).map((item) => h('a', {
    href: item.href, 'aria-current': item.href === location.pathname ? 'page' : null,
  }, item.text)));

  const menuId = 'user-menu-list';
  const button = h('button', {
    type: 'button', class: 'avatar-button', 'aria-haspopup': 'true', 'aria-expanded': 'false', 'aria-controls': menuId,
    id: 'user-menu-button',
  }, h('span', { class: 'avatar', 'aria-hidden': 'true' }, me.username.slice(0, 1)), h('span', { class: 'who' }, me.username));
  const signOut = h('button', { type: 'button', role: 'menuitem', id: 'sign-out' }, 'Sign out');
  const menu = h('div', { class: 'menu', id: menuId, role: 'menu', hidden: true },
    h('div', { class: 'menu-head' },
      h('div', { class: 'name' }, me.username),
      h('div', { class: 'meta' }, `${sourceName(me.source)} user${me.admin ? ' · administrator' : ''}`),
      me.email ? h('div', { class: 'meta' }, me.email) : null),
    h('a', { href: '/patgate/', role: 'menuitem' }, 'Access tokens'),
    signOut);
  const close = () => { menu.hidden = true; button.setAttribute('aria-expanded', 'false'); };
  button.addEventListener('click', (event) => {
    event.stopPropagation();
    menu.hidden = !menu.hidden;
    button.setAttribute('aria-expanded', String(!menu.hidden));
    if (!menu.hidden) menu.querySelector('[role="menuitem"]').focus();
  });
  document.addEventListener('click', (event) => { if (!menu.contains(event.target)) close(); });
  menu.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') { close(); button.focus(); }
  });
  signOut.addEventListener('click', async () => {
    try {
      await api('DELETE', '/session');
    } finally {
      location.replace('/patgate/signin');
    }
  });
  document.getElementById('user-menu').replaceChildren(button, menu);
}

function sourceName(source) {
  return { internal: 'Internal', ldap: 'LDAP', sso: 'SSO' }[source] || source;
}

// ------------------------------------------------------------------ sign-in

async function renderSignIn() {
  document.title = 'Sign in · Digital.ai Deploy';
  const next = new URLSearchParams(location.search).get('next');
  const target = next && next.startsWith('/patgate/') && !next.startsWith('//') ? next : '/patgate/';
  try {
    const existing = await fetch(`${API}/me`, { credentials: 'same-origin', cache: 'no-store' });
    if (existing.ok) {
      location.replace(target);
      return;
    }
  } catch (e) {
    // Shown by the form below when it is used.
  }
  let options = { sso: false };
  try {
    options = await api('GET', '/session');
  } catch (e) {
    options = { sso: false };
  }
  const username = h('input', { type: 'text', name: 'username', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password' });
  const error = messageSlot();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', id: 'sign-in' }, 'Sign in');
  const form = h('form', { class: 'card-body', novalidate: true },
    h('div', {}, h('h1', {}, 'Sign in'), h('p', { class: 'muted' }, 'Use your Digital.ai Deploy account to manage your personal access tokens.')),
    field('Username', username, { required: true }),
    field('Password', password, { required: true }),
    error,
    submit,
    options.sso ? [
      h('div', { class: 'divider' }, 'or'),
      h('a', { class: 'btn btn-block', href: options.sso_login_url, id: 'sign-in-sso' }, 'Sign in with SSO'),
    ] : null);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    if (!username.value.trim() || !password.value) {
      showError(error, new Error('Enter your username and password.'));
      (username.value.trim() ? password : username).focus();
      return;
    }
    await busy(submit, async () => {
      try {
        await api('POST', '/session', { username: username.value.trim(), password: password.value });
        location.replace(target);
      } catch (e) {
        showError(error, e);
        password.value = '';
        password.focus();
      }
    });
  });
  document.getElementById('nav').replaceChildren();
  document.getElementById('user-menu').replaceChildren();
  setMain(h('div', { class: 'signin card' }, form));
  username.focus();
}

// ------------------------------------------------------------------ Access tokens

async function renderTokens() {
  document.title = 'Access tokens · Digital.ai Deploy';
  const head = pageHead('Access tokens',
    'Personal access tokens authenticate API calls and webhooks in place of your password: curl -u :<token> or the x-deploy-personal-token header.');
  if (!me.token_list_visible) {
    setMain(head, callout('info', h('p', { id: 'sso-info' }, me.token_creation_message)));
    return;
  }
  const generate = h('button', {
    type: 'button', class: 'btn btn-primary', id: 'generate-open', disabled: !me.token_creation_allowed,
    'aria-describedby': me.token_creation_allowed ? null : 'sso-banner',
  }, 'Generate new token');
  head.append(h('div', { class: 'actions' }, generate));
  const banner = me.token_creation_allowed ? null
    : callout('warning', h('p', { id: 'sso-banner' }, me.token_creation_message));
  const panelSlot = h('div', {});
  const newTokenSlot = h('div', { class: 'new-token', hidden: true, id: 'new-token' });
  const listError = messageSlot();
  const list = h('div', {});
  const card = h('section', { class: 'card', 'aria-labelledby': 'tokens-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'tokens-title' }, 'Personal access tokens'), listError),
    list);
  setMain(head, banner, newTokenSlot, panelSlot, card, emailCard());
  api('GET', '/notification-channels').then((channels) => {
    const own = channels.filter((c) => c.owner === me.username);
    document.querySelector('main').append(channelsCard(own, true));
  }).catch(() => {});

  const reload = async () => {
    try {
      const tokens = await api('GET', '/tokens');
      list.replaceChildren(tokenTable(tokens, reload, (created) => { showNewToken(newTokenSlot, created); reload(); }));
      showError(listError, null);
    } catch (e) {
      showError(listError, e);
    }
  };
  generate.addEventListener('click', () => {
    if (panelSlot.firstChild) {
      panelSlot.querySelector('input').focus();
      return;
    }
    panelSlot.replaceChildren(generatePanel({
      close: () => { panelSlot.replaceChildren(); generate.focus(); },
      created: (token) => {
        panelSlot.replaceChildren();
        showNewToken(newTokenSlot, token);
        reload();
      },
    }));
    panelSlot.querySelector('input').focus();
  });
  await reload();
}

/** Where expiry reminders go: set here for password users, by the provider for SSO users. */
function emailCard() {
  const shown = h('p', { id: 'email-current' });
  const render = () => {
    shown.replaceChildren();
    append(shown, [me.email
      ? ['Reminders before a token expires are sent to ', h('strong', {}, me.email), '.']
      : 'No e-mail address is set, so you get no reminders before a token expires.']);
  };
  render();
  const body = h('div', { class: 'card-body stack' }, shown);
  if (me.source === 'sso') {
    body.append(h('p', { class: 'hint' }, 'Your address comes from your SSO provider.'));
  } else {
    const email = h('input', { type: 'email', id: 'email', autocomplete: 'email', value: me.email || '', placeholder: 'name@example.com' });
    const error = messageSlot();
    error.id = 'email-result';
    const save = h('button', { type: 'submit', class: 'btn', id: 'email-save' }, 'Save address');
    const form = h('form', { class: 'inline-form', novalidate: true }, field('E-mail address', email), save);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      showError(error, null);
      await busy(save, async () => {
        try {
          const updated = await api('PUT', '/me', { email: email.value.trim() || null });
          me.email = updated.email;
          render();
          showStatus(error, 'Saved.');
        } catch (e) {
          showError(error, e);
        }
      });
    });
    body.append(form, error);
  }
  return h('section', { class: 'card', 'aria-labelledby': 'email-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'email-title' }, 'Expiry reminders')), body);
}

const SCOPE_LABELS = { full: 'Full access', read: 'Read only', webhook: 'Webhooks only' };

/** Scope, address allowlist and rotation of a token, as text. */
function tokenRules(token) {
  const lines = [h('div', { class: 'scope' }, SCOPE_LABELS[token.scope] || token.scope)];
  lines.push(h('div', { class: 'hint allowlist' }, token.allowed_addresses.length
    ? `From ${token.allowed_addresses.join(', ')}` : 'From anywhere'));
  if (token.replaced_by) {
    lines.push(h('div', { class: 'hint rotation' }, token.grace_until
      ? `Rotated: works until ${time(token.grace_until)}` : 'Rotated'));
  } else if (token.rotated_from) {
    lines.push(h('div', { class: 'hint rotation' }, 'Made by rotation'));
  }
  return lines;
}

/** The 30-day bar chart, the addresses and the last refusal of one token. */
function usageDetails(usage) {
  const most = Math.max(1, ...usage.days.map((d) => d.requests));
  const total = usage.days.reduce((n, d) => n + d.requests, 0);
  const bars = usage.days.map((d) => h('div', {
    class: 'bar', title: `${d.date}: ${d.requests} request${d.requests === 1 ? '' : 's'}`,
    style: `height: ${Math.round((d.requests / most) * 100)}%`,
  }));
  const today = usage.days[usage.days.length - 1];
  const chart = h('div', { class: 'usage-chart', role: 'img', 'aria-label': `Requests per day over the last 30 days; ${total} in all` }, bars);
  const addresses = usage.addresses.length
    ? h('ul', { class: 'usage-addresses' }, usage.addresses.map((a) => h('li', {},
      h('strong', {}, a.ip), ` first seen ${time(a.first_seen)}, last seen ${time(a.last_seen)}`)))
    : h('p', { class: 'hint' }, 'Not used from any address yet.');
  const refusal = usage.last_refusal
    ? h('p', { class: 'usage-refusal' }, `Last refused: ${usage.last_refusal.code} at ${time(usage.last_refusal.at)}`)
    : h('p', { class: 'hint usage-refusal' }, 'Never refused.');
  return h('div', { class: 'usage stack' },
    h('p', { class: 'usage-total' }, `${total} request${total === 1 ? '' : 's'} in the last 30 days, ${today.requests} today`),
    chart, h('h3', {}, 'Client addresses'), addresses, refusal);
}

function tokenTable(tokens, reload, rotated) {
  if (!tokens.length) {
    return h('p', { class: 'empty' }, 'You have no personal access tokens yet.');
  }
  const columns = 7;
  const rows = tokens.flatMap((token) => {
    const del = h('button', { type: 'button', class: 'btn btn-small btn-ghost-danger', 'aria-label': `Delete token ${token.name}` }, 'Delete');
    del.addEventListener('click', () => confirmDelete(token, reload, del));
    const detailCell = h('td', { colspan: columns });
    const detail = h('tr', { class: 'usage-row', hidden: true }, detailCell);
    const usage = h('button', { type: 'button', class: 'btn btn-small', 'aria-expanded': 'false', 'aria-label': `Usage of token ${token.name}` }, 'Usage');
    usage.addEventListener('click', async () => {
      if (!detail.hidden) {
        detail.hidden = true;
        usage.setAttribute('aria-expanded', 'false');
        return;
      }
      const error = messageSlot();
      detailCell.replaceChildren(error);
      detail.hidden = false;
      usage.setAttribute('aria-expanded', 'true');
      try {
        detailCell.replaceChildren(usageDetails(await api('GET', `/tokens/${encodeURIComponent(token.id)}/usage`)));
      } catch (e) {
        showError(error, e);
      }
    });
    return [h('tr', { 'data-token-id': token.id },
      h('td', { class: 'name', 'data-label': 'Name' }, token.name),
      h('td', { class: 'rules', 'data-label': 'Access' }, tokenRules(token)),
      h('td', { class: 'nowrap', 'data-label': 'Created' }, time(token.created_at)),
      h('td', { class: 'nowrap expires', 'data-label': 'Expires' }, time(token.expires_at, 'Never')),
      h('td', { class: 'nowrap', 'data-label': 'Last used' }, time(token.last_used_at, 'Never used')),
      h('td', { class: 'expires-in', 'data-label': 'Expires in' }, pill(token.expires_in, token.expires_at)),
      h('td', { class: 'actions-cell' }, h('div', { class: 'actions' }, del, usage, rotateButton(token, rotated)))), detail];
  });
  return h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'tokens' },
    h('thead', {}, h('tr', {}, ['Name', 'Access', 'Created', 'Expires', 'Last used', 'Expires in'].map((t) => h('th', { scope: 'col' }, t)),
      h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
    h('tbody', {}, rows)));
}

function generatePanel({ close, created }) {
  const name = h('input', { type: 'text', id: 'token-name', maxlength: 100, autocomplete: 'off', placeholder: 'e.g. CI pipeline' });
  const choices = me.expiration_choices;
  const preferred = choices.includes('30d') ? '30d' : choices[choices.length - 1];
  const expiration = h('select', { id: 'token-expiration' },
    choices.map((c) => h('option', { value: c, selected: c === preferred }, EXPIRATIONS[c] || c)));
  const expiryHint = h('span', { class: 'hint', id: 'expiry-hint', 'aria-live': 'polite' });
  const updateHint = () => {
    const seconds = EXPIRATION_SECONDS[expiration.value];
    expiryHint.textContent = seconds
      ? `Expires ${dateTimeFormat.format(new Date(Date.now() + seconds * 1000))}`
      : 'This token will never expire.';
  };
  expiration.addEventListener('change', updateHint);
  updateHint();
  const error = messageSlot();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'generate' }, 'Generate');
  const cancel = h('button', { type: 'button', class: 'btn', onclick: close }, 'Cancel');
  const maxNote = me.max_token_expiration !== 'never'
    ? `Your administrator allows at most ${EXPIRATIONS[me.max_token_expiration]}.` : null;
  const expirationField = field('Token expiration', expiration, { hint: maxNote });
  expirationField.append(expiryHint);
  const scope = h('select', { id: 'token-scope' },
    Object.entries(SCOPE_LABELS).map(([value, label]) => h('option', { value, selected: value === 'full' }, label)));
  const allowlist = h('input', { type: 'text', id: 'token-allowlist', autocomplete: 'off', placeholder: 'e.g. 10.0.0.0/8, 2001:db8::/32' });
  const form = h('form', { class: 'panel', id: 'generate-panel', 'aria-labelledby': 'generate-title', novalidate: true },
    h('div', { class: 'card-head' }, h('h2', { id: 'generate-title' }, 'Generate token')),
    h('div', { class: 'card-body' },
      field('Token name', name, { required: true, hint: 'A descriptive name, so you know later what uses it.' }),
      expirationField,
      field('Scope', scope, { hint: 'Read only allows GET, HEAD and OPTIONS; webhooks only, the webhook paths. It cannot be changed later.' }),
      field('Allowed addresses', allowlist, { hint: 'Addresses or networks, separated by commas; empty: from anywhere.' })),
    h('div', { class: 'card-foot' }, submit, cancel, error));
  form.addEventListener('keydown', (event) => { if (event.key === 'Escape') close(); });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    if (!name.value.trim()) {
      showError(error, new Error('Enter a token name.'));
      name.focus();
      return;
    }
    await busy(submit, async () => {
      try {
        const allowed = allowlist.value.split(',').map((a) => a.trim()).filter(Boolean);
        created(await api('POST', '/tokens', {
          name: name.value.trim(), expiration: expiration.value, scope: scope.value, allowed_addresses: allowed,
        }));
      } catch (e) {
        showError(error, e);
      }
    });
  });
  return form;
}

/** The new token, shown this once; it lives only in this page's memory. */
function showNewToken(slot, token) {
  const value = h('input', { type: 'text', readonly: true, id: 'new-token-value', value: token.token, 'aria-label': 'Your new personal access token', spellcheck: 'false' });
  const copied = h('span', { class: 'status-text', role: 'status', 'aria-live': 'polite' });
  const copy = h('button', { type: 'button', class: 'btn btn-primary', id: 'copy-token' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(token.token);
      showStatus(copied, 'Copied to the clipboard.');
    } catch (e) {
      value.select();
      showStatus(copied, 'Selected: press Ctrl+C (or ⌘C) to copy.');
    }
  });
  value.addEventListener('focus', () => value.select());
  const dismiss = h('button', { type: 'button', class: 'btn' }, 'Done');
  dismiss.addEventListener('click', () => { slot.replaceChildren(); slot.hidden = true; });
  slot.replaceChildren(callout('success',
    h('p', {}, h('strong', {}, `Token “${token.name}” generated. `),
      'Copy it now and store it securely: it will not be shown again. If you leave this page, it is gone for good.'),
    h('div', { class: 'token-row' }, value, copy, dismiss),
    copied));
  slot.hidden = false;
  value.focus();
  // A page kept in the back-forward cache must not bring the token back.
  window.addEventListener('pagehide', () => { slot.replaceChildren(); slot.hidden = true; }, { once: true });
}

/** A modal confirmation; resolves when the action succeeds or the dialog is closed. */
function confirmDialog({ title, body, confirmText, action, returnFocus }) {
  const error = messageSlot();
  const confirm = h('button', { type: 'button', class: 'btn btn-danger', id: 'confirm' }, confirmText);
  const cancel = h('button', { type: 'button', class: 'btn', id: 'cancel' }, 'Cancel');
  const titleId = uid('dialog-title');
  const dialog = h('dialog', { 'aria-labelledby': titleId },
    h('div', { class: 'card-head' }, h('h2', { id: titleId }, title)),
    h('div', { class: 'card-body' }, body, error),
    h('div', { class: 'card-foot' }, cancel, confirm));
  const done = () => {
    dialog.close();
    dialog.remove();
    if (returnFocus && returnFocus.isConnected) returnFocus.focus();
  };
  cancel.addEventListener('click', done);
  dialog.addEventListener('cancel', (event) => { event.preventDefault(); done(); });
  confirm.addEventListener('click', () => busy(confirm, async () => {
    try {
      await action();
      done();
    } catch (e) {
      showError(error, e);
    }
  }));
  document.body.append(dialog);
  dialog.showModal();
  cancel.focus();
}

const GRACE_CHOICES = { '0s': 'No grace: the old token stops at once', '15m': '15 minutes', '1h': '1 hour', '24h': '24 hours' };

/** Rotate: a new token with the same name and rules; the old one works for the grace chosen. */
function rotateButton(token, rotated) {
  if (token.replaced_by) return null;
  const button = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Rotate token ${token.name}` }, 'Rotate');
  button.addEventListener('click', () => {
    const grace = h('select', { id: 'rotate-grace' },
      Object.entries(GRACE_CHOICES).map(([value, label]) => h('option', { value, selected: value === '1h' }, label)));
    confirmDialog({
      title: 'Rotate token?',
      body: [
        h('p', {}, 'Replace ', h('strong', {}, token.name), ' by a new token with the same name, scope and allowed addresses.'),
        field('The old token keeps working for', grace, { hint: 'Time to put the new token in place; a use of the old one after that revokes both.' }),
      ],
      confirmText: 'Rotate token',
      returnFocus: button,
      action: async () => {
        rotated(await api('POST', `/tokens/${encodeURIComponent(token.id)}/rotate`, { grace: grace.value }));
      },
    });
  });
  return button;
}

function confirmDelete(token, reload, button) {
  confirmDialog({
    title: 'Delete token?',
    body: [
      h('p', {}, 'Delete the token ', h('strong', {}, token.name), '?'),
      h('p', { class: 'muted' }, 'Scripts, CI jobs and webhooks that use it stop working within a second. This cannot be undone.'),
    ],
    confirmText: 'Delete token',
    returnFocus: document.getElementById('generate-open') || button,
    action: async () => {
      await api('DELETE', `/tokens/${encodeURIComponent(token.id)}`);
      await reload();
    },
  });
}

// ------------------------------------------------------------------ System settings

async function renderSettings() {
  document.title = 'System settings · Digital.ai Deploy';
  const [settings, servers, status, channels] = await Promise.all([
    api('GET', '/settings'), api('GET', '/smtp-servers'), api('GET', '/notifications?limit=1'),
    api('GET', '/notification-channels'),
  ]);
  const n = settings.notifications;
  const max = h('select', { id: 'max-expiration' },
    Object.entries(EXPIRATIONS).map(([value, text]) => h('option', { value, selected: value === settings.max_token_expiration }, text)));
  const sso = switchRow('Allow personal access tokens for SSO users',
    'Switched off, SSO users cannot generate tokens and their existing tokens stop authenticating, so access always follows the SSO provider.',
    settings.sso_pat_creation_enabled, 'sso-switch');
  const notify = switchRow('Enable email notifications',
    'E-mail each user before one of their tokens expires: one message per token and reminder day, sent daily at 01:00 server time.',
    n.enabled, 'notify-switch');
  const days = h('input', { type: 'text', id: 'reminder-days', value: (n.reminder_days || [n.days_before]).join(', '), inputmode: 'numeric' });
  const unused = h('select', { id: 'unused-revoke' },
    [['', 'Never'], ...[30, 60, 90, 180, 365].map((d) => [String(d), `After ${d} days unused`])].map(([value, text]) =>
      h('option', { value, selected: value === String(settings.unused_token_revoke_days ?? '') }, text)));
  const perUser = h('input', {
    type: 'number', id: 'max-tokens', min: 1, max: 10000, inputmode: 'numeric', placeholder: 'No limit',
    value: settings.max_tokens_per_user ?? '',
  });
  const server = h('select', { id: 'email-server' },
    h('option', { value: '' }, servers.length ? 'Select an SMTP server' : 'No SMTP servers configured'),
    servers.map((s) => h('option', { value: s.id, selected: s.id === n.smtp_server_id }, `${s.name} (${s.host}:${s.port})`)));
  const subject = h('input', { type: 'text', id: 'mail-subject', value: n.subject });
  const body = h('textarea', { id: 'mail-body', rows: 8, class: 'mono' });
  body.value = n.body;
  const error = messageSlot();
  const save = h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-settings' }, 'Save');
  const form = h('form', { novalidate: true },
    h('section', { class: 'card', 'aria-labelledby': 'pat-settings' },
      h('div', { class: 'card-head' }, h('h2', { id: 'pat-settings' }, 'Personal access tokens')),
      h('div', { class: 'card-body narrow' },
        field('Maximum token expiration', max, { hint: 'The longest expiration users may choose. Tokens made earlier keep their expiry.' }),
        sso.row,
        field('Most active tokens per user', perUser, { hint: 'Leave empty for no limit. Rotating a token and token exchanges are not limited.' }),
        field('Revoke unused tokens', unused, { hint: 'Tokens not used for this long (since their last use, or creation) are revoked by the daily run; their owner is warned 7 days before and told when it happens.' }),
        rolesFreshness(settings.sso_roles_freshness))),
    h('section', { class: 'card', 'aria-labelledby': 'notify-settings' },
      h('div', { class: 'card-head' }, h('h2', { id: 'notify-settings' }, 'Expiry notifications'), notifyStatus(status)),
      h('div', { class: 'card-body narrow' },
        notify.row,
        field('Reminder days', days, { hint: 'Days before expiration a reminder goes out, each once per token, e.g. 30, 7, 1 (1–365, at most 10).' }),
        h('div', { class: 'field' },
          h('label', { for: 'email-server' }, 'Email server'),
          server,
          h('span', { class: 'hint' }, servers.length ? 'The SMTP server notifications are sent through. ' : 'Create one first: ',
            h('a', { href: '/patgate/admin/smtp-servers' }, 'Manage SMTP servers'))),
        field('Subject', subject, { hint: 'Variables: {{ user }}, {{ token_name }}, {{ days_left }}, {{ expires_at_local }}…' }),
        field('Body (HTML)', body))),
    channelsCard(channels, false),
    h('div', { class: 'card card-foot', id: 'settings-actions' }, save, error));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const daysValue = days.value.split(',').map((d) => d.trim()).filter((d) => d).map(Number);
    const wrong = !daysValue.length || daysValue.length > 10
      || daysValue.some((d) => !Number.isInteger(d) || d < 1 || d > 365)
      || new Set(daysValue).size !== daysValue.length;
    if (wrong) {
      showError(error, new Error('Reminder days: up to 10 different whole numbers from 1 to 365, separated by commas.'));
      days.focus();
      return;
    }
    const limit = perUser.value.trim() ? Number(perUser.value) : null;
    if (limit !== null && (!Number.isInteger(limit) || limit < 1 || limit > 10000)) {
      showError(error, new Error('Most active tokens per user: a whole number from 1 to 10000, or empty for no limit.'));
      perUser.focus();
      return;
    }
    await busy(save, async () => {
      try {
        await api('PUT', '/settings', {
          max_token_expiration: max.value,
          sso_pat_creation_enabled: sso.input.checked,
          unused_token_revoke_days: unused.value ? Number(unused.value) : null,
          max_tokens_per_user: limit,
          notifications: {
            enabled: notify.input.checked,
            reminder_days: daysValue,
            smtp_server_id: server.value || null,
            subject: subject.value,
            body: body.value,
          },
        });
        showStatus(error, 'Settings saved.');
      } catch (e) {
        showError(error, e);
      }
    });
  });
  setMain(pageHead('System settings', 'Policies for personal access tokens and their expiry e-mails.'), form);
}

const FRESHNESS_MODES = { scim: 'Pushed by SCIM', revalidation: 'Re-validated', 'sign-in': 'As of last sign-in' };

/** How fresh SSO users' roles and status are: pushed by SCIM, re-validated with the
 * provider, or as of each user's last sign-in (read-only; the switch above keeps its
 * meaning whatever the mode). */
function rolesFreshness(f) {
  if (!f) return null;
  const bound = f.bound_seconds == null ? 'No bound: until each user signs in again.'
    : `A change at the provider reaches tokens within ${f.bound_seconds < 120 ? `${f.bound_seconds} s` : `${Math.round(f.bound_seconds / 60)} min`}.`;
  return h('div', { class: 'field', id: 'sso-freshness' },
    h('span', { class: 'label' }, 'SSO users\' roles and status'),
    h('p', {},
      h('span', { class: `pill ${f.mode === 'sign-in' ? 'pill-warning' : 'pill-ok'}`, 'data-mode': f.mode }, FRESHNESS_MODES[f.mode] || f.mode), ' ',
      h('span', { id: 'sso-freshness-summary' }, freshnessText(f))),
    h('span', { class: 'hint' }, bound, f.sso_users ? ` ${f.sso_users} SSO user${f.sso_users === 1 ? '' : 's'}.` : ''));
}

/** The summary in words, with the last run in the browser's time zone. */
function freshnessText(f) {
  if (!f.revalidate_every) return f.summary;
  const every = f.revalidate_every.replace(/^(\d+)([smh])$/, (_, n, unit) => `${n} ${{ s: 's', m: 'min', h: 'h' }[unit]}`);
  const parts = [f.last_run_at ? ['last run ', time(f.last_run_at)] : 'not run yet', `${f.suspended} suspended`];
  if (f.without_refresh_token) parts.push(`${f.without_refresh_token} without a refresh token: as of their last sign-in`);
  if (f.unreachable) parts.push(`${f.unreachable} not reached at the last attempt`);
  const joined = parts.flatMap((p, i) => (i ? [', ', p] : [p]));
  const revalidated = [`re-validated every ${every} (`, joined, ')'];
  if (f.mode === 'scim') return [`pushed by SCIM (${f.scim_groups} group${f.scim_groups === 1 ? '' : 's'}): a change reaches every replica within 1 s; users outside SCIM `, revalidated];
  return revalidated;
}

/** Whether expiry e-mails are going out, and the last and next daily pass. */
function notifyStatus(status) {
  const parts = [];
  if (status.active) {
    parts.push(h('span', { class: 'pill pill-ok' }, 'Sending'));
  } else {
    parts.push(h('span', { class: 'pill pill-neutral' }, 'Not sending'));
    if (status.reason) parts.push(' ', sentence(status.reason));
  }
  const last = status.last_pass;
  if (last) {
    parts.push(' Last run ', time(last.finished_at), `: ${last.sent} sent, ${last.failed} failed.`);
  }
  if (status.active && status.next_pass_at) parts.push(' Next run ', time(status.next_pass_at), '.');
  for (const c of status.failing_channels || []) {
    parts.push(' ', h('span', { class: 'pill pill-warning' }, 'Channel failing'),
      ` ${CHANNEL_KINDS[c.kind] || c.kind} ${c.url} since `, time(c.failing_since), `: ${c.last_error || 'failed'}.`);
  }
  return h('p', { class: 'hint', id: 'notify-status' }, parts);
}

const CHANNEL_KINDS = { webhook: 'Webhook', slack: 'Slack', teams: 'Microsoft Teams' };

/** Where reminders, unused-token warnings and revocations go besides e-mail: the
 * administrators' channels (every token) on the settings page, and on the Access
 * tokens page the user's own (their tokens only). The card refreshes itself. */
function channelsCard(channels, personal) {
  let card = null;
  const reload = async () => {
    let list = await api('GET', '/notification-channels');
    if (personal) list = list.filter((c) => c.owner === me.username);
    const fresh = channelsCard(list, personal);
    card.replaceWith(fresh);
    return fresh;
  };
  const kind = h('select', { id: 'channel-kind' },
    Object.entries(CHANNEL_KINDS).map(([value, text]) => h('option', { value }, text)));
  const url = h('input', { type: 'url', id: 'channel-url', placeholder: 'https://hooks.example.com/…' });
  const secret = h('input', { type: 'password', id: 'channel-secret', autocomplete: 'new-password' });
  const slot = messageSlot();
  const add = h('button', { type: 'button', class: 'btn', id: 'channel-add' }, 'Add channel');
  add.addEventListener('click', () => busy(add, async () => {
    showError(slot, null);
    try {
      const body = { kind: kind.value, url: url.value.trim() };
      if (secret.value) body.secret = secret.value;
      if (personal && me.admin) body.personal = true;
      await api('POST', '/notification-channels', body);
      (await reload()).querySelector('#channel-add').focus();
    } catch (e) {
      showError(slot, e);
    }
  }));
  const rows = channels.map((c) => {
    const remove = h('button', { type: 'button', class: 'btn btn-danger', 'data-channel': c.id }, 'Delete');
    remove.addEventListener('click', () => busy(remove, async () => {
      await api('DELETE', `/notification-channels/${encodeURIComponent(c.id)}`);
      await reload();
    }));
    const state = c.failing_since
      ? [h('span', { class: 'pill pill-warning' }, 'Failing'), ' since ', time(c.failing_since), `: ${c.last_error || ''}`]
      : c.last_status ? h('span', { class: 'pill pill-ok' }, 'Delivered') : h('span', { class: 'muted' }, 'Nothing sent yet');
    return h('tr', { 'data-channel-row': c.id },
      h('td', { class: 'name' }, CHANNEL_KINDS[c.kind] || c.kind, h('span', { class: 'sub mono' }, c.url)),
      h('td', { 'data-label': 'Hears about' }, c.owner ? `${c.owner}'s tokens` : 'Every token'),
      h('td', { 'data-label': 'Last delivery' }, state),
      h('td', { class: 'actions-cell' }, h('div', { class: 'actions' }, remove)));
  });
  const list = channels.length
    ? h('div', { class: 'table-wrap', id: 'channels' }, h('table', { class: 'responsive' },
      h('thead', {}, h('tr', {}, ['Channel', 'Hears about', 'Last delivery', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)))
    : h('p', { class: 'empty', id: 'channels' }, personal
      ? 'No channels of your own: your reminders go by e-mail only.'
      : 'No channels: reminders go by e-mail only.');
  card = h('section', { class: 'card', 'aria-labelledby': 'channels-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'channels-title' }, personal ? 'Your notification channels' : 'Notification channels')),
    h('div', { class: 'card-body' }, list,
      h('div', { class: 'narrow' },
        field('Kind', kind),
        field('URL', url, { hint: 'A webhook gets a JSON POST signed with X-Patgate-Signature; Slack and Teams get their incoming-webhook messages.' }),
        field('Signing secret', secret, { hint: 'Webhooks only: 16 to 256 characters. Never shown again.' }),
        h('div', { class: 'field' }, add, slot))));
  return card;
}

// ------------------------------------------------------------------ SMTP servers

async function renderSmtpServers() {
  document.title = 'SMTP servers · Digital.ai Deploy';
  const create = h('button', { type: 'button', class: 'btn btn-primary', id: 'smtp-new' }, 'New SMTP server');
  const formSlot = h('div', {});
  const listError = messageSlot();
  const list = h('div', {});
  setMain(
    pageHead('SMTP servers', 'notification.PatSmtpServer configuration items: the mail servers expiry notifications are sent through.', create),
    formSlot,
    h('section', { class: 'card', 'aria-labelledby': 'smtp-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'smtp-title' }, 'Configuration'), listError),
      list));
  const reload = async () => {
    try {
      const servers = await api('GET', '/smtp-servers');
      list.replaceChildren(smtpTable(servers, { edit, reload, formSlot }));
      showError(listError, null);
    } catch (e) {
      showError(listError, e);
    }
  };
  const edit = (server) => {
    formSlot.replaceChildren(smtpForm(server, {
      close: () => formSlot.replaceChildren(),
      saved: async () => { formSlot.replaceChildren(); await reload(); },
    }));
    formSlot.querySelector('input').focus();
  };
  create.addEventListener('click', () => edit(null));
  await reload();
}

function smtpTable(servers, { edit, reload, formSlot }) {
  if (!servers.length) return h('p', { class: 'empty' }, 'No SMTP servers yet. Create one to send expiry notifications.');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'smtp-servers' },
    h('thead', {}, h('tr', {}, ['Name', 'Host', 'From address', 'Authentication', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, servers.map((s) => {
      const editButton = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Edit ${s.name}` }, 'Edit');
      editButton.addEventListener('click', () => edit(s));
      const testButton = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Send test mail with ${s.name}` }, 'Send Test Mail');
      testButton.addEventListener('click', () => {
        formSlot.replaceChildren(testMailForm(s, () => formSlot.replaceChildren()));
        formSlot.querySelector('input').focus();
      });
      const del = h('button', { type: 'button', class: 'btn btn-small btn-ghost-danger', 'aria-label': `Delete ${s.name}` }, 'Delete');
      del.addEventListener('click', () => confirmDialog({
        title: 'Delete SMTP server?',
        body: h('p', {}, 'Delete ', h('strong', {}, s.name), ' (', h('code', {}, s.id), ')?'),
        confirmText: 'Delete',
        returnFocus: document.getElementById('smtp-new'),
        action: async () => {
          await api('DELETE', `/smtp-servers/${encodeURIComponent(s.id)}`);
          await reload();
        },
      }));
      return h('tr', { 'data-id': s.id },
        h('td', { class: 'name', 'data-label': 'Name' }, s.name, h('span', { class: 'sub mono' }, s.id)),
        h('td', { 'data-label': 'Host' }, `${s.host}:${s.port}`),
        h('td', { 'data-label': 'From address' }, s.from_address),
        h('td', { 'data-label': 'Authentication' }, s.username
          ? [s.username, ' ', h('span', { class: `pill ${s.password_set ? 'pill-ok' : 'pill-neutral'}` }, s.password_set ? 'password set' : 'no password')]
          : h('span', { class: 'muted' }, 'None')),
        h('td', { class: 'actions-cell' }, h('div', { class: 'actions' }, testButton, editButton, del)));
    }))));
}

function propertiesText(props) {
  return Object.entries(props || {}).map(([k, v]) => `${k}=${v}`).join('\n');
}

function parseProperties(text) {
  const props = {};
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const line of lines) {
    const at = line.indexOf('=');
    if (at <= 0) throw new Error(`SMTP properties: write each as key=value (“${line}”).`);
    props[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return props;
}

function smtpForm(server, { close, saved }) {
  const s = server || { name: '', host: '', port: 587, username: '', from_address: '', test_address: '', smtp_properties: {} };
  const name = h('input', { type: 'text', id: 'smtp-name', value: s.name, autocomplete: 'off' });
  const host = h('input', { type: 'text', id: 'smtp-host', value: s.host, autocomplete: 'off', placeholder: 'smtp.example.com' });
  const port = h('input', { type: 'number', id: 'smtp-port', value: s.port, min: 1, max: 65535, inputmode: 'numeric' });
  const username = h('input', { type: 'text', id: 'smtp-username', value: s.username || '', autocomplete: 'off' });
  const password = h('input', {
    type: 'password', id: 'smtp-password', autocomplete: 'new-password',
    placeholder: server && server.password_set ? '•••••••• (unchanged)' : '',
  });
  const removePassword = h('input', { type: 'checkbox', id: 'smtp-remove-password' });
  const from = h('input', { type: 'text', id: 'smtp-from', value: s.from_address, placeholder: 'deploy@example.com' });
  const test = h('input', { type: 'email', id: 'smtp-test-address', value: s.test_address || '' });
  const props = h('textarea', { id: 'smtp-properties', rows: 3, class: 'mono', placeholder: 'mail.smtp.starttls.enable=true' });
  props.value = propertiesText(s.smtp_properties);
  const error = messageSlot();
  const save = h('button', { type: 'submit', class: 'btn btn-primary', id: 'smtp-save' }, server ? 'Save' : 'Create');
  const ignored = server && server.ignored_properties && server.ignored_properties.length
    ? `Not acted on by the gateway (kept): ${server.ignored_properties.join(', ')}.` : 'JavaMail properties, one key=value per line.';
  const passwordField = field('Password', password, {
    hint: server && server.password_set ? 'Write-only: leave empty to keep the stored password (a new host, port or TLS setting needs it again).' : 'Write-only: it is never shown again.',
  });
  if (server && server.password_set) {
    passwordField.append(h('label', { class: 'check', for: 'smtp-remove-password' }, removePassword, 'Remove the stored password'));
  }
  const form = h('form', { class: 'panel', id: 'smtp-form', novalidate: true, 'aria-labelledby': 'smtp-form-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'smtp-form-title' }, server ? `Edit ${s.name}` : 'New SMTP server'),
      server ? h('span', { class: 'muted mono' }, server.id) : h('span', { class: 'muted mono' }, 'notification.PatSmtpServer')),
    h('div', { class: 'card-body form-grid' },
      field('Name', name, { required: true, hint: 'Unique display name; the ID is made from it.' }),
      field('Host', host, { required: true }),
      field('Port', port, { required: true, hint: '25 plain, 465 SMTP over SSL, 587 STARTTLS.' }),
      field('Username', username),
      passwordField,
      field('From Address', from, { required: true, hint: 'Many providers only accept their own domain.' }),
      field('Test Address', test, { hint: 'Where Send Test Mail goes by default.' }),
      field('SMTP Properties', props, { wide: true, hint: ignored })),
    h('div', { class: 'card-foot' }, save, h('button', { type: 'button', class: 'btn', onclick: close }, 'Cancel'), error));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    let body;
    try {
      body = {
        name: name.value.trim(),
        host: host.value.trim(),
        port: Number(port.value),
        username: username.value.trim() || null,
        from_address: from.value.trim(),
        test_address: test.value.trim() || null,
        smtp_properties: parseProperties(props.value),
      };
    } catch (e) {
      showError(error, e);
      props.focus();
      return;
    }
    if (removePassword.checked) body.password = null;
    else if (password.value) body.password = password.value;
    await busy(save, async () => {
      try {
        if (server) await api('PUT', `/smtp-servers/${encodeURIComponent(server.id)}`, body);
        else await api('POST', '/smtp-servers', body);
        await saved();
      } catch (e) {
        showError(error, e);
      }
    });
  });
  return form;
}

function testMailForm(server, close) {
  const to = h('input', { type: 'email', id: 'test-mail-to', value: server.test_address || '', placeholder: 'you@example.com' });
  const result = messageSlot();
  result.id = 'test-mail-result';
  const send = h('button', { type: 'submit', class: 'btn btn-primary', id: 'test-mail-send' }, 'Send Test Mail');
  const form = h('form', { class: 'panel', id: 'test-mail-form', novalidate: true, 'aria-labelledby': 'test-mail-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'test-mail-title' }, `Send Test Mail with ${server.name}`)),
    h('div', { class: 'card-body' },
      h('div', { class: 'inline-form' }, field('Send to', to, { hint: 'Empty: the item’s Test Address.' }))),
    h('div', { class: 'card-foot' }, send, h('button', { type: 'button', class: 'btn', onclick: close }, 'Close'), result));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(result, null);
    await busy(send, async () => {
      try {
        const sent = await api('POST', `/smtp-servers/${encodeURIComponent(server.id)}/test`, to.value.trim() ? { to: to.value.trim() } : {});
        showStatus(result, `Test mail sent to ${sent.sent_to} through ${sent.server}.`);
      } catch (e) {
        showError(result, e);
      }
    });
  });
  return form;
}

// ------------------------------------------------------------------ CI trust policies

async function renderTrustPolicies() {
  document.title = 'CI trust policies · Digital.ai Deploy';
  const create = h('button', { type: 'button', class: 'btn btn-primary', id: 'trust-new' }, 'New trust policy');
  const formSlot = h('div', {});
  const listError = messageSlot();
  const list = h('div', {});
  setMain(
    pageHead('CI trust policies', 'Pipelines exchange their CI system’s identity token for a token that lives minutes: no secret is stored in CI.', create),
    formSlot,
    h('section', { class: 'card', 'aria-labelledby': 'trust-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'trust-title' }, 'Policies'), listError),
      list));
  const reload = async () => {
    try {
      const policies = await api('GET', '/trust-policies');
      list.replaceChildren(trustTable(policies, reload));
      showError(listError, null);
    } catch (e) {
      showError(listError, e);
    }
  };
  create.addEventListener('click', () => {
    formSlot.replaceChildren(trustForm({
      close: () => formSlot.replaceChildren(),
      saved: async () => { formSlot.replaceChildren(); await reload(); },
    }));
    formSlot.querySelector('input').focus();
  });
  await reload();
}

function trustTable(policies, reload) {
  if (!policies.length) return h('p', { class: 'empty' }, 'No trust policies yet. Create one to let a pipeline exchange its identity token.');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'trust-policies' },
    h('thead', {}, h('tr', {}, ['Name', 'Issuer', 'Conditions', 'Acts as', 'Lifetime', 'Exchanges', 'Last used', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, policies.map((p) => {
      const del = h('button', { type: 'button', class: 'btn btn-small btn-ghost-danger', 'aria-label': `Delete ${p.name}` }, 'Delete');
      del.addEventListener('click', () => confirmDialog({
        title: 'Delete trust policy?',
        body: h('p', {}, 'Pipelines matching ', h('strong', {}, p.name), ' can no longer exchange tokens. Tokens it issued live out their minutes.'),
        confirmText: 'Delete',
        returnFocus: document.getElementById('trust-new'),
        action: async () => {
          await api('DELETE', `/trust-policies/${encodeURIComponent(p.name)}`);
          await reload();
        },
      }));
      const conditions = Object.entries(p.claims).map(([k, v]) => h('div', { class: 'mono' }, `${k} = ${v}`));
      return h('tr', { 'data-name': p.name },
        h('td', { class: 'name', 'data-label': 'Name' }, p.name),
        h('td', { 'data-label': 'Issuer' }, h('span', { class: 'mono' }, p.issuer), h('span', { class: 'sub mono' }, `aud ${p.audience}`)),
        h('td', { 'data-label': 'Conditions' }, conditions),
        h('td', { 'data-label': 'Acts as' }, p.user, ' ', h('span', { class: 'pill pill-neutral' }, p.scope)),
        h('td', { 'data-label': 'Lifetime' }, p.lifetime),
        h('td', { 'data-label': 'Exchanges' }, String(p.exchanges)),
        h('td', { 'data-label': 'Last used' }, time(p.last_used_at, 'Never')),
        h('td', { class: 'actions-cell' }, h('div', { class: 'actions' }, del)));
    }))));
}

function trustForm({ close, saved }) {
  const name = h('input', { type: 'text', id: 'trust-name', autocomplete: 'off', placeholder: 'deploy-app' });
  const preset = h('select', { id: 'trust-preset' },
    h('option', { value: 'github' }, 'GitHub Actions'),
    h('option', { value: 'gitlab' }, 'GitLab.com'),
    h('option', { value: '' }, 'Another issuer'));
  const issuer = h('input', { type: 'url', id: 'trust-issuer', autocomplete: 'off', placeholder: 'https://jenkins.example.com/oidc', disabled: true });
  // What each preset's jobs are usually matched on (GitHub's and GitLab's claim names).
  const presetClaims = {
    github: 'repository=octo-org/deploy-app\nref=refs/heads/main',
    gitlab: 'project_path=group/deploy-app\nref_protected=true',
    '': 'sub=…',
  };
  const audience = h('input', { type: 'text', id: 'trust-audience', autocomplete: 'off', placeholder: 'https://deploy.example.com' });
  const claims = h('textarea', { id: 'trust-claims', rows: 3, class: 'mono', placeholder: presetClaims.github });
  preset.addEventListener('change', () => {
    issuer.disabled = preset.value !== '';
    claims.placeholder = presetClaims[preset.value];
  });
  const user = h('input', { type: 'text', id: 'trust-user', autocomplete: 'off', placeholder: 'ci-deploy-app' });
  const scope = h('select', { id: 'trust-scope' },
    h('option', { value: 'full' }, 'Full access'),
    h('option', { value: 'read' }, 'Read only'),
    h('option', { value: 'webhook' }, 'Webhooks only'));
  const lifetime = h('input', { type: 'text', id: 'trust-lifetime', value: '15m' });
  const error = messageSlot();
  const save = h('button', { type: 'submit', class: 'btn btn-primary', id: 'trust-save' }, 'Create');
  const form = h('form', { class: 'panel', id: 'trust-form', novalidate: true, 'aria-labelledby': 'trust-form-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'trust-form-title' }, 'New trust policy')),
    h('div', { class: 'card-body form-grid' },
      field('Name', name, { required: true }),
      field('CI system', preset),
      field('Issuer', issuer, { hint: 'Only for another issuer: its iss, served over https.' }),
      field('Audience', audience, { required: true, hint: 'The aud the job asks its CI system for.' }),
      field('Conditions', claims, { wide: true, required: true, hint: 'One claim=value per line; * and ? are wildcards; all must match.' }),
      field('Acts as user', user, { required: true }),
      field('Scope', scope),
      field('Token lifetime', lifetime, { hint: '1m to 1h.' })),
    h('div', { class: 'card-foot' }, save, h('button', { type: 'button', class: 'btn', onclick: close }, 'Cancel'), error));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const conditions = {};
    for (const line of claims.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf('=');
      if (at <= 0) {
        showError(error, new Error(`Conditions: write each as claim=value (“${line}”).`));
        claims.focus();
        return;
      }
      conditions[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    const body = {
      name: name.value.trim(),
      audience: audience.value.trim(),
      claims: conditions,
      user: user.value.trim(),
      scope: scope.value,
      lifetime: lifetime.value.trim(),
    };
    if (preset.value) body.preset = preset.value;
    else body.issuer = issuer.value.trim();
    await busy(save, async () => {
      try {
        await api('POST', '/trust-policies', body);
        await saved();
      } catch (e) {
        showError(error, e);
      }
    });
  });
  return form;
}

// ------------------------------------------------------------------ Service accounts

async function renderServiceAccounts() {
  document.title = 'Service accounts · Digital.ai Deploy';
  const create = me.admin ? h('button', { type: 'button', class: 'btn btn-primary', id: 'sa-new' }, 'New service account') : null;
  const formSlot = h('div', {});
  const listError = messageSlot();
  const list = h('div', {});
  const tokensSlot = h('div', {});
  setMain(
    pageHead('Service accounts', 'Deploy users that automation’s tokens act as, looked after by their owners, so that a pipeline keeps working when a person leaves.', create),
    formSlot,
    h('section', { class: 'card', 'aria-labelledby': 'sa-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'sa-title' }, me.admin ? 'All service accounts' : 'Service accounts you own'), listError),
      list),
    tokensSlot);
  const reload = async () => {
    try {
      const accounts = await api('GET', '/service-accounts');
      list.replaceChildren(serviceAccountTable(accounts, reload, (a) => showAccountTokens(tokensSlot, a, reload)));
      showError(listError, null);
    } catch (e) {
      showError(listError, e);
    }
  };
  if (create) {
    create.addEventListener('click', () => {
      formSlot.replaceChildren(serviceAccountForm({
        close: () => formSlot.replaceChildren(),
        saved: async () => { formSlot.replaceChildren(); await reload(); },
      }));
      formSlot.querySelector('input').focus();
    });
  }
  await reload();
}

function serviceAccountTable(accounts, reload, openTokens) {
  if (!accounts.length) {
    return h('p', { class: 'empty' }, me.admin
      ? 'No service accounts yet. Create one for each pipeline or integration.'
      : 'You own no service account. An administrator names the owners of each.');
  }
  return h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'service-accounts' },
    h('thead', {}, h('tr', {}, ['Name', 'Description', 'Owners', 'Live tokens', 'Status', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, accounts.map((a) => {
      const owners = a.owners.map((o) => (o.active ? o.username : `${o.username} (inactive)`)).join(', ');
      const status = a.no_active_owner
        ? h('span', { class: 'pill pill-expired' }, 'No active owner')
        : h('span', { class: 'pill pill-neutral' }, 'Looked after');
      const tokens = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Tokens of ${a.name}` }, 'Tokens');
      tokens.addEventListener('click', () => openTokens(a));
      let del = null;
      if (me.admin) {
        del = h('button', { type: 'button', class: 'btn btn-small btn-ghost-danger', 'aria-label': `Delete ${a.name}` }, 'Delete');
        del.addEventListener('click', () => confirmDialog({
          title: 'Delete service account?',
          body: h('p', {}, 'Every token of ', h('strong', {}, a.name), ' stops working at once. The Deploy user itself is not changed.'),
          confirmText: 'Delete',
          returnFocus: del,
          action: async () => { await api('DELETE', `/service-accounts/${encodeURIComponent(a.name)}`); await reload(); },
        }));
      }
      return h('tr', { 'data-account': a.name },
        h('td', { 'data-label': 'Name' }, h('strong', {}, a.name)),
        h('td', { 'data-label': 'Description' }, a.description || '—'),
        h('td', { 'data-label': 'Owners' }, owners),
        h('td', { 'data-label': 'Live tokens' }, String(a.live_tokens)),
        h('td', { 'data-label': 'Status' }, status),
        h('td', { class: 'actions-cell' }, tokens, del));
    }))));
}

function serviceAccountForm({ close, saved }) {
  const name = h('input', { type: 'text', id: 'sa-name', autocomplete: 'off' });
  const description = h('input', { type: 'text', id: 'sa-description', maxlength: '500' });
  const owners = h('input', { type: 'text', id: 'sa-owners', autocomplete: 'off' });
  const error = messageSlot();
  const save = h('button', { type: 'submit', class: 'btn btn-primary', id: 'sa-save' }, 'Create');
  const form = h('form', { class: 'panel', id: 'sa-form', novalidate: true, 'aria-labelledby': 'sa-form-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'sa-form-title' }, 'New service account')),
    h('div', { class: 'card-body form-grid' },
      field('Deploy user', name, { required: true, hint: 'The Deploy user its tokens act as.' }),
      field('Description', description),
      field('Owners', owners, { required: true, wide: true, hint: 'Users who create, rotate and delete its tokens, separated by commas.' })),
    h('div', { class: 'card-foot' }, save, h('button', { type: 'button', class: 'btn', onclick: close }, 'Cancel'), error));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const body = {
      name: name.value.trim(),
      description: description.value.trim(),
      owners: owners.value.split(',').map((o) => o.trim()).filter(Boolean),
    };
    await busy(save, async () => {
      try {
        await api('POST', '/service-accounts', body);
        await saved();
      } catch (e) {
        showError(error, e);
      }
    });
  });
  return form;
}

async function showAccountTokens(slot, account, reloadAccounts) {
  const path = `/service-accounts/${encodeURIComponent(account.name)}/tokens`;
  const error = messageSlot();
  const created = h('div', {});
  const list = h('div', {});
  const tokenName = h('input', { type: 'text', id: 'sa-token-name', autocomplete: 'off' });
  const expiration = h('select', { id: 'sa-token-expiration' },
    ...me.expiration_choices.map((c) => h('option', { value: c }, EXPIRATIONS[c] || c)));
  const make = h('button', { type: 'submit', class: 'btn btn-primary', id: 'sa-token-create' }, 'Generate');
  const form = h('form', { class: 'card-body form-grid', novalidate: true },
    field('Token name', tokenName, { required: true }), field('Expiration', expiration), h('div', { class: 'field' }, make));
  const reload = async () => {
    try {
      const tokens = await api('GET', path);
      list.replaceChildren(tokens.length
        ? h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'sa-tokens' },
          h('thead', {}, h('tr', {}, ['Name', 'Expires in', 'Last used', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, tokens.map((t) => {
            const del = h('button', { type: 'button', class: 'btn btn-small btn-ghost-danger', 'aria-label': `Delete ${t.name}` }, 'Delete');
            del.addEventListener('click', () => confirmDialog({
              title: 'Delete token?',
              body: h('p', {}, 'Anything using ', h('strong', {}, t.name), ` as ${account.name} stops working at once.`),
              confirmText: 'Delete',
              returnFocus: del,
              action: async () => { await api('DELETE', `/tokens/${encodeURIComponent(t.id)}`); await reload(); await reloadAccounts(); },
            }));
            return h('tr', { 'data-token-id': t.id },
              h('td', { 'data-label': 'Name' }, t.name),
              h('td', { 'data-label': 'Expires in' }, pill(t.expires_in, t.expires_at)),
              h('td', { 'data-label': 'Last used' }, time(t.last_used_at, 'Never')),
              h('td', { class: 'actions-cell' }, del));
          }))))
        : h('p', { class: 'empty' }, 'No tokens yet.'));
      showError(error, null);
    } catch (e) {
      showError(error, e);
    }
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    await busy(make, async () => {
      try {
        const token = await api('POST', path, { name: tokenName.value.trim(), expiration: expiration.value });
        showNewToken(created, token);
        tokenName.value = '';
        await reload();
        await reloadAccounts();
      } catch (e) {
        showError(error, e);
      }
    });
  });
  slot.replaceChildren(h('section', { class: 'card', 'aria-labelledby': 'sa-tokens-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'sa-tokens-title' }, `Tokens of ${account.name}`), error),
    form, created, list));
  await reload();
}

// ------------------------------------------------------------------ Users

async function renderUsers() {
  document.title = 'Users · Digital.ai Deploy';
  const search = h('input', { type: 'search', id: 'user-search', placeholder: 'Name or e-mail' });
  const error = messageSlot();
  const list = h('div', {});
  let page = 1;
  const form = h('form', { class: 'card-head', role: 'search' },
    h('div', { class: 'inline-form' }, field('Search users', search),
      h('button', { type: 'submit', class: 'btn' }, 'Search')), error);
  setMain(pageHead('Users', 'Everyone who has signed in or holds a token. Disabling a user stops their tokens and ends their sessions at once.'),
    h('section', { class: 'card' }, form, list));
  const reload = async () => {
    try {
      const params = new URLSearchParams({ page: String(page), per_page: '50' });
      if (search.value.trim()) params.set('search', search.value.trim());
      const data = await api('GET', `/users?${params}`);
      list.replaceChildren();
      append(list, [usersTable(data.users, reload, error), pager(data, (p) => { page = p; reload(); })]);
      showError(error, null);
    } catch (e) {
      showError(error, e);
    }
  };
  form.addEventListener('submit', (event) => { event.preventDefault(); page = 1; reload(); });
  await reload();
}

function usersTable(users, reload, error) {
  if (!users.length) return h('p', { class: 'empty' }, 'No users found.');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'users' },
    h('thead', {}, h('tr', {}, ['User', 'Source', 'Status', 'Roles', 'Tokens', 'Last sign-in', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, users.map((u) => {
      const toggle = h('button', { type: 'button', class: `btn btn-small${u.disabled ? '' : ' btn-ghost-danger'}` }, u.disabled ? 'Enable' : 'Disable');
      toggle.setAttribute('aria-label', `${u.disabled ? 'Enable' : 'Disable'} ${u.username}`);
      toggle.addEventListener('click', () => busy(toggle, async () => {
        try {
          await api('POST', `/users/${encodeURIComponent(u.username)}/${u.disabled ? 'enable' : 'disable'}`);
          await reload();
        } catch (e) {
          showError(error, e);
        }
      }));
      const revoke = h('button', { type: 'button', class: 'btn btn-small btn-ghost-danger', disabled: !u.tokens, 'aria-label': `Revoke all tokens of ${u.username}` }, 'Revoke tokens');
      revoke.addEventListener('click', () => confirmDialog({
        title: 'Revoke all tokens?',
        body: [h('p', {}, 'Delete all ', String(u.tokens), ` token${u.tokens === 1 ? '' : 's'} of `, h('strong', {}, u.username), '?'),
          h('p', { class: 'muted' }, 'Everything that uses them stops working within a second.')],
        confirmText: 'Revoke tokens',
        returnFocus: document.getElementById('user-search'),
        action: async () => {
          await api('DELETE', `/users/${encodeURIComponent(u.username)}/tokens`);
          await reload();
        },
      }));
      return h('tr', { 'data-user': u.username },
        h('td', { class: 'name', 'data-label': 'User' }, u.username, u.admin ? h('span', { class: 'sub' }, 'administrator') : null,
          u.email ? h('span', { class: 'sub' }, u.email) : null),
        h('td', { 'data-label': 'Source' }, sourceName(u.source)),
        h('td', { 'data-label': 'Status' }, userStatus(u)),
        h('td', { class: 'roles', 'data-label': 'Roles' }, userRoles(u.sso)),
        h('td', { 'data-label': 'Tokens' }, String(u.tokens)),
        h('td', { class: 'nowrap', 'data-label': 'Last sign-in' }, time(u.last_sign_in_at, 'Never')),
        h('td', { class: 'actions-cell' }, h('div', { class: 'actions' }, toggle, revoke)));
    }))));
}

function userStatus(u) {
  if (u.disabled) return h('span', { class: 'pill pill-expired' }, 'Disabled');
  if (u.sso && u.sso.suspended_at) {
    const el = h('span', { class: 'pill pill-expired' }, 'Suspended');
    el.title = 'The SSO provider refused this user; their tokens work again after an SSO sign-in.';
    return h('span', {}, el, h('span', { class: 'sub' }, 'since ', time(u.sso.suspended_at)));
  }
  return h('span', { class: 'pill pill-ok' }, 'Active');
}

const ROLES_SOURCES = { scim: 'pushed by SCIM', revalidation: 're-validated', signin: 'from sign-in' };
const REVALIDATION_RESULTS = {
  ok: 're-validated', refused: 'refused by the provider', unreachable: 'provider not reached', no_refresh_token: 'no refresh token: as of last sign-in',
};

/** An SSO user's roles, who set them and when, and the last re-validation when it says
 * more than that; `—` for other users. */
function userRoles(sso) {
  if (!sso) return h('span', { class: 'muted' }, '—');
  const roles = sso.roles.length ? sso.roles.join(', ') : h('span', { class: 'muted' }, 'none');
  const source = sso.roles_source ? [ROLES_SOURCES[sso.roles_source] || sso.roles_source, ' ', time(sso.roles_updated_at)] : null;
  const same = sso.revalidation === 'ok' && sso.roles_source === 'revalidation';
  const check = sso.revalidation && !same
    ? [REVALIDATION_RESULTS[sso.revalidation] || sso.revalidation, sso.revalidated_at ? [' ', time(sso.revalidated_at)] : null]
    : null;
  return h('span', {}, roles,
    source ? h('span', { class: 'sub', 'data-field': 'roles-source' }, source) : null,
    check ? h('span', { class: 'sub', 'data-field': 'revalidation' }, check) : null);
}

function pager(data, go) {
  const pages = Math.max(1, Math.ceil(data.total / data.per_page));
  if (pages <= 1) return null;
  const more = data.total_capped ? '+' : '';
  const prev = h('button', { type: 'button', class: 'btn btn-small', disabled: data.page <= 1 }, 'Previous');
  const next = h('button', { type: 'button', class: 'btn btn-small', disabled: data.page >= pages && !data.total_capped }, 'Next');
  prev.addEventListener('click', () => go(data.page - 1));
  next.addEventListener('click', () => go(data.page + 1));
  return h('div', { class: 'pager' }, `Page ${data.page} of ${pages}${more} · ${data.total.toLocaleString()}${more} in all`, prev, next);
}

// ------------------------------------------------------------------ Audit log

async function renderAudit() {
  document.title = 'Audit log · Digital.ai Deploy';
  const user = h('input', { type: 'text', id: 'audit-user', autocomplete: 'off' });
  const action = h('select', { id: 'audit-action' }, h('option', { value: '' }, 'All actions'),
    AUDIT_ACTIONS.map((a) => h('option', { value: a }, a)));
  const error = messageSlot();
  const list = h('div', {});
  let page = 1;
  const form = h('form', { class: 'card-head', role: 'search' },
    h('div', { class: 'inline-form' }, field('User', user), field('Action', action),
      h('button', { type: 'submit', class: 'btn' }, 'Filter')), error);
  setMain(pageHead('Audit log', 'Who did what, when, and from which address. Never a token, password or code.'),
    h('section', { class: 'card' }, form, list));
  const reload = async () => {
    try {
      const params = new URLSearchParams({ page: String(page), per_page: '50' });
      if (user.value.trim()) params.set('user', user.value.trim());
      if (action.value) params.set('action', action.value);
      const data = await api('GET', `/audit?${params}`);
      list.replaceChildren();
      append(list, [auditTable(data.entries), pager(data, (p) => { page = p; reload(); })]);
      showError(error, null);
    } catch (e) {
      showError(error, e);
    }
  };
  form.addEventListener('submit', (event) => { event.preventDefault(); page = 1; reload(); });
  await reload();
}

function auditTable(entries) {
  if (!entries.length) return h('p', { class: 'empty' }, 'No entries.');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'audit' },
    h('thead', {}, h('tr', {}, ['When', 'Action', 'By', 'User', 'Address', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, entries.map((e) => h('tr', {},
      h('td', { class: 'nowrap', 'data-label': 'When' }, time(e.at)),
      h('td', { class: 'name', 'data-label': 'Action' }, h('code', {}, e.action)),
      h('td', { 'data-label': 'By' }, e.actor || h('span', { class: 'muted' }, 'gateway')),
      h('td', { 'data-label': 'User' }, e.user || '—'),
      h('td', { class: 'mono', 'data-label': 'Address' }, e.ip || '—'),
      h('td', { class: 'detail mono', 'data-label': 'Detail' }, e.detail ? JSON.stringify(e.detail) : ''))))));
}

// ------------------------------------------------------------------ Token inventory

const STATE_LABELS = { active: 'Active', expired: 'Expired', revoked: 'Revoked' };
const MADE_BY_LABELS = { page: 'Pages', cli: 'Command line', api: 'API', exchange: 'Token exchange' };
const OWNER_SOURCES = { internal: 'Internal', ldap: 'LDAP', sso: 'SSO', service_account: 'Service account' };
const INVENTORY_SORTS = {
  '-created_at': 'Newest first', created_at: 'Oldest first', expires_at: 'Expiring soonest',
  last_used_at: 'Longest unused', owner: 'Owner', name: 'Name',
};
const REVOKE_ALL_PHRASE = 'revoke every token';

function choice(id, empty, options, value) {
  return h('select', { id }, h('option', { value: '' }, empty),
    Object.entries(options).map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
}

async function renderInventory() {
  document.title = 'Token inventory · Digital.ai Deploy';
  const owner = h('input', { type: 'text', id: 'inv-owner', autocomplete: 'off' });
  const source = choice('inv-source', 'Any source', OWNER_SOURCES);
  const scope = choice('inv-scope', 'Any scope', SCOPE_LABELS);
  const state = choice('inv-state', 'Any state', { active: 'Active', expiring: 'Expiring soon', expired: 'Expired', revoked: 'Revoked' });
  const within = h('input', { type: 'number', id: 'inv-within', min: 0, max: 3650, inputmode: 'numeric', placeholder: 'days' });
  const unused = h('input', { type: 'number', id: 'inv-unused', min: 0, max: 3650, inputmode: 'numeric', placeholder: 'days' });
  const madeBy = choice('inv-made-by', 'Made any way', { ...MADE_BY_LABELS, unknown: 'Unknown' });
  const sort = h('select', { id: 'inv-sort' }, Object.entries(INVENTORY_SORTS).map(([v, text]) => h('option', { value: v }, text)));
  const error = messageSlot();
  const list = h('div', {});
  const exportLink = h('a', { class: 'btn', id: 'inv-export', download: 'patgate-tokens.csv' }, 'Export CSV');
  const revokeSelected = h('button', { type: 'button', class: 'btn btn-ghost-danger', id: 'inv-revoke-selected', disabled: true }, 'Revoke selected');
  const revokeAll = h('button', { type: 'button', class: 'btn btn-danger', id: 'inv-revoke-all' }, 'Revoke every token');
  const selected = new Set();
  let page = 1;
  const form = h('form', { class: 'card-head', role: 'search' },
    h('div', { class: 'inline-form' },
      field('Owner', owner), field('Source', source), field('Scope', scope), field('State', state),
      field('Expires within', within), field('Unused for at least', unused), field('Made by', madeBy), field('Sort', sort),
      h('button', { type: 'submit', class: 'btn' }, 'Filter')), error);
  setMain(pageHead('Token inventory', 'Every token of every user and service account. Select tokens to revoke them; revoking stops them on every replica within a second.',
    exportLink, revokeAll),
  h('section', { class: 'card' }, form, h('div', { class: 'card-body' }, revokeSelected), list));
  const params = () => {
    const p = new URLSearchParams();
    for (const [key, el] of [['owner', owner], ['source', source], ['scope', scope], ['state', state],
      ['expires_within_days', within], ['unused_for_days', unused], ['made_by', madeBy], ['sort', sort]]) {
      if (el.value.trim()) p.set(key, el.value.trim());
    }
    return p;
  };
  const updateSelection = () => {
    revokeSelected.disabled = !selected.size;
    revokeSelected.textContent = selected.size ? `Revoke ${selected.size} selected` : 'Revoke selected';
  };
  const reload = async () => {
    try {
      const p = params();
      const csv = new URLSearchParams(p);
      csv.set('format', 'csv');
      exportLink.href = `${API}/token-inventory?${csv}`;
      p.set('page', String(page));
      p.set('per_page', '50');
      const data = await api('GET', `/token-inventory?${p}`);
      selected.clear();
      updateSelection();
      list.replaceChildren();
      append(list, [inventoryTable(data.tokens, selected, updateSelection), pager(data, (n) => { page = n; reload(); })]);
      showError(error, null);
    } catch (e) {
      showError(error, e);
    }
  };
  form.addEventListener('submit', (event) => { event.preventDefault(); page = 1; reload(); });
  revokeSelected.addEventListener('click', () => confirmDialog({
    title: 'Revoke the selected tokens?',
    body: [h('p', {}, `Revoke ${selected.size} token${selected.size === 1 ? '' : 's'}?`),
      h('p', { class: 'muted' }, 'Everything that uses them stops working within a second. This cannot be undone.')],
    confirmText: 'Revoke tokens',
    returnFocus: revokeSelected,
    action: async () => {
      const outcome = await api('POST', '/token-inventory/revoke', { ids: [...selected] });
      await reload();
      showStatus(error, `${outcome.revoked} token${outcome.revoked === 1 ? '' : 's'} revoked.`);
    },
  }));
  revokeAll.addEventListener('click', () => revokeEverything(revokeAll, async (outcome) => {
    await reload();
    showStatus(error, `Every token was revoked (${outcome.revoked}).`);
  }));
  await reload();
}

function inventoryTable(tokens, selected, changed) {
  if (!tokens.length) return h('p', { class: 'empty' }, 'No tokens match.');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'inventory' },
    h('thead', {}, h('tr', {}, ['', 'Token', 'Owner', 'State', 'Scope', 'Made by', 'Created', 'Expires in', 'Last used'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, tokens.map((t) => {
      const box = h('input', { type: 'checkbox', 'aria-label': `Select ${t.name} of ${t.owner}`, disabled: t.state !== 'active' });
      box.addEventListener('change', () => {
        if (box.checked) selected.add(t.id); else selected.delete(t.id);
        changed();
      });
      return h('tr', { 'data-token': t.id },
        h('td', { class: 'select-cell' }, box),
        h('td', { class: 'name', 'data-label': 'Token' }, t.name, h('span', { class: 'sub mono' }, t.id)),
        h('td', { 'data-label': 'Owner' }, t.owner, h('span', { class: 'sub' }, OWNER_SOURCES[t.owner_source] || t.owner_source)),
        h('td', { 'data-label': 'State' }, h('span', { class: `pill ${t.state === 'active' ? 'pill-ok' : 'pill-expired'}` }, STATE_LABELS[t.state] || t.state)),
        h('td', { 'data-label': 'Scope' }, SCOPE_LABELS[t.scope] || t.scope),
        h('td', { 'data-label': 'Made by' }, t.made_by ? MADE_BY_LABELS[t.made_by] || t.made_by : h('span', { class: 'muted' }, 'Unknown')),
        h('td', { class: 'nowrap', 'data-label': 'Created' }, time(t.created_at)),
        h('td', { 'data-label': 'Expires in' }, t.state === 'active' ? pill(t.expires_in, t.expires_at) : '—'),
        h('td', { class: 'nowrap', 'data-label': 'Last used' }, time(t.last_used_at, 'Never')));
    }))));
}

/** The emergency button: revokes every token once the administrator types the phrase. */
function revokeEverything(button, done) {
  const phrase = h('input', { type: 'text', id: 'revoke-all-phrase', autocomplete: 'off', spellcheck: 'false' });
  confirmDialog({
    title: 'Revoke every token?',
    body: [
      h('p', {}, 'Every token of every user and service account stops working within a second: scripts, CI jobs and webhooks included. This cannot be undone.'),
      field(`Type “${REVOKE_ALL_PHRASE}” to confirm`, phrase),
    ],
    confirmText: 'Revoke every token',
    returnFocus: button,
    action: async () => {
      if (phrase.value.trim() !== REVOKE_ALL_PHRASE) {
        phrase.focus();
        throw new Error(`Type “${REVOKE_ALL_PHRASE}” exactly to confirm.`);
      }
      await done(await api('POST', '/token-inventory/revoke', { all: true, confirm: phrase.value.trim() }));
    },
  });
}

// ------------------------------------------------------------------ start

const VIEWS = {
  '/patgate/': renderTokens,
  '/patgate/admin/settings': renderSettings,
  '/patgate/admin/smtp-servers': renderSmtpServers,
  '/patgate/admin/users': renderUsers,
  '/patgate/admin/audit': renderAudit,
  '/patgate/admin/tokens': renderInventory,
  '/patgate/admin/trust-policies': renderTrustPolicies,
  '/patgate/service-accounts': renderServiceAccounts,
};

async function start() {
  if (location.pathname === '/patgate/signin') {
    await renderSignIn();
    return;
  }
  try {
    me = await api('GET', '/me');
  } catch (e) {
    if (e.status === 401) {
      goSignIn();
      return;
    }
    setMain(callout('error', h('p', {}, e.message)));
    return;
  }
  renderShell();
  const view = VIEWS[location.pathname] || renderTokens;
  const adminOnly = location.pathname.startsWith('/patgate/admin/');
  if (adminOnly && !me.admin) {
    setMain(pageHead('Not available'), callout('info', h('p', {}, 'This page is for administrators.')));
    return;
  }
  try {
    await view();
  } catch (e) {
    setMain(callout('error', h('p', {}, e.message)));
  }
}

document.addEventListener('DOMContentLoaded', () => {
  start().finally(() => {
    document.body.dataset.ready = 'true';
    // Read by the page-load measurement (bench/ui.sh).
    performance.mark('patgate-ready');
  });
});
