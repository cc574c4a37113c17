// The node operator's console, served on the node's private admin listener: proposals this node's policy held,
// with the node's OWN decoding (not the coordinator's) and the reasons that held them; approve or reject with a
// required comment (kept in the node's audit log); recent decisions; the audit chain's verification; keyring and
// roster. The admin token, when the node has one, is kept in sessionStorage (this tab only). Every value is text.
import { badge, card, code, errorBox, h, mount, page, readJson, table, when } from './dom.js';
import { transaction } from './words.js';

const KEY = 'cosigner.adminToken';
const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const top = /** @type {HTMLElement} */ (document.getElementById('top'));
let signedIn = false;
let timer = 0;

async function api(path, init = {}) {
  const headers = {};
  const token = sessionStorage.getItem(KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    cache: 'no-store',
  });
  return readJson(res);
}

function showSignIn(message) {
  signedIn = false;
  mount(top, h('strong', {}, 'Node console'));
  const input = h('input', { id: 'admin-token', type: 'password', autocomplete: 'off', 'aria-label': 'Admin token' });
  mount(
    main,
    h(
      'section',
      { class: 'card signin' },
      h(
        'form',
        {
          id: 'signin',
          onsubmit: async (/** @type {Event} */ ev) => {
            ev.preventDefault();
            sessionStorage.setItem(KEY, /** @type {HTMLInputElement} */ (input).value.trim());
            await start();
          },
        },
        h('h1', {}, 'Sign in'),
        h('p', {}, "Paste this node's admin token (adminTokenFile). It is kept for this tab only."),
        input,
        h('button', { type: 'submit' }, 'Sign in'),
        message ? errorBox(message) : null,
      ),
    ),
  );
}

function header() {
  const route = location.hash || '#/held';
  const link = (href, text) => h('a', { href, class: route === href ? 'active' : null }, text);
  mount(
    top,
    h('strong', {}, 'Node console'),
    link('#/held', 'Held proposals'),
    link('#/decisions', 'Recent decisions'),
    link('#/audit', 'Audit chain'),
    link('#/keyring', 'Keyring and roster'),
    h(
      'span',
      { class: 'who' },
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: () => {
            sessionStorage.removeItem(KEY);
            showSignIn();
          },
        },
        'Sign out',
      ),
    ),
  );
}

function reasons(list) {
  return h(
    'ul',
    { class: 'reasons' },
    list.map((r) =>
      h(
        'li',
        {},
        h('code', {}, r.code),
        ' ',
        r.message,
        r.opIndex !== undefined ? ` (operation #${r.opIndex + 1})` : '',
      ),
    ),
  );
}

function heldCard(p) {
  const comment = h('textarea', {
    class: 'comment',
    placeholder: 'Comment (required): why you approve or reject',
    maxlength: 512,
    'aria-label': 'Comment',
  });
  const by = h('input', {
    class: 'by',
    placeholder: 'your name (optional; letters, digits . _ @ : -)',
    maxlength: 128,
    size: 42,
  });
  const approve = h('button', { type: 'button', class: 'approve', disabled: true }, 'Approve and sign');
  const reject = h('button', { type: 'button', class: 'danger reject', disabled: true }, 'Reject');
  const out = h('div', {});
  comment.addEventListener('input', () => {
    const empty = /** @type {HTMLTextAreaElement} */ (comment).value.trim() === '';
    approve.toggleAttribute('disabled', empty);
    reject.toggleAttribute('disabled', empty);
  });
  const act = async (action) => {
    const note = /** @type {HTMLTextAreaElement} */ (comment).value.trim();
    if (!note) return;
    const name = /** @type {HTMLInputElement} */ (by).value.trim();
    approve.toggleAttribute('disabled', true);
    reject.toggleAttribute('disabled', true);
    try {
      const d = await api(`/v1/pending/${encodeURIComponent(p.id)}/${action}`, {
        method: 'POST',
        body: name ? { note, by: name } : { note },
      });
      mount(
        out,
        h(
          'p',
          { class: 'notice decided' },
          'Decision ',
          badge(d.outcome),
          d.delivered ? ' sent to the coordinator.' : ' recorded; it is sent when the coordinator session is back.',
          d.reasons.length > 0 ? reasons(d.reasons) : null,
        ),
      );
      window.setTimeout(() => route(), 1500);
    } catch (e) {
      mount(out, errorBox(e));
      approve.toggleAttribute('disabled', false);
      reject.toggleAttribute('disabled', false);
    }
  };
  approve.addEventListener('click', () => act('approve'));
  reject.addEventListener('click', () => act('reject'));
  return h(
    'section',
    { class: 'card held', 'data-id': p.id },
    h('h2', {}, 'Held ', badge('held'), ' ', h('span', { class: 'muted' }, `since ${when(p.receivedAt)}`)),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Proposal'),
      h('dd', {}, code(p.id)),
      h('dt', {}, 'Hash'),
      h('dd', {}, code(p.hash)),
    ),
    h('h3', {}, "Why this node's policy held it"),
    reasons(p.reasons),
    h('h3', {}, "What it does (this node's own decoding)"),
    transaction(p.summary, when),
    h('h3', {}, 'Your decision'),
    comment,
    h('div', { class: 'toolbar' }, by, approve, reject),
    out,
  );
}

async function heldPage() {
  const { pending } = await api('/v1/pending');
  return h(
    'div',
    { id: 'held' },
    h('h1', {}, `Held proposals (${pending.length})`),
    pending.length === 0 ? h('p', { class: 'muted' }, 'Nothing is waiting for a decision.') : pending.map(heldCard),
  );
}

async function decisionsPage() {
  const { decisions } = await api('/v1/decisions?limit=100');
  return page(
    'Recent decisions',
    table(
      { id: 'decisions' },
      ['When', 'Outcome', 'Proposal', 'Hash', 'Reasons'],
      decisions.map((d) =>
        h(
          'tr',
          {},
          h('td', {}, when(d.at)),
          h('td', {}, badge(d.outcome)),
          h('td', {}, code(d.proposalId, true)),
          h('td', {}, code(d.hash, true)),
          h('td', {}, reasons(d.reasons)),
        ),
      ),
    ),
  );
}

async function auditPage() {
  const a = await api('/v1/audit?limit=50');
  return page(
    'Audit chain',
    h(
      'section',
      { class: 'card', id: 'audit-status' },
      a.ok
        ? h(
            'p',
            {},
            badge('ok'),
            ` All ${a.entries} entries verified: each links to the one before and matches its hash. Head `,
            code(a.head, true),
          )
        : h('p', {}, badge('broken'), ` Broken at entry ${a.brokenAt}: ${a.reason}`),
    ),
    table(
      {},
      ['#', 'When', 'Type', 'Data'],
      a.recent.map((e) =>
        h(
          'tr',
          {},
          h('td', {}, String(e.seq)),
          h('td', {}, when(e.at)),
          h('td', {}, e.type),
          h('td', {}, h('pre', {}, JSON.stringify(e.data, null, 1))),
        ),
      ),
    ),
  );
}

async function keyringPage() {
  const k = await api('/v1/keyring');
  return page(
    'Keyring and roster',
    card(
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Active key'),
        h('dd', {}, code(k.active)),
        h('dt', {}, 'Pending key'),
        h('dd', {}, k.pending ? code(k.pending) : 'none'),
      ),
    ),
    h('h2', {}, 'Keys'),
    table(
      {},
      ['Address', 'State', 'Backend', 'Key id', 'Since'],
      k.keys.map((e) =>
        h(
          'tr',
          {},
          h('td', {}, code(e.address)),
          h('td', {}, e.state),
          h('td', {}, e.kind),
          h('td', {}, code(e.keyId, true)),
          h('td', {}, when(e.updatedAt)),
        ),
      ),
    ),
    h('h2', {}, 'Roster: the cluster members this operator accepts'),
    table(
      {},
      ['Address', 'Node', 'Added by', 'Added'],
      k.roster.map((m) =>
        h(
          'tr',
          {},
          h('td', {}, code(m.address)),
          h('td', {}, m.nodeId ?? '—'),
          h('td', {}, m.addedBy),
          h('td', {}, when(m.addedAt)),
        ),
      ),
    ),
  );
}

async function route() {
  if (!signedIn) return;
  header();
  const path = location.hash || '#/held';
  const page = { '#/decisions': decisionsPage, '#/audit': auditPage, '#/keyring': keyringPage }[path] ?? heldPage;
  try {
    mount(main, await page());
  } catch (e) {
    if (e.status === 401) return showSignIn(e);
    mount(main, errorBox(e));
  }
  // Held proposals arrive from the coordinator at any time: look again every few seconds, unless a comment is
  // being written (that form must not be wiped).
  clearTimeout(timer);
  timer = window.setTimeout(function again() {
    const typing = [...document.querySelectorAll('textarea.comment')].some((t) => t.value.trim() !== '');
    if (typing) timer = window.setTimeout(again, 3000);
    else route();
  }, 3000);
}

async function start() {
  try {
    await api('/v1/pending');
  } catch (e) {
    if (e.status === 401) return showSignIn(sessionStorage.getItem(KEY) ? e : undefined);
    return mount(main, errorBox(e));
  }
  signedIn = true;
  await route();
}

window.addEventListener('hashchange', () => route());
start();
