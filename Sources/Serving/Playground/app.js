// ibke playground: a single-page client for the `ibke serve` HTTP API.
// Plain ES2020, no build step. Every piece of server-provided text is put in the
// page through text nodes (see el()); innerHTML is never used.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = 'ibke-api-key';
const GEN_TOKENS = 48;

let apiKey = '';
try { apiKey = localStorage.getItem(KEY_STORAGE) || ''; } catch { /* storage disabled */ }

// ---------------------------------------------------------------- helpers

// Builds an element. Children that are strings become text nodes, so data is escaped.
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'style') Object.assign(node.style, v);
    else if (k.startsWith('data-') || k === 'scope' || k === 'title') node.setAttribute(k, String(v));
    else node[k] = v;
  }
  for (const c of children.flat()) {
    if (c != null && c !== false) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

const isNum = (p) => typeof p === 'number' && Number.isFinite(p);
const fmtProb = (p) => (isNum(p) ? p.toFixed(4) : '—');
const fmtSecs = (s) => (isNum(s) ? `${s.toFixed(1)} s` : '—');
const fmtBytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);
// Tokens often start with a space; JSON quoting makes that (and newlines) visible.
const tok = (s) => el('code', { class: 'tok' }, JSON.stringify(String(s ?? '')));

function bar(p, cls = '') {
  const w = isNum(p) ? Math.max(0, Math.min(1, p)) * 100 : 0;
  return el('div', { class: `bar ${cls}` }, el('div', { class: 'fill', style: { width: `${w}%` } }));
}

function setError(id, message) { $(id).textContent = message || ''; }

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function request(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(`Network error: ${e.message} (is the server running?)`, 0);
  }
  if (!res.ok) throw await errorFrom(res);
  return res;
}

// Turns an error response into an ApiError carrying the server's message.
async function errorFrom(res) {
  let message = `HTTP ${res.status} ${res.statusText}`.trim();
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text);
      const e = j && j.error;
      message = (e && (e.message || (typeof e === 'string' ? e : JSON.stringify(e)))) || text || message;
    } catch {
      if (text) message = text.slice(0, 500);
    }
  } catch { /* keep the status line */ }
  if (res.status === 401) {
    $('auth-form').hidden = false;
    setError('api-key-error', `Unauthorized: ${message}`);
  }
  return new ApiError(String(message), res.status);
}

const getJSON = async (path) => (await request(path)).json();
const sendJSON = async (path, body, method = 'POST') => (await request(path, { method, body })).json();

// Yields the data payload of each server-sent event in a fetch response body.
async function* sseEvents(stream) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buf += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let m;
      while ((m = /\r?\n\r?\n/.exec(buf))) {
        const event = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        const data = event.split(/\r?\n/).filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).replace(/^ /, '')).join('\n');
        if (data) yield data;
      }
      if (done) {
        const rest = buf.trim();
        if (rest.startsWith('data:')) yield rest.slice(5).trim();
        return;
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // also runs when the consumer stops at [DONE]
  }
}

// ---------------------------------------------------------------- startup / auth

async function init() {
  $('api-key').value = apiKey;
  try {
    const info = await getJSON('v1/info');
    $('model-name').textContent = info.model || '(unknown model)';
    document.title = `ibke · ${info.model || 'playground'}`;
    const methods = Array.isArray(info.methods) ? info.methods : [];
    const select = $('method');
    const previous = select.value;
    select.replaceChildren(...methods.map((m) => el('option', { value: m }, m)));
    select.value = methods.includes(previous) ? previous : (info.default_method || methods[0] || '');
    if (info.auth) $('auth-form').hidden = false;
    $('global-error').hidden = true;
  } catch (e) {
    $('model-name').textContent = '(unavailable)';
    $('global-error').textContent = `Could not load /v1/info: ${e.message}`;
    $('global-error').hidden = false;
    return;
  }
  refreshHistory();
  runProbe();
}

$('auth-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  apiKey = $('api-key').value.trim();
  try { localStorage.setItem(KEY_STORAGE, apiKey); } catch { /* storage disabled */ }
  setError('api-key-error', '');
  init();
});

// ---------------------------------------------------------------- edit form

// Returns {value} (undefined when empty) or {error}.
function parseHparams() {
  const text = $('hparams').value.trim();
  if (!text) return { value: undefined };
  try {
    const v = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      return { error: 'Hyperparameters must be a JSON object, e.g. {"name": 1}.' };
    }
    return { value: v };
  } catch (e) {
    return { error: `Invalid JSON: ${e.message}` };
  }
}

$('hparams').addEventListener('input', () => setError('hparams-error', parseHparams().error));

let lastResultId = null;

$('edit-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  setError('edit-error', '');
  const hp = parseHparams();
  if (hp.error) {
    $('hparams-details').open = true;
    setError('hparams-error', hp.error);
    $('hparams').focus();
    return;
  }
  const body = {
    method: $('method').value,
    prompt: $('prompt').value,
    subject: $('subject').value,
    target: $('target').value,
  };
  const missing = ['prompt', 'subject', 'target'].filter((k) => !body[k].trim());
  if (missing.length) { setError('edit-error', `Please fill in: ${missing.join(', ')}.`); return; }
  if (hp.value) body.hparams = hp.value;

  const button = $('apply');
  button.disabled = true;
  $('edit-progress').hidden = false;
  const t0 = performance.now();
  const tick = () => { $('edit-elapsed').textContent = `Applying edit… ${Math.floor((performance.now() - t0) / 1000)} s`; };
  tick();
  const timer = setInterval(tick, 250);
  try {
    const result = await sendJSON('v1/edits', body);
    renderResult(result);
    // Suggest the edited fact as a chat prompt without typing into the field.
    const filled = body.prompt.includes('{}') ? body.prompt.replace('{}', body.subject) : body.prompt;
    $('chat-input').placeholder = filled;
    refreshHistory();
    runProbe();
  } catch (e) {
    setError('edit-error', e.message);
  } finally {
    clearInterval(timer);
    button.disabled = false;
    $('edit-progress').hidden = true;
  }
});

function probCell(p, cls, id) {
  return el('td', {}, el('div', { class: 'prob' }, el('span', { class: 'value', id }, fmtProb(p)), bar(p, cls)));
}

function topList(title, items, target) {
  const t = String(target || '').trim();
  return el('div', {},
    el('div', { class: 'sub' }, title),
    el('ol', { class: 'toplist' }, (items || []).slice(0, 5).map((it) =>
      el('li', { class: t && String(it.token).trim() === t ? 'hit-target' : '' },
        tok(it.token), bar(it.probability), el('span', { class: 'num' }, fmtProb(it.probability))))));
}

function renderResult(r) {
  const before = r.before || {};
  const after = r.after || {};
  lastResultId = r.id;
  $('result-meta').textContent = `${r.id} · ${r.method} · ${fmtSecs(r.seconds)}`;
  const table = el('table', { class: 'probs' },
    el('thead', {}, el('tr', {}, el('th'), el('th', {}, 'Before'), el('th', {}, 'After'))),
    el('tbody', {},
      el('tr', {}, el('th', { scope: 'row' }, 'P(target ', tok(r.target), ')'),
        probCell(before.target_probability, 'before'),
        probCell(after.target_probability, '', 'after-target-probability')),
      el('tr', {}, el('th', { scope: 'row' }, 'P(original answer ', tok(r.original_answer), ')'),
        probCell(before.original_probability, 'before'),
        probCell(after.original_probability, ''))));
  const gens = el('div', { class: 'gens' },
    el('div', {}, el('div', { class: 'sub' }, 'Generation before'), el('pre', { class: 'generation' }, before.generation ?? '')),
    el('div', {}, el('div', { class: 'sub' }, 'Generation after'), el('pre', { class: 'generation' }, after.generation ?? '')));
  $('result').replaceChildren(
    el('div', { class: 'scroll-x' }, table),
    el('div', { class: 'tops' }, topList('Top-5 before', before.top, r.target), topList('Top-5 after', after.top, r.target)),
    gens);
  $('result-card').hidden = false;
}

// ---------------------------------------------------------------- edit history

async function refreshHistory() {
  try {
    const list = await getJSON('v1/edits');
    const edits = Array.isArray(list.data) ? list.data : [];
    setError('history-error', '');
    $('history-body').replaceChildren(...edits.map((e) => el('tr', {},
      el('td', {}, el('code', {}, e.id)),
      el('td', {}, e.method),
      el('td', { class: 'fact' }, ...(e.requests || []).flatMap((f, i) => [
        ...(i > 0 ? [el('br')] : []), el('strong', {}, f.subject), ': ', f.prompt, ' → ', el('strong', {}, f.target)])),
      el('td', { class: 'num' }, fmtSecs(e.seconds)),
      el('td', {}, el('button', { type: 'button', class: 'revert small', 'data-id': e.id }, 'Revert')))));
    $('history-table').hidden = edits.length === 0;
    $('history-empty').hidden = edits.length > 0;
    $('edit-count').textContent = `${edits.length} ${edits.length === 1 ? 'edit' : 'edits'}`;
  } catch (e) {
    setError('history-error', `Could not load edits: ${e.message}`);
  }
}

// One listener for all Revert buttons, since the rows are rebuilt on every refresh.
$('history-body').addEventListener('click', async (ev) => {
  const button = ev.target.closest('button.revert');
  if (!button || button.disabled) return;
  const id = button.dataset.id;
  button.disabled = true;
  button.textContent = 'Reverting…';
  setError('history-error', '');
  try {
    await sendJSON(`v1/edits/${encodeURIComponent(id)}`, undefined, 'DELETE');
    if (id === lastResultId) $('result-meta').textContent += ' · reverted';
    await refreshHistory();
    runProbe();
  } catch (e) {
    setError('history-error', `Revert ${id} failed: ${e.message}`);
    button.disabled = false;
    button.textContent = 'Revert';
  }
});

// ---------------------------------------------------------------- locality probe

let probeRunning = false;
let probeQueued = false; // a run was requested while one was in flight

async function runProbe() {
  if (probeRunning) { probeQueued = true; return; }
  const prompts = $('probe-prompts').value.split('\n').map((s) => s.trim()).filter(Boolean);
  if (!prompts.length) { setError('probe-error', 'Enter at least one prompt.'); return; }
  probeRunning = true;
  const button = $('probe-run');
  button.disabled = true;
  button.textContent = 'Running…';
  setError('probe-error', '');
  try {
    const r = await sendJSON('v1/evaluate', { prompts, max_tokens: 12 });
    const results = Array.isArray(r.results) ? r.results : [];
    let changed = 0;
    $('probe-body').replaceChildren(...results.map((row) => {
      const differs = row.edited !== row.original;
      if (differs) changed += 1;
      return el('tr', { class: differs ? 'changed' : '', title: differs ? 'Edited model differs' : '' },
        el('td', {}, row.prompt), el('td', { class: 'gen' }, row.original), el('td', { class: 'gen' }, row.edited));
    }));
    $('probe-table').hidden = results.length === 0;
    $('probe-summary').textContent = `${changed} of ${results.length} changed`;
  } catch (e) {
    setError('probe-error', e.message);
  } finally {
    probeRunning = false;
    button.disabled = false;
    button.textContent = 'Run probe';
    if (probeQueued) { probeQueued = false; runProbe(); }
  }
}

$('probe-run').addEventListener('click', () => runProbe());

// ---------------------------------------------------------------- chat

let chatBusy = false;
let lastChat = '';

// Streams one model's answer into `out`. Throws on HTTP or stream errors.
async function streamAnswer(model, text, raw, out) {
  const path = raw ? 'v1/completions' : 'v1/chat/completions';
  const body = raw
    ? { model, prompt: text, max_tokens: GEN_TOKENS, temperature: 0, stream: true }
    : { model, messages: [{ role: 'user', content: text }], max_tokens: GEN_TOKENS, temperature: 0, stream: true };
  out.classList.replace('waiting', 'streaming');
  try {
    const res = await request(path, { method: 'POST', body });
    // Tolerate a server that answers with a single JSON object instead of SSE.
    if (!(res.headers.get('content-type') || '').includes('text/event-stream')) {
      const c = ((await res.json()).choices || [])[0] || {};
      out.textContent = raw ? (c.text || '') : ((c.message && c.message.content) || '');
      out.dataset.finish = c.finish_reason || '';
      return;
    }
    for await (const data of sseEvents(res.body)) {
      if (data === '[DONE]') break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || String(chunk.error));
      const c = (chunk.choices || [])[0];
      if (!c) continue;
      const piece = raw ? c.text : c.delta && c.delta.content;
      if (piece) {
        out.append(piece); // text node: escaped
        $('chat-log').scrollTop = $('chat-log').scrollHeight;
      }
      if (c.finish_reason) out.dataset.finish = c.finish_reason;
    }
  } finally {
    out.classList.remove('streaming', 'waiting');
    out.dataset.done = 'true';
  }
}

$('chat-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('chat-input');
  const text = input.value;
  if (!text.trim() || chatBusy) return;
  chatBusy = true;
  lastChat = text;
  input.value = '';
  $('chat-send').disabled = true;
  setError('chat-error', '');
  const raw = $('chat-raw').checked;

  // Only the latest exchange carries the ids chat-edited / chat-original.
  for (const id of ['chat-edited', 'chat-original']) { const old = $(id); if (old) old.removeAttribute('id'); }
  const edited = el('div', { class: 'answer waiting', id: 'chat-edited' });
  const original = el('div', { class: 'answer waiting', id: 'chat-original' });
  const empty = $('chat-empty');
  if (empty) empty.remove();
  $('chat-log').append(el('div', { class: 'exchange' },
    el('div', { class: 'you' }, el('span', { class: 'label' }, raw ? 'Prompt' : 'You'), text),
    el('div', { class: 'answers' },
      el('div', { class: 'col edited' }, el('div', { class: 'col-label' }, 'Edited'), edited),
      el('div', { class: 'col original' }, el('div', { class: 'col-label' }, 'Original'), original))));
  $('chat-log').scrollTop = $('chat-log').scrollHeight;

  // One after the other: the server runs one model at a time anyway.
  for (const [model, out] of [['edited', edited], ['original', original]]) {
    try {
      await streamAnswer(model, text, raw, out);
    } catch (e) {
      out.classList.add('failed');
      out.append(out.textContent ? `\n[error: ${e.message}]` : `[error: ${e.message}]`);
      setError('chat-error', `${model}: ${e.message}`);
    }
  }
  chatBusy = false;
  $('chat-send').disabled = false;
  input.focus();
});

// Arrow-up in an empty chat field recalls the last prompt (handy after an edit or revert).
$('chat-input').addEventListener('keydown', (ev) => {
  if (ev.key === 'ArrowUp' && !ev.target.value && lastChat) {
    ev.preventDefault();
    ev.target.value = lastChat;
  }
});

// ---------------------------------------------------------------- export

function filenameFrom(disposition) {
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition || '');
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch { return m[1]; }
}

async function exportModel(format, button) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = 'Preparing…';
  setError('export-error', '');
  $('export-status').textContent = '';
  try {
    const res = await request('v1/export', { method: 'POST', body: { format } });
    const blob = await res.blob();
    const name = filenameFrom(res.headers.get('Content-Disposition'))
      || (format === 'lora' ? 'edited-lora.gguf' : 'edited.gguf');
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    // Revoking at once can cancel the download in some browsers.
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    $('export-status').textContent = `Saved ${name} (${fmtBytes(blob.size)})`;
  } catch (e) {
    setError('export-error', `${format === 'lora' ? 'LoRA' : 'GGUF'} export failed: ${e.message}`);
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

$('export-gguf').addEventListener('click', (ev) => exportModel('gguf', ev.currentTarget));
$('export-lora').addEventListener('click', (ev) => exportModel('lora', ev.currentTarget));

init();
