// The coordinator's web console: sign-in with an API key (kept in sessionStorage: this tab only, gone when it
// closes), proposals with filters and search, one proposal's decoding, weight, timeline and envelope, a new
// proposal from pasted XDR (decoded before it is sent), and the nodes. Live through /v1/events. Plain ES module,
// no build step; every value is rendered as text (dom.js).
import { badge, card, code, copyButton, errorBox, h, mount, page, readJson, short, table, when } from './dom.js';
import { authEntry, transaction } from './words.js';

const KEY = 'cosigner.apiKey';
const STATUSES = ['pending', 'signed', 'submitted', 'failed', 'rejected', 'expired', 'cancelled'];
const SCOPE_WORDS = {
  read: 'see proposals, nodes and events',
  propose: 'create and cancel proposals',
  admin: 'do everything, including node lifecycle',
};

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const top = /** @type {HTMLElement} */ (document.getElementById('top'));
/** @type {{keyId: string, label: string|null, scopes: string[], network: string} | null} */
let session = null;
/** @type {WebSocket | null} */
let socket = null;
let live = false;
let refreshTimer = 0;
let render = () => {};

const apiKey = () => sessionStorage.getItem(KEY);
const can = (scope) => !!session && (session.scopes.includes(scope) || session.scopes.includes('admin'));

async function api(path, init = {}) {
  const headers = { authorization: `Bearer ${apiKey() ?? ''}` };
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    cache: 'no-store',
  });
  if (res.status === 401) signOut('The API key was refused (unknown or revoked).');
  return readJson(res);
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  session = null;
  socket?.close();
  socket = null;
  showSignIn(message);
}

function showSignIn(message) {
  mount(top, h('strong', {}, 'Cosigner console'));
  const input = h('input', {
    id: 'api-key',
    type: 'password',
    autocomplete: 'off',
    placeholder: 'cak.…',
    'aria-label': 'API key',
  });
  const form = h(
    'form',
    {
      id: 'signin',
      onsubmit: async (/** @type {Event} */ ev) => {
        ev.preventDefault();
        const value = /** @type {HTMLInputElement} */ (input).value.trim();
        if (!value) return;
        sessionStorage.setItem(KEY, value);
        await start();
      },
    },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'Paste an API key of the coordinator. It is kept for this tab only and sent with each request.'),
    input,
    h('button', { type: 'submit' }, 'Sign in'),
    message ? errorBox({ code: 'COORD_UNAUTHENTICATED', message }) : null,
  );
  mount(main, h('section', { class: 'card signin' }, form));
  input.focus();
}

/** What the signed-in key may do, in words (admin includes the others). */
function scopeWords() {
  if (!session) return '';
  if (session.scopes.includes('admin')) return SCOPE_WORDS.admin;
  return session.scopes.map((s) => SCOPE_WORDS[s] ?? s).join('; ');
}

function header() {
  const route = location.hash.split('?')[0];
  const link = (href, text) =>
    h('a', { href, class: route === href || (href === '#/proposals' && route === '') ? 'active' : null }, text);
  mount(
    top,
    h('strong', {}, 'Cosigner console'),
    link('#/proposals', 'Proposals'),
    can('propose') ? link('#/new', 'New proposal') : null,
    link('#/nodes', 'Nodes'),
    h('span', { class: `live ${live ? 'on' : 'off'}`, id: 'live' }, live ? '● live' : '○ offline'),
    h(
      'span',
      { class: 'who', id: 'who' },
      `key ${session?.label ?? session?.keyId ?? ''} · may ${scopeWords()} `,
      h('button', { type: 'button', class: 'secondary', id: 'signout', onclick: () => signOut() }, 'Sign out'),
    ),
  );
}

function connectEvents() {
  const key = apiKey();
  if (!key) return;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/events`;
  // A page cannot set headers on a WebSocket: the key travels as the second subprotocol (console-routes.ts).
  const ws = new WebSocket(url, ['cosigner.console', key]);
  socket = ws;
  ws.onopen = () => {
    live = true;
    header();
  };
  ws.onmessage = () => {
    clearTimeout(refreshTimer);
    refreshTimer = window.setTimeout(() => render(), 150);
  };
  ws.onclose = () => {
    live = false;
    if (socket === ws) {
      socket = null;
      if (session) {
        header();
        window.setTimeout(connectEvents, 2000);
      }
    }
  };
}

function params() {
  const q = location.hash.split('?')[1] ?? '';
  return new URLSearchParams(q);
}

async function proposalsPage() {
  const p = params();
  const status = p.get('status') ?? '';
  const q = p.get('q') ?? '';
  const select = h(
    'select',
    { id: 'status-filter', 'aria-label': 'Status' },
    h('option', { value: '' }, 'all statuses'),
    STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)),
  );
  const search = h('input', {
    id: 'search',
    type: 'search',
    placeholder: 'hash, account or idempotency key',
    value: q,
    size: 50,
  });
  const go = (/** @type {Event} */ ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    const s = /** @type {HTMLSelectElement} */ (select).value;
    const t = /** @type {HTMLInputElement} */ (search).value.trim();
    if (s) next.set('status', s);
    if (t) next.set('q', t);
    location.hash = `#/proposals?${next}`;
  };
  select.addEventListener('change', go);
  const body = h('tbody', {});
  const view = page(
    'Proposals',
    h('form', { class: 'inline', onsubmit: go }, select, search, h('button', { type: 'submit' }, 'Search')),
    table({ id: 'proposals' }, ['Status', 'Created', 'Kind', 'Hash', 'Note', 'Idempotency key', 'Weight'], body),
  );
  const addRows = (items) => {
    for (const it of items) {
      const weight = (it.requirements ?? []).map((r) => `${r.collected}/${r.weight}`).join(' ');
      body.appendChild(
        h(
          'tr',
          { class: 'row-link', 'data-id': it.id, onclick: () => (location.hash = `#/p/${it.id}`) },
          h('td', {}, badge(it.status)),
          h('td', {}, when(it.createdAt)),
          h('td', {}, it.kind),
          h('td', {}, h('a', { href: `#/p/${it.id}` }, short(it.hash, 8, 6))),
          h('td', { class: 'note' }, it.note ?? ''),
          h('td', {}, it.idempotencyKey ?? ''),
          h('td', {}, weight),
        ),
      );
    }
  };
  let items;
  if (q) {
    const found = (await api(`/v1/proposals/search?q=${encodeURIComponent(q)}`)).items;
    items = status ? found.filter((i) => i.status === status) : found;
  } else {
    const list = `/v1/proposals?limit=50${status ? `&status=${status}` : ''}`;
    const page = await api(list);
    items = page.items;
    // Older pages on demand (the list's cursor); a live event re-renders the newest page.
    let cursor = page.nextCursor;
    if (cursor) {
      const older = h('button', { type: 'button', class: 'secondary', id: 'older' }, 'Older proposals');
      older.addEventListener('click', async () => {
        const next = await api(`${list}&cursor=${encodeURIComponent(cursor)}`);
        addRows(next.items);
        cursor = next.nextCursor;
        if (!cursor) older.remove();
      });
      view.appendChild(h('div', { class: 'toolbar' }, older));
    }
  }
  addRows(items);
  if (items.length === 0)
    body.appendChild(
      h('tr', {}, h('td', { colspan: 7, class: 'muted' }, q ? 'Nothing matches this search.' : 'No proposals yet.')),
    );
  return view;
}

const reasonList = (reasons) =>
  Array.isArray(reasons) && reasons.length > 0
    ? h(
        'ul',
        { class: 'reasons' },
        reasons.map((r) => h('li', {}, h('code', {}, String(r.code)), ' ', String(r.message))),
      )
    : null;

/** One timeline row per stored event of the proposal (GET /v1/proposals/:id/events), in order. */
function timeline(p, events) {
  const node = (d) => h('strong', {}, String(d.nodeId ?? '?'));
  const row = (e) => {
    const d = e.data ?? {};
    switch (e.type) {
      case 'proposal.created':
        return ['Created', p.idempotencyKey ? ` (idempotency key ${p.idempotencyKey})` : ''];
      case 'node.approved':
        return [node(d), ' ', badge('approve'), ' signed'];
      case 'node.held':
        return [node(d), ' ', badge('hold'), " held it for its operator's decision", reasonList(d.reasons)];
      case 'node.rejected':
        return [node(d), ' ', badge('reject'), reasonList(d.reasons)];
      case 'node.unavailable':
        return [node(d), ' could not reach its key backend; it is asked again', reasonList(d.reasons)];
      case 'node.misbehaved':
        return [node(d), ' ', badge('invalid'), ` misbehaved: ${d.kind ?? ''} ${d.detail ?? ''}`];
      case 'quorum.reached':
        return ['Quorum reached: every required level has its weight'];
      case 'proposal.submitted': {
        const r = p.result;
        return [
          `Submitted in ledger ${d.ledger ?? r?.ledger ?? '?'}`,
          r?.code ? ` · result ${r.code}` : '',
          ` · ${d.attempts ?? r?.attempts ?? 1} attempt(s)`,
        ];
      }
      case 'proposal.failed':
        return [badge('failed'), ` ${d.code ?? ''} ${d.reason ?? ''}`];
      default:
        return [badge(e.type.replace(/^proposal\./, '')), d.reason ? ` ${d.reason}` : ` ${e.type}`];
    }
  };
  return h(
    'ul',
    { class: 'timeline', id: 'timeline' },
    events.map((e) => h('li', { 'data-type': e.type }, h('span', { class: 't' }, when(e.at)), row(e))),
  );
}

async function proposalPage(id) {
  const base = `/v1/proposals/${encodeURIComponent(id)}`;
  const [p, s, ev] = await Promise.all([api(base), api(`${base}/summary`), api(`${base}/events`)]);
  const envelope = p.envelope ?? s.xdr;
  const xdrBox = envelope ? h('textarea', { class: 'xdr', readonly: true, id: 'envelope' }, envelope) : null;
  const cancelReason = h('input', { id: 'cancel-reason', placeholder: 'reason (optional)', maxlength: 256 });
  return page(
    ['Proposal ', badge(p.status), ' ', h('span', { class: 'muted' }, p.kind)],
    p.statusReason ? h('p', { class: 'notice', id: 'status-reason' }, p.statusReason) : null,
    card(
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Id'),
        h('dd', {}, code(p.id)),
        h('dt', {}, 'Hash'),
        h('dd', { id: 'hash' }, code(p.hash), ' ', copyButton(p.hash)),
        h('dt', {}, 'Network'),
        h('dd', {}, p.network),
        h('dt', {}, 'Note'),
        h('dd', { id: 'note', class: 'memo' }, p.note ?? '—'),
        h('dt', {}, 'Idempotency key'),
        h('dd', {}, p.idempotencyKey ?? '—'),
        h('dt', {}, 'Submit when signed'),
        h('dd', {}, p.submit ? 'yes' : 'no (the client submits)'),
        h('dt', {}, 'Valid until'),
        h('dd', {}, p.maxTime === 0 ? 'no upper bound' : when(p.maxTime)),
      ),
    ),
    h(
      'section',
      { class: 'card', id: 'weights' },
      h('h2', {}, 'Signing weight'),
      p.requirements.map((r) =>
        h(
          'div',
          { class: 'weight' },
          h('span', {}, code(r.accountId, true), ` · ${r.level} threshold`),
          h('progress', { max: r.weight, value: Math.min(r.collected, r.weight) }),
          h('strong', { class: 'collected' }, `${r.collected} of ${r.weight}`),
          r.met ? badge('ok') : h('span', { class: 'muted' }, 'waiting'),
        ),
      ),
      p.requirements.length === 0 ? h('p', { class: 'muted' }, 'No classic threshold applies.') : null,
    ),
    h(
      'section',
      { class: 'card', id: 'decoded' },
      h('h2', {}, 'What it does'),
      transaction(s.transaction, when),
      s.authEntries.length > 0
        ? h('div', {}, h('h3', {}, 'Authorization entries'), s.authEntries.map(authEntry))
        : null,
    ),
    card(h('h2', {}, 'Timeline'), timeline(p, ev.events)),
    card(
      h('h2', {}, p.envelope ? 'Signed envelope' : 'Envelope as proposed (unsigned)'),
      xdrBox ?? h('p', { class: 'muted' }, 'No envelope for this kind of proposal.'),
      envelope ? copyButton(envelope, xdrBox) : null,
      p.authEntries
        ? h(
            'div',
            {},
            h('h3', {}, 'Signed authorization entries'),
            p.authEntries.map((e) => h('pre', {}, e)),
          )
        : null,
    ),
    p.status === 'pending' && can('propose')
      ? card(
          h('h2', {}, 'Cancel'),
          h(
            'form',
            {
              class: 'inline',
              onsubmit: async (/** @type {Event} */ ev) => {
                ev.preventDefault();
                if (!confirm('Cancel this proposal? Nodes stop signing it.')) return;
                const reason = /** @type {HTMLInputElement} */ (cancelReason).value.trim();
                await api(`/v1/proposals/${encodeURIComponent(p.id)}/cancel`, {
                  method: 'POST',
                  body: reason ? { reason } : {},
                });
                render();
              },
            },
            cancelReason,
            h('button', { type: 'submit', class: 'danger', id: 'cancel' }, 'Cancel proposal'),
          ),
        )
      : null,
  );
}

async function newPage() {
  const xdr = h('textarea', { class: 'xdr', id: 'new-xdr', placeholder: 'base64 TransactionEnvelope' });
  const note = h('input', { id: 'new-note', maxlength: 512, placeholder: 'note for the team (optional)', size: 50 });
  const idem = h('input', { id: 'new-idem', maxlength: 128, placeholder: 'idempotency key (optional)', size: 30 });
  const submit = h('input', { id: 'new-submit', type: 'checkbox', checked: true });
  const preview = h('div', { id: 'preview' });
  const send = h('button', { type: 'button', id: 'send', disabled: true }, 'Propose');
  let decodedFor = '';
  xdr.addEventListener('input', () => {
    send.toggleAttribute('disabled', true);
    decodedFor = '';
  });
  const decode = async () => {
    const value = /** @type {HTMLTextAreaElement} */ (xdr).value.trim();
    try {
      const r = await api('/v1/decode', { method: 'POST', body: { xdr: value } });
      mount(
        preview,
        card(
          h('h2', {}, 'Decoded: check before proposing'),
          h('p', {}, 'Hash ', code(r.transaction.hash)),
          transaction(r.transaction, when),
        ),
      );
      decodedFor = value;
      send.removeAttribute('disabled');
    } catch (e) {
      mount(preview, errorBox(e));
    }
  };
  send.addEventListener('click', async () => {
    const value = /** @type {HTMLTextAreaElement} */ (xdr).value.trim();
    if (value !== decodedFor) return;
    const body = { xdr: value, submit: /** @type {HTMLInputElement} */ (submit).checked };
    const n = /** @type {HTMLInputElement} */ (note).value.trim();
    const k = /** @type {HTMLInputElement} */ (idem).value.trim();
    if (n) body.note = n;
    if (k) body.idempotencyKey = k;
    try {
      const p = await api('/v1/proposals', { method: 'POST', body });
      location.hash = `#/p/${p.id}`;
    } catch (e) {
      preview.prepend(errorBox(e));
    }
  });
  return page(
    'New proposal',
    card(
      h(
        'p',
        {},
        'Paste an unsigned transaction envelope (base64 XDR). It is decoded here first; nothing is sent until you press Propose.',
      ),
      xdr,
      h(
        'div',
        { class: 'toolbar' },
        h('button', { type: 'button', class: 'secondary', id: 'decode', onclick: decode }, 'Decode'),
        note,
        idem,
        h('label', {}, submit, ' submit when signed'),
        send,
      ),
    ),
    preview,
  );
}

async function nodesPage() {
  const { nodes } = await api('/v1/nodes');
  return page(
    'Nodes',
    table(
      { id: 'nodes' },
      ['Node', 'Session', 'Latency', 'Approvals', 'Rejections', 'Misbehaviour', 'Signing key', 'Last seen'],
      nodes.map((n) =>
        h(
          'tr',
          {},
          h('td', {}, h('strong', {}, n.id)),
          h(
            'td',
            {},
            badge(n.connected ? 'connected' : 'disconnected'),
            n.connectedAt ? h('div', { class: 'muted' }, `since ${when(n.connectedAt)}`) : null,
          ),
          h('td', {}, n.latencyMs === null ? '—' : `${Math.round(n.latencyMs * 10) / 10} ms`),
          h('td', {}, String(n.approvals)),
          h('td', {}, String(n.rejections)),
          h(
            'td',
            {},
            String(n.misbehaviours),
            n.recentMisbehaviour.length > 0
              ? h(
                  'ul',
                  { class: 'reasons' },
                  n.recentMisbehaviour.map((m) => h('li', {}, `${when(m.at)} ${m.kind}: ${m.detail}`)),
                )
              : null,
          ),
          h('td', {}, code(n.stellarKey, true)),
          h('td', {}, when(n.lastSeen)),
        ),
      ),
    ),
  );
}

async function route() {
  if (!session) return;
  header();
  const path = location.hash.split('?')[0];
  let page;
  if (path.startsWith('#/p/')) page = () => proposalPage(decodeURIComponent(path.slice(4)));
  else if (path === '#/new') page = newPage;
  else if (path === '#/nodes') page = nodesPage;
  else page = proposalsPage;
  // Live events re-render the page in place; a page with a form being filled in is not re-rendered.
  render = path === '#/new' ? () => {} : () => show(page);
  await show(page);
}

async function show(page) {
  try {
    const view = await page();
    mount(main, view);
  } catch (e) {
    if (session) mount(main, errorBox(e));
  }
}

async function start() {
  if (!apiKey()) return showSignIn();
  try {
    session = await api('/v1/session');
  } catch (e) {
    sessionStorage.removeItem(KEY);
    session = null;
    return showSignIn(`${e.message}${e.status === 403 ? ' This console needs a key with the read scope.' : ''}`);
  }
  connectEvents();
  await route();
}

window.addEventListener('hashchange', () => route());
start();
