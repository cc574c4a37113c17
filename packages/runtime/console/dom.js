// DOM helpers shared by both consoles. Every value that came from a proposal or a node (memo, note, idempotency
// key, asset codes, home domains, reasons) reaches the page as a Text node or an attribute set through
// setAttribute: nothing here ever assigns innerHTML, outerHTML or insertAdjacentHTML, so markup in a value stays
// text (the page's Content-Security-Policy would also refuse any inline script).

/**
 * Create an element. `attrs`: plain attributes (set with setAttribute), `on*` functions as listeners.
 * Children: strings and numbers become Text nodes; null/undefined/false are skipped; arrays are flattened.
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {...unknown} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {any} */ (v));
    else if (k === 'value' && 'value' in el) /** @type {any} */ (el).value = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** @param {Node} el @param {unknown[]} children */
function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/**
 * A page: its heading (text, or an array of text and elements), then its parts.
 * @param {unknown} title
 * @param {...unknown} children
 * @returns {HTMLElement}
 */
export function page(title, ...children) {
  return h('div', {}, h('h1', {}, title), children);
}

/** A card: one boxed section of a page. @param {...unknown} children @returns {HTMLElement} */
export function card(...children) {
  return h('section', { class: 'card' }, children);
}

/**
 * A table with one header row. `body`: the rows (a `tr` element, an array of them, or nothing), or a `tbody`
 * element the page fills later (the proposals list appends pages of rows to it).
 * @param {Record<string, unknown>} attrs
 * @param {string[]} headers
 * @param {unknown} body
 * @returns {HTMLElement}
 */
export function table(attrs, headers, body) {
  const rows = body instanceof HTMLElement && body.tagName === 'TBODY' ? body : h('tbody', {}, body);
  return h(
    'table',
    attrs,
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headers.map((t) => h('th', {}, t)),
      ),
    ),
    rows,
  );
}

/** Replace an element's children. @param {Element} el @param {...unknown} children */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A short form of a long key or hash for tables (the full value is in the title and on the detail page). */
export function short(s, head = 6, tail = 4) {
  const v = String(s ?? '');
  return v.length <= head + tail + 1 ? v : `${v.slice(0, head)}…${v.slice(-tail)}`;
}

/** A monospace value with its full text in the title. */
export function code(s, shorten = false) {
  return h('code', { title: String(s ?? '') }, shorten ? short(s) : String(s ?? ''));
}

/** A local date-time from ISO text, unix seconds or unix milliseconds. */
export function when(v) {
  if (v === null || v === undefined || v === '') return '—';
  let d;
  if (typeof v === 'number') d = new Date(v < 1e12 ? v * 1000 : v);
  else if (/^[0-9]+$/.test(String(v))) d = new Date(Number(v) * 1000);
  else d = new Date(String(v));
  return Number.isNaN(d.getTime()) ? String(v) : d.toLocaleString();
}

/** A "Copy" button for a value (Clipboard API; falls back to selecting `target`). */
export function copyButton(value, target) {
  return h(
    'button',
    {
      type: 'button',
      class: 'secondary',
      onclick: async (/** @type {Event} */ ev) => {
        const btn = /** @type {HTMLButtonElement} */ (ev.currentTarget);
        try {
          await navigator.clipboard.writeText(value);
          btn.textContent = 'Copied';
        } catch {
          if (target && 'select' in target) target.select();
          btn.textContent = 'Selected: press Ctrl+C';
        }
      },
    },
    'Copy',
  );
}

/** A status badge; the class comes from a fixed list, never from the value itself. */
const BADGES = new Set([
  'pending',
  'signed',
  'submitted',
  'failed',
  'rejected',
  'expired',
  'cancelled',
  'approve',
  'reject',
  'hold',
  'invalid',
  'held',
  'ok',
  'broken',
  'connected',
  'disconnected',
]);
export function badge(status) {
  const s = String(status);
  return h('span', { class: `badge ${BADGES.has(s) ? `b-${s}` : 'b-other'}` }, s);
}

/** An error box from an API error body `{code, message}` or an Error. */
export function errorBox(e) {
  const code = e && typeof e === 'object' && 'code' in e ? String(e.code) : '';
  const msg = e && typeof e === 'object' && 'message' in e ? String(e.message) : String(e);
  return h('div', { class: 'error', role: 'alert' }, code ? h('strong', {}, code, ': ') : null, msg);
}

/** Read a JSON answer; a non-2xx answer throws its `{code, message}` body (with `status`). */
export async function readJson(res) {
  const text = await res.text();
  let body;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = { code: `HTTP_${res.status}`, message: text.slice(0, 200) };
  }
  if (!res.ok) throw Object.assign(new Error(body.message ?? `HTTP ${res.status}`), { status: res.status, ...body });
  return body;
}
