// Plain-words rendering of the decoder's summaries (packages/stellar/src/describe.ts, types.ts): the same data
// the nodes' policies read. Each function returns DOM nodes built with h(): values are text, never markup.
import { code, h, short } from './dom.js';

/** An asset as a person reads it: XLM, or CODE with its issuer, or a liquidity pool. */
export function asset(a) {
  if (!a) return '?';
  if (a.type === 'native') return 'XLM';
  if (a.type === 'credit') return h('span', {}, h('strong', {}, a.code), ' (issuer ', code(a.issuer, true), ')');
  if (a.type === 'pool') return h('span', {}, 'pool ', code(a.poolId, true));
  return JSON.stringify(a);
}

const amt = (v, a) => h('span', { class: 'amount' }, h('strong', {}, String(v ?? '?')), ' ', asset(a));

function invocation(inv, depth = 0) {
  if (!inv) return null;
  const args = (inv.args ?? []).map((x) => JSON.stringify(x)).join(', ');
  const head =
    inv.kind === 'contract'
      ? h(
          'span',
          {},
          'call ',
          code(inv.contractId ?? '?', true),
          '.',
          h('strong', {}, inv.functionName ?? '?'),
          `(${args})`,
        )
      : h('span', {}, `${inv.kind} ${inv.functionName ?? ''}`, inv.details ? ` ${JSON.stringify(inv.details)}` : '');
  return h(
    'div',
    { class: 'invocation' },
    head,
    (inv.subInvocations ?? []).length > 0
      ? h(
          'ul',
          {},
          inv.subInvocations.map((s) => h('li', {}, invocation(s, depth + 1))),
        )
      : null,
  );
}

/** One Soroban authorization entry. */
export function authEntry(e) {
  return h(
    'div',
    { class: 'auth-entry' },
    h(
      'div',
      {},
      'Authorization by ',
      e.address ? code(e.address) : e.credentials,
      e.signatureExpirationLedger !== undefined ? ` (expires at ledger ${e.signatureExpirationLedger})` : '',
    ),
    invocation(e.invocation),
  );
}

/** One operation in words. */
export function operation(op) {
  const src = op.explicitSource ? h('span', { class: 'muted' }, ' (source ', code(op.source, true), ')') : null;
  let words;
  switch (op.type) {
    case 'payment':
      words = h('span', {}, 'Pay ', amt(op.amount, op.asset), ' to ', code(op.destination));
      break;
    case 'createAccount':
      words = h(
        'span',
        {},
        'Create account ',
        code(op.destination),
        ' with ',
        amt(op.startingBalance, { type: 'native' }),
      );
      break;
    case 'pathPaymentStrictSend':
      words = h(
        'span',
        {},
        'Send ',
        amt(op.sendAmount, op.sendAsset),
        ' to ',
        code(op.destination),
        ', receiving at least ',
        amt(op.destMin, op.destAsset),
      );
      break;
    case 'pathPaymentStrictReceive':
      words = h(
        'span',
        {},
        'Deliver ',
        amt(op.destAmount, op.destAsset),
        ' to ',
        code(op.destination),
        ', spending at most ',
        amt(op.sendMax, op.sendAsset),
      );
      break;
    case 'manageSellOffer':
    case 'createPassiveSellOffer':
      words = h(
        'span',
        {},
        'Offer to sell ',
        amt(op.amount, op.selling),
        ' for ',
        asset(op.buying),
        ` at price ${op.price}`,
      );
      break;
    case 'manageBuyOffer':
      words = h(
        'span',
        {},
        'Offer to buy ',
        amt(op.amount, op.buying),
        ' with ',
        asset(op.selling),
        ` at price ${op.price}`,
      );
      break;
    case 'changeTrust':
      words = h('span', {}, 'Trust ', asset(op.asset), ` up to ${op.limit ?? '?'}`);
      break;
    case 'accountMerge':
      words = h('span', {}, 'Merge the account into ', code(op.destination), ' (all its XLM moves)');
      break;
    case 'manageData':
      words = h(
        'span',
        {},
        'Set data entry ',
        h('strong', {}, op.dataName ?? '?'),
        op.dataValue === null ? ' (delete it)' : ` = ${op.dataValue} (hex)`,
      );
      break;
    case 'bumpSequence':
      words = h('span', {}, `Bump the sequence number to ${op.bumpTo}`);
      break;
    case 'setOptions': {
      const so = op.setOptions ?? {};
      const parts = [];
      if (so.signer)
        parts.push(
          h(
            'li',
            {},
            so.signer.weight === 0 ? 'Remove signer ' : 'Set signer ',
            code(so.signer.key),
            so.signer.weight === 0 ? '' : ` at weight ${so.signer.weight}`,
          ),
        );
      if (so.masterWeight !== undefined) parts.push(h('li', {}, `Master key weight ${so.masterWeight}`));
      if (so.lowThreshold !== undefined) parts.push(h('li', {}, `Low threshold ${so.lowThreshold}`));
      if (so.medThreshold !== undefined) parts.push(h('li', {}, `Medium threshold ${so.medThreshold}`));
      if (so.highThreshold !== undefined) parts.push(h('li', {}, `High threshold ${so.highThreshold}`));
      if (so.homeDomain !== undefined) parts.push(h('li', {}, 'Home domain ', h('strong', {}, so.homeDomain)));
      if (so.inflationDest !== undefined) parts.push(h('li', {}, 'Inflation destination ', code(so.inflationDest)));
      if (so.setFlags !== undefined) parts.push(h('li', {}, `Set flags ${so.setFlags}`));
      if (so.clearFlags !== undefined) parts.push(h('li', {}, `Clear flags ${so.clearFlags}`));
      words = h('span', {}, 'Change account options', h('ul', {}, parts));
      break;
    }
    case 'invokeHostFunction':
      words = h(
        'span',
        {},
        'Soroban: ',
        invocation(op.invocation),
        (op.authEntries ?? []).length > 0
          ? h('div', {}, 'with authorization entries:', op.authEntries.map(authEntry))
          : null,
      );
      break;
    default:
      words = h('span', {}, `${op.type}`, op.amount ? h('span', {}, ' ', amt(op.amount, op.asset)) : null);
  }
  return h(
    'li',
    { class: 'op' },
    h('span', { class: 'op-type' }, `#${op.index + 1} ${op.type}`),
    ' ',
    words,
    src,
    h('span', { class: 'muted' }, ` · needs ${op.thresholdLevel} threshold`),
    h('details', {}, h('summary', {}, 'all decoded fields'), h('pre', {}, JSON.stringify(op.raw ?? {}, null, 2))),
  );
}

/** A memo in words. */
export function memo(m) {
  if (!m || m.type === 'none') return 'none';
  return h('span', {}, h('span', { class: 'muted' }, `${m.type}: `), h('span', { class: 'memo' }, String(m.value)));
}

/** Time bounds in words (unix seconds as strings; 0 = none). */
export function timeBounds(tb, when) {
  if (!tb) return 'none (valid forever: nodes normally refuse this)';
  const from = tb.minTime === '0' ? 'any time' : when(tb.minTime);
  const to = tb.maxTime === '0' ? 'no end' : when(tb.maxTime);
  return `${from} → ${to}`;
}

/** Fee in stroops with XLM. */
export function fee(stroops) {
  const n = Number(stroops);
  return Number.isFinite(n) ? `${stroops} stroops (${(n / 1e7).toFixed(7)} XLM)` : String(stroops);
}

/** The facts and operations of a TransactionSummary as a definition list and an operation list. */
export function transaction(t, when) {
  if (!t) return h('p', { class: 'muted' }, 'No transaction.');
  if (t.kind === 'feeBump') {
    return h(
      'div',
      {},
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Fee bump paid by'),
        h('dd', {}, code(t.feeSource)),
        h('dt', {}, 'Outer fee'),
        h('dd', {}, fee(t.fee)),
      ),
      h('h3', {}, 'Inner transaction'),
      transaction(t.inner, when),
    );
  }
  return h(
    'div',
    {},
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Source'),
      h('dd', {}, code(t.source)),
      h('dt', {}, 'Sequence'),
      h('dd', {}, t.seqNum),
      h('dt', {}, 'Fee'),
      h('dd', {}, fee(t.fee)),
      h('dt', {}, 'Time bounds'),
      h('dd', {}, timeBounds(t.preconditions?.timeBounds, when)),
      h('dt', {}, 'Memo'),
      h('dd', {}, memo(t.memo)),
    ),
    h('h3', {}, `Operations (${t.operations.length})`),
    h('ol', { class: 'ops' }, t.operations.map(operation)),
  );
}

export { short };
