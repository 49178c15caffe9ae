// Vellum app: the messenger's window. The device's own process (on loopback) keeps keys,
// MLS state and the shredder; this page only shows what the API hands it and keeps nothing:
// no storage of any kind, text only via textContent, and a message that expires, burns or is
// deleted leaves the DOM and every JS structure at once (its blob URLs revoked).
'use strict';
(() => {
  // ---------------------------------------------------------------- helpers
  const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'multiple', 'htmlFor']);

  /** Builds an element: props are attributes (data-test via `test`), `on…` listeners, `text`. */
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v == null || v === false) continue;
        if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else if (k === 'text') el.textContent = v;
        else if (k === 'class') el.className = v;
        else if (k === 'test') el.setAttribute('data-test', v);
        else if (PROPS.has(k)) el[k] = v;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid == null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  const SVGNS = 'http://www.w3.org/2000/svg';
  const ICONS = {
    back: [['p', 'M15 18l-6-6 6-6']],
    chats: [['p', 'M21 11.5a8.5 8.5 0 0 1-12.4 7.6L3 21l1.9-5.4A8.5 8.5 0 1 1 21 11.5z']],
    devices: [['p', 'M4 6h11v8H4zM2 18h15M18 9h4v10h-4z']],
    compose: [['p', 'M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4']],
    settings: [['p', 'M4 7h9M17 7h3M4 17h3M11 17h9'], ['c', 15, 7, 2], ['c', 9, 17, 2]],
    send: [['p', 'M21 3L10.5 13.5M21 3l-6.5 18-4-7.5-7.5-4z']],
    attach: [['p', 'M20.5 11.5l-8.2 8.2a5 5 0 0 1-7-7l8.4-8.4a3.4 3.4 0 0 1 4.8 4.8l-8.3 8.3a1.8 1.8 0 0 1-2.6-2.6l7.6-7.6']],
    timer: [['c', 12, 13, 8], ['p', 'M12 9v4l2.5 2.5M9.5 2.5h5']],
    flame: [['p', 'M12 21.5c3.9 0 6.8-2.7 6.8-6.6 0-3.9-2.8-5.9-3.9-8.6-1.3 1.8-2 2.7-3.3 2.7-1.3 0-1.4-3.6-.5-6.5C7.4 4.4 5.2 9.3 5.2 14.9c0 3.9 2.9 6.6 6.8 6.6z']],
    check: [['p', 'M5 12.5l4.5 4.5L19 7.5']],
    checks: [['p', 'M2 12.5l4.5 4.5L16 7.5M11.5 16l1 1L22 7.5']],
    clock: [['c', 12, 12, 8.5], ['p', 'M12 7.5V12l3 2']],
    reply: [['p', 'M9.5 14.5L4.5 9.5l5-5M4.5 9.5H14a6 6 0 0 1 6 6V19']],
    smile: [['c', 12, 12, 8.5], ['p', 'M8.5 14.2a4.6 4.6 0 0 0 7 0M9 9.6h.01M15 9.6h.01']],
    edit: [['p', 'M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4']],
    trash: [['p', 'M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3']],
    download: [['p', 'M12 4v11M7 10l5 5 5-5M5 20h14']],
    lock: [['p', 'M6 11h12v10H6zM8.5 11V8a3.5 3.5 0 0 1 7 0v3']],
    archive: [['p', 'M3 5h18v4H3zM5 9v10h14V9M10 13h4']],
    close: [['p', 'M6 6l12 12M18 6L6 18']],
    shield: [['p', 'M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z']],
    file: [['p', 'M14 3H6v18h12V7zM14 3v4h4']],
    search: [['c', 11, 11, 6.5], ['p', 'M20 20l-4.2-4.2']],
    users: [['c', 9, 8, 3.5], ['p', 'M2.5 20c0-3.6 2.9-6 6.5-6s6.5 2.4 6.5 6M15.5 4.6a3.5 3.5 0 0 1 0 6.8M21.5 20c0-2.9-1.6-5-4-5.7']],
    offline: [['p', 'M2 2l20 20M8.5 16.4a5 5 0 0 1 7 0M5 12.9a10 10 0 0 1 4.6-2.6M19 12.9a10 10 0 0 0-2.3-1.7M2 8.8a15 15 0 0 1 4.3-2.7M22 8.8A15 15 0 0 0 10.7 5M12 20h.01']],
    leave: [['p', 'M14 4h5v16h-5M10 8l-4 4 4 4M6 12h10']],
    alert: [['p', 'M12 3.5l9.5 16.5h-19zM12 10v4.5M12 17.3h.01']],
    plus: [['p', 'M12 5v14M5 12h14']],
    down: [['p', 'M6 9l6 6 6-6']],
  };

  function icon(name, cls = 'icon') {
    const svg = document.createElementNS(SVGNS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('class', cls);
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    for (const part of ICONS[name] || []) {
      let el;
      if (part[0] === 'p') {
        el = document.createElementNS(SVGNS, 'path');
        el.setAttribute('d', part[1]);
      } else {
        el = document.createElementNS(SVGNS, 'circle');
        el.setAttribute('cx', part[1]);
        el.setAttribute('cy', part[2]);
        el.setAttribute('r', part[3]);
      }
      svg.append(el);
    }
    return svg;
  }

  /** An icon-only button (its name is its aria-label and tooltip). */
  function iconButton(name, label, props = {}) {
    return h('button', { type: 'button', class: 'icon-btn', 'aria-label': label, title: label, ...props }, icon(name));
  }

  // A colour per name, stable across screens.
  // FNV-1a with a final mix, over 16 colours: short names like alice and bob differ.
  const PALETTE = 16;
  function hue(name) {
    let x = 0x811c9dc5;
    for (const ch of String(name)) x = Math.imul(x ^ ch.codePointAt(0), 0x01000193) >>> 0;
    x = (x ^ (x >>> 16)) >>> 0;
    x = Math.imul(x, 0x45d9f3b) >>> 0;
    x = (x ^ (x >>> 16)) >>> 0;
    return x % PALETTE;
  }
  function initials(name) {
    const parts = String(name || '?').replace(/[@._-]+/g, ' ').trim().split(/\s+/);
    const first = [...(parts[0] || '?')][0] || '?';
    const second = parts.length > 1 ? [...parts[1]][0] || '' : '';
    return (first + second).toUpperCase();
  }
  function avatar(name, size = '') {
    return h('span', { class: `avatar c${hue(name)} ${size}`, 'aria-hidden': 'true', text: initials(name) });
  }

  // ---------------------------------------------------------------- time
  const fmtTime = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
  const fmtFull = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
  const fmtWeekday = new Intl.DateTimeFormat(undefined, { weekday: 'long' });
  const fmtWeekdayShort = new Intl.DateTimeFormat(undefined, { weekday: 'short' });
  const fmtDay = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
  const fmtDayShort = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
  const fmtDate = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

  function startOfDay(ms) {
    const d = new Date(ms);
    d.setHours(0, 0, 0, 0);
    return d.getTime();
  }
  function dayLabel(ms) {
    const today = startOfDay(Date.now());
    const day = startOfDay(ms);
    const diff = Math.round((today - day) / 86400000);
    if (diff === 0) return 'Today';
    if (diff === 1) return 'Yesterday';
    if (diff > 1 && diff < 7) return fmtWeekday.format(ms);
    return fmtDay.format(ms);
  }
  function listTime(ms) {
    const today = startOfDay(Date.now());
    const diff = Math.round((today - startOfDay(ms)) / 86400000);
    if (diff === 0) return fmtTime.format(ms);
    if (diff === 1) return 'Yesterday';
    if (diff > 1 && diff < 7) return fmtWeekdayShort.format(ms);
    if (new Date(ms).getFullYear() === new Date().getFullYear()) return fmtDayShort.format(ms);
    return fmtDate.format(ms);
  }
  /** "4m 12s", "1h 5m", "2d 3h", "3s". */
  function remaining(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
    if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${s}s`;
  }
  /** "30 seconds", "5 minutes", "1 week". */
  function duration(secs) {
    const units = [[604800, 'week'], [86400, 'day'], [3600, 'hour'], [60, 'minute'], [1, 'second']];
    for (const [n, name] of units) {
      if (secs >= n && secs % n === 0) {
        const k = secs / n;
        return `${k} ${name}${k === 1 ? '' : 's'}`;
      }
    }
    return `${secs} seconds`;
  }
  function shortDuration(secs) {
    const units = [[604800, 'w'], [86400, 'd'], [3600, 'h'], [60, 'm'], [1, 's']];
    for (const [n, name] of units) if (secs >= n && secs % n === 0) return `${secs / n}${name}`;
    return `${secs}s`;
  }
  function fileSize(n) {
    if (n < 1024) return `${n} B`;
    const units = ['KB', 'MB', 'GB'];
    let v = n / 1024;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
  }

  const EXPIRE_CHOICES = [30, 300, 3600, 86400, 604800];
  const BURN_CHOICES = [10, 30, 60, 300, 3600];
  const EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🙏'];
  const PAGE = 50;
  const MAX_DOM_MESSAGES = 300;

  // ---------------------------------------------------------------- state
  // Message text lives only in S.msgs (the open chat's loaded messages) and the DOM;
  // both drop a message the moment it goes.
  const S = {
    session: null,
    csrf: '',
    chats: [],
    chatFilter: '',
    view: 'chats', // chats | devices
    current: null, // open chat id
    detail: null, // ChatDetail of the open chat
    msgs: new Map(), // id -> Message of the open chat
    pages: [], // cursors that fetched each loaded page, newest first ('' = the newest page)
    before: null, // cursor for the next older page, null: none
    loadingOlder: false,
    openSeq: 0, // guards against answers for a chat no longer open
    reply: null, // {id, sender}
    roving: null, // id of the message row that is the list's Tab stop
    edit: null, // message id
    uploads: [], // {key, name, size, id|null, progress, xhr, el}
    blobs: new Map(), // message id -> [blob url]
    acked: new Set(), // ids already reported read
    online: true,
    streamUp: true,
    alarms: [],
    devices: null,
    directory: null,
    left: new Set(), // chats this window left (their banner says "You left")
    unseenBelow: 0,
  };

  const els = {};

  // ---------------------------------------------------------------- API
  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: {}, credentials: 'same-origin', cache: 'no-store' };
    if (method !== 'GET') init.headers['X-Vellum-CSRF'] = S.csrf;
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      throw new ApiFailure(0, 'unreachable', 'Vellum is not answering. Is `vellum app` still running?');
    }
    if (res.status === 204) return null;
    const type = res.headers.get('content-type') || '';
    const data = type.includes('json') ? await res.json().catch(() => null) : null;
    if (!res.ok) {
      if (res.status === 401) sessionEnded();
      if (res.status === 410 && data?.code === 'revoked') deviceRevoked();
      throw new ApiFailure(res.status, data?.code || 'error', data?.message || `Request failed (${res.status})`);
    }
    return data;
  }
  const enc = encodeURIComponent;

  function sessionEnded() {
    if (document.querySelector('.ended')) return;
    const app = document.getElementById('app');
    app.replaceChildren(
      h('div', { class: 'ended center-card' },
        h('img', { src: '/static/icon.svg', alt: '', width: 56, height: 56 }),
        h('h1', { text: 'This window has closed its session' }),
        h('p', { text: 'Run `vellum app` again to open a new window.' })));
  }

  /** This device was revoked and wiped: nothing it showed may stay on the page. Starting over
   * loads the page afresh, which finds an unenrolled device (the enrollment screen). */
  function deviceRevoked() {
    S.msgs?.clear();
    document.getElementById('app').replaceChildren(
      h('div', { class: 'ended center-card' },
        h('img', { src: '/static/icon.svg', alt: '', width: 56, height: 56 }),
        h('h1', { text: 'This device was removed' }),
        h('p', { text: 'It was revoked, and everything it held has been erased.' })));
    setTimeout(() => location.reload(), 3000);
  }

  // ---------------------------------------------------------------- toasts, announcements, dialogs
  function toast(message, kind = 'error') {
    const el = h('div', { class: `toast ${kind}`, test: 'toast', role: 'alert' },
      icon(kind === 'error' ? 'alert' : 'check'), h('span', { text: message }),
      iconButton('close', 'Dismiss', { onclick: () => el.remove() }));
    document.getElementById('toasts').append(el);
    setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
  }
  function fail(err) {
    toast(err instanceof Error ? err.message : String(err));
  }

  let announceTimer = 0;
  function announce(words) {
    const live = document.getElementById('announce');
    live.textContent = words;
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => { live.textContent = ''; }, 4000);
  }

  /** A modal <dialog>: showModal makes the rest inert (the focus stays inside), Esc closes. */
  function openDialog(title, content, { cls = '', onClose } = {}) {
    const opener = document.activeElement;
    const dialog = h('dialog', { class: `dialog ${cls}`, 'aria-labelledby': 'dlg-title' });
    const closeBtn = iconButton('close', 'Close', { class: 'icon-btn dlg-close', onclick: () => dialog.close() });
    dialog.append(h('header', { class: 'dlg-head' }, h('h2', { id: 'dlg-title', text: title }), closeBtn), content);
    dialog.addEventListener('close', () => {
      dialog.remove();
      onClose?.();
      if (opener && document.contains(opener)) opener.focus();
    });
    dialog.addEventListener('click', (e) => {
      if (e.target === dialog) dialog.close(); // a click on the backdrop
    });
    document.body.append(dialog);
    dialog.showModal();
    const first = dialog.querySelector('[autofocus]') || dialog.querySelector('input, select, textarea, button:not(.dlg-close)');
    first?.focus();
    return dialog;
  }

  function confirmDialog({ title, body, ok, danger = true }) {
    return new Promise((resolve) => {
      let answer = false;
      const okBtn = h('button', { type: 'button', class: `btn ${danger ? 'danger' : 'primary'}`, test: 'confirm-ok', text: ok, autofocus: true });
      const cancelBtn = h('button', { type: 'button', class: 'btn', test: 'confirm-cancel', text: 'Cancel' });
      const dialog = openDialog(title, h('div', { class: 'dlg-body' }, h('p', { class: 'confirm-text', text: body }),
        h('div', { class: 'dlg-actions' }, cancelBtn, okBtn)), { cls: 'confirm', onClose: () => resolve(answer) });
      okBtn.addEventListener('click', () => { answer = true; dialog.close(); });
      cancelBtn.addEventListener('click', () => dialog.close());
      okBtn.focus();
    });
  }

  // ---------------------------------------------------------------- boot
  async function boot() {
    try {
      S.session = await api('GET', '/api/session');
    } catch (err) {
      if (err.status !== 401) {
        document.getElementById('app').replaceChildren(h('div', { class: 'center-card' },
          h('h1', { text: 'Vellum could not start' }), h('p', { text: err.message })));
      }
      return;
    }
    S.csrf = S.session.csrf;
    const app = document.getElementById('app');
    app.classList.remove('boot');
    app.removeAttribute('aria-busy');
    if (S.session.state !== 'enrolled') {
      renderEnroll();
      return;
    }
    renderShell();
    connectEvents();
    setInterval(tick, 250);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) markRead(); });
    window.addEventListener('focus', markRead);
    document.addEventListener('keydown', globalKeys);
    await loadChats();
    if (S.session.pending) showDevices();
    else if (window.matchMedia('(min-width: 701px)').matches && S.chats.length) focusChatList();
  }

  // ---------------------------------------------------------------- enrollment
  function renderEnroll() {
    const server = h('input', { id: 'en-server', test: 'enroll-server', type: 'url', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'https://vellum.example.org', value: S.session.server || '' });
    const user = h('input', { id: 'en-user', test: 'enroll-user', required: true, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', placeholder: 'alice' });
    const code = h('input', { id: 'en-code', test: 'enroll-code', required: true, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', inputmode: 'text', placeholder: 'From your administrator' });
    const error = h('p', { class: 'form-error', test: 'enroll-error', role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit', class: 'btn primary wide', test: 'enroll-submit', text: 'Enroll this device' });
    const form = h('form', { class: 'enroll-form', novalidate: true },
      h('label', { for: 'en-server', text: 'Server' }), server,
      h('label', { for: 'en-user', text: 'User name' }), user,
      h('label', { for: 'en-code', text: 'Enrollment code' }), code,
      error, submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      error.hidden = true;
      if (!server.value.trim() || !user.value.trim() || !code.value.trim()) {
        error.textContent = 'Fill in the server, your user name and the enrollment code.';
        error.hidden = false;
        return;
      }
      submit.disabled = true;
      submit.textContent = 'Enrolling…';
      try {
        await api('POST', '/api/enroll', { server: server.value.trim(), user: user.value.trim(), code: code.value.trim() });
        location.reload();
      } catch (err) {
        // The server's sentence, without its machine code ("… (invalid_enrollment_code)").
        error.textContent = String(err.message).replace(/\s*\([a-z0-9_]+\)\s*$/, '') || 'Enrollment failed.';
        error.hidden = false;
        submit.disabled = false;
        submit.textContent = 'Enroll this device';
      }
    });
    document.getElementById('app').replaceChildren(h('div', { class: 'enroll' },
      h('div', { class: 'center-card' },
        h('img', { src: '/static/icon.svg', alt: '', width: 64, height: 64, class: 'enroll-logo' }),
        h('h1', { text: 'Welcome to Vellum' }),
        h('p', { class: 'muted', text: 'Enroll this device with the code your administrator gave you. Its keys stay on this computer.' }),
        form)));
    (server.value ? user : server).focus();
  }

  // ---------------------------------------------------------------- shell
  function renderShell() {
    const me = S.session.user || '';
    els.navChats = h('button', { type: 'button', class: 'tab', test: 'nav-chats', 'aria-pressed': 'true', onclick: showChats }, icon('chats'), h('span', { text: 'Chats' }));
    els.navDevices = h('button', { type: 'button', class: 'tab', test: 'nav-devices', 'aria-pressed': 'false', onclick: showDevices }, icon('devices'), h('span', { text: 'Devices' }));
    els.devicesDot = h('span', { class: 'dot', hidden: true, 'aria-label': 'needs attention' });
    els.navDevices.append(els.devicesDot);
    const newChat = iconButton('compose', 'New chat', { test: 'nav-new-chat', onclick: newChatDialog });
    els.conn = h('div', { class: 'conn-slot' });
    els.chatList = h('ul', { class: 'chat-list', role: 'listbox', 'aria-label': 'Chats' });
    els.chatList.addEventListener('keydown', chatListKeys);
    const filter = h('input', { type: 'search', class: 'chat-filter', placeholder: 'Search chats', 'aria-label': 'Search chats', autocomplete: 'off', spellcheck: 'false' });
    filter.addEventListener('input', () => { S.chatFilter = filter.value.trim().toLowerCase(); renderChatList(); });
    filter.addEventListener('keydown', (e) => {
      const first = els.chatList.querySelector('.chat-item');
      if (!first) return;
      if (e.key === 'ArrowDown') {
        // Into the results: the first one takes the list's one Tab stop.
        e.preventDefault();
        els.chatList.querySelectorAll('.chat-item').forEach((it) => { it.tabIndex = -1; });
        first.tabIndex = 0;
        first.focus();
      } else if (e.key === 'Enter' && !e.isComposing) {
        e.preventDefault();
        // The search has done its job: a filter left behind would hide chats that arrive later.
        const chat = first.dataset.chatId;
        filter.value = '';
        S.chatFilter = '';
        renderChatList();
        openChat(chat, { focusComposer: true });
      }
    });
    els.sidebar = h('nav', { class: 'sidebar', 'aria-label': 'Chats and devices' },
      h('header', { class: 'side-head' },
        avatar(me, 'sm'),
        h('div', { class: 'side-who' }, h('span', { class: 'side-name', text: me }), h('span', { class: 'side-sub', text: 'Vellum' })),
        newChat),
      h('div', { class: 'tabs', role: 'group', 'aria-label': 'Screens' }, els.navChats, els.navDevices),
      els.conn,
      h('div', { class: 'filter-wrap' }, icon('search'), filter),
      els.chatList);
    els.pane = h('section', { class: 'pane', 'aria-label': 'Conversation' });
    els.shell = h('div', { class: 'shell' }, els.sidebar, els.pane);
    document.getElementById('app').replaceChildren(els.shell);
    renderEmptyPane();
    renderConnection();
  }

  function emptyPaneTitle() {
    return S.chats.length ? 'Choose a chat' : 'No chats yet';
  }

  function renderEmptyPane() {
    els.pane.replaceChildren(h('div', { class: 'empty-pane' },
      h('img', { src: '/static/icon.svg', alt: '', width: 72, height: 72 }),
      h('h2', { class: 'empty-title', text: emptyPaneTitle() }),
      h('p', { class: 'muted', text: 'Messages are end-to-end encrypted. Record chats are kept by your organisation’s archive.' }),
      h('button', { type: 'button', class: 'btn primary', text: 'Start a new chat', onclick: newChatDialog })));
    els.shell.classList.remove('show-pane');
  }

  function setNav(view) {
    S.view = view;
    els.navChats.setAttribute('aria-pressed', String(view === 'chats'));
    els.navDevices.setAttribute('aria-pressed', String(view === 'devices'));
  }

  function showChats() {
    setNav('chats');
    if (!S.current) {
      renderEmptyPane();
    } else {
      els.shell.classList.remove('show-pane');
    }
    focusChatList();
  }

  function globalKeys(e) {
    if (e.key === 'Escape' && !document.querySelector('dialog[open]')) {
      if (closePopovers()) e.preventDefault();
    }
  }

  // ---------------------------------------------------------------- connection
  function renderConnection() {
    if (!els.conn) return;
    // A device waiting for approval is online but not yet let in: a calm state, no "offline".
    const pending = !!(S.pending || S.session?.pending) && S.streamUp;
    const offline = !pending && (!S.online || !S.streamUp);
    const kids = [];
    if (pending) {
      kids.push(h('div', { class: 'banner pending', role: 'status' }, icon('clock'),
        h('span', { text: 'Waiting for approval from one of your other devices.' })));
    }
    if (offline) {
      kids.push(h('div', { class: 'banner offline', test: 'connection', role: 'status' }, icon('offline'),
        h('span', { text: S.streamUp ? 'Offline: not connected to the delivery server. Messages will send when it is back.' : 'Reconnecting to Vellum on this computer…' })));
    }
    for (const alarm of S.alarms) {
      kids.push(h('div', { class: 'banner alarm', test: offline ? null : 'connection', role: 'status' }, icon('alert'), h('span', { text: alarm })));
    }
    els.conn.replaceChildren(...kids);
  }

  // ---------------------------------------------------------------- live events
  let source = null;
  let retry = 1000;
  function connectEvents() {
    source = new EventSource('/api/events');
    source.onopen = () => {
      const wasDown = !S.streamUp;
      S.streamUp = true;
      retry = 1000;
      renderConnection();
      if (wasDown) resync();
    };
    source.onmessage = (e) => {
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch {
        return;
      }
      handleEvent(ev);
    };
    source.onerror = () => {
      S.streamUp = false;
      renderConnection();
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(async () => {
          // A closed stream may mean the session is gone: ask before reconnecting.
          try {
            await api('GET', '/api/session');
          } catch (err) {
            if (err.status === 401) return;
          }
          connectEvents();
        }, retry);
        retry = Math.min(retry * 2, 15000);
      }
    };
  }

  async function resync() {
    await loadChats();
    if (S.current) await openChat(S.current, { keepComposer: true });
    if (S.view === 'devices') await loadDevices();
  }

  let chatsTimer = 0;
  function reloadChatsSoon() {
    clearTimeout(chatsTimer);
    chatsTimer = setTimeout(loadChats, 150);
  }

  function handleEvent(ev) {
    switch (ev.type) {
      case 'message': {
        const m = ev.message;
        if (!m) break;
        const fresh = !(ev.chat === S.current && S.msgs.has(m.id));
        if (ev.chat === S.current) upsertMessage(m, { live: true });
        const recent = !m.edited_at && !m.reactions?.length && Date.now() - (m.received_at || 0) < 30000;
        if (fresh && recent && !m.mine && !(ev.chat === S.current && document.hasFocus())) {
          // Only the sender, never the text.
          if (m.kind === 'text') announce(`New message from ${m.sender}`);
        }
        reloadChatsSoon();
        break;
      }
      case 'gone':
        if (ev.chat === S.current) dropMessage(ev.id);
        reloadChatsSoon();
        break;
      case 'chats':
        reloadChatsSoon();
        break;
      case 'revoked':
        deviceRevoked();
        break;
      case 'resync':
        // This stream missed events (a `gone` may be among them): reload what is shown.
        resync();
        break;
      case 'chat':
        if (ev.chat === S.current) loadDetail(S.current);
        reloadChatsSoon();
        break;
      case 'devices':
        loadDevices();
        break;
      case 'progress':
        uploadServerProgress(ev);
        break;
      case 'connection': {
        const wasPending = !!(S.pending || S.session?.pending);
        S.pending = !!ev.pending;
        // No longer pending: the devices list says whether this device was approved.
        if (wasPending && ev.pending === false) loadDevices();
        S.online = !!ev.online;
        S.alarms = Array.isArray(ev.alarms) ? ev.alarms : [];
        renderConnection();
        break;
      }
      default:
        break;
    }
  }

  // ---------------------------------------------------------------- chat list
  async function loadChats() {
    try {
      const data = await api('GET', '/api/chats');
      S.chats = data.chats || [];
    } catch (err) {
      if (err.status !== 401) fail(err);
      return;
    }
    renderChatList();
    updateTitle();
    // The empty pane follows the list (the first chat arriving live turns "No chats yet" into
    // "Choose a chat"); updated in place so the focus stays where it is.
    const emptyTitle = els.pane?.querySelector('.empty-pane .empty-title');
    if (emptyTitle && emptyTitle.textContent !== emptyPaneTitle()) emptyTitle.textContent = emptyPaneTitle();
    if (S.current && !S.chats.some((c) => c.id === S.current)) {
      // The chat left the list (we left it or were removed): close it.
      closeChat();
      return;
    }
    catchUp();
  }

  /** The list says the open chat has something newer than the page shows (a message whose
   * event this page missed): fetch the newest page and add what is missing. */
  let catchingUp = false;
  async function catchUp() {
    const chat = S.current;
    const summary = S.chats.find((c) => c.id === chat);
    if (!chat || !summary?.last || catchingUp || !els.messages || !S.pages.length) return;
    let newest = 0;
    for (const m of S.msgs.values()) newest = Math.max(newest, m.sent_at || 0);
    if (summary.last.at <= newest) return;
    catchingUp = true;
    try {
      const page = await api('GET', `/api/chats/${enc(chat)}/messages?limit=${PAGE}`);
      if (chat !== S.current) return;
      for (const m of page.messages || []) {
        if (!S.msgs.has(m.id) && m.sent_at > newest) upsertMessage(m, { live: true });
      }
    } catch {
      // The next event tries again.
    } finally {
      catchingUp = false;
    }
  }

  function updateTitle() {
    const unread = S.chats.reduce((n, c) => n + (c.unread || 0), 0);
    document.title = unread ? `(${unread}) Vellum` : 'Vellum';
  }

  function timerLabel(c) {
    const parts = [];
    if (c.expire_secs) parts.push(shortDuration(c.expire_secs));
    if (c.burn_secs) parts.push(`read ${shortDuration(c.burn_secs)}`);
    return parts.join(' · ');
  }

  function lastLine(c) {
    const last = c.last;
    if (!last) return { text: 'No messages yet', cls: 'muted' };
    if (last.kind === 'event') return { text: youInEvent({ kind: 'event', text: last.preview }) || 'Chat updated', cls: 'muted' };
    const who = last.sender === S.session.user ? 'You: ' : (c.members > 2 ? `${last.sender}: ` : '');
    if (last.preview == null) return { text: `${who}Tap to read`, cls: 'sealed' };
    return { text: who + last.preview, cls: '' };
  }

  function renderChatList() {
    if (!els.chatList) return;
    const focused = document.activeElement?.closest?.('.chat-item')?.dataset.chatId;
    const items = [];
    const shown = S.chats.filter((c) => !S.chatFilter || c.title.toLowerCase().includes(S.chatFilter));
    for (const c of shown) {
      const line = lastLine(c);
      const selected = c.id === S.current;
      const item = h('li', {
        class: `chat-item${selected ? ' selected' : ''}${c.unread ? ' has-unread' : ''}`,
        test: 'chat-item', role: 'option', 'data-chat-id': c.id, 'data-title': c.title,
        'aria-selected': String(selected), tabindex: '-1',
        onclick: () => openChat(c.id),
      },
      avatar(c.title),
      h('div', { class: 'ci-main' },
        h('div', { class: 'ci-top' },
          h('span', { class: 'ci-title', test: 'chat-title', text: c.title }),
          c.class === 'record' ? h('span', { class: 'ci-record', title: 'Kept as records', 'aria-label': 'Record chat' }, icon('archive', 'icon xs')) : null,
          h('span', { class: 'ci-time', text: c.last ? listTime(c.last.at) : '' })),
        h('div', { class: 'ci-bottom' },
          h('span', { class: `ci-last ${line.cls}`, test: 'chat-last', text: line.text }),
          (c.expire_secs || c.burn_secs) ? h('span', { class: 'ci-timer', test: 'chat-timer', title: 'Disappearing messages', 'aria-label': `Disappearing messages: ${timerLabel(c)}` }, icon(c.burn_secs && !c.expire_secs ? 'flame' : 'timer', 'icon xs'), h('span', { text: timerLabel(c) })) : null,
          c.unread ? h('span', { class: 'badge', test: 'chat-unread', 'aria-label': `${c.unread} unread`, text: String(c.unread) }) : null)));
      items.push(item);
    }
    if (!items.length) {
      items.push(h('li', { class: 'chat-list-empty', role: 'presentation', text: S.chatFilter ? 'No chat matches.' : 'No chats yet. Start one with the pencil button.' }));
    }
    els.chatList.replaceChildren(...items);
    // One tab stop for the list (roving tabindex): the selected, the focused or the first chat.
    const stop = els.chatList.querySelector(`.chat-item[data-chat-id="${CSS.escape(focused || S.current || '')}"]`) || els.chatList.querySelector('.chat-item');
    if (stop) {
      stop.tabIndex = 0;
      if (focused && els.chatList.contains(document.activeElement) === false && document.activeElement === document.body) stop.focus();
    }
  }

  function focusChatList() {
    const stop = els.chatList?.querySelector('.chat-item[tabindex="0"]');
    if (stop && document.activeElement === document.body) stop.focus({ preventScroll: true });
  }

  function chatListKeys(e) {
    const items = [...els.chatList.querySelectorAll('.chat-item')];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    let next = -1;
    if (e.key === 'ArrowDown') next = Math.min(items.length - 1, i + 1);
    else if (e.key === 'ArrowUp') next = Math.max(0, i - 1);
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = items.length - 1;
    else if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      openChat(items[i].dataset.chatId, { focusComposer: true });
      return;
    }
    if (next >= 0) {
      e.preventDefault();
      items.forEach((it) => { it.tabIndex = -1; });
      items[next].tabIndex = 0;
      items[next].focus();
    }
  }

  // ---------------------------------------------------------------- conversation
  function closeChat() {
    S.current = null;
    S.detail = null;
    clearMessages();
    resetComposer();
    renderChatList();
    if (S.view === 'chats') renderEmptyPane();
  }

  function clearMessages() {
    for (const urls of S.blobs.values()) urls.forEach((u) => URL.revokeObjectURL(u));
    S.blobs.clear();
    S.msgs.clear();
    S.acked.clear();
    S.pages = [];
    S.before = null;
    S.unseenBelow = 0;
    S.roving = null;
  }

  async function openChat(id, { keepComposer = false, focusComposer = false } = {}) {
    const seq = ++S.openSeq;
    const switching = S.current !== id;
    setNav('chats');
    if (switching || !els.conv) {
      S.current = id;
      S.detail = null;
      clearMessages();
      if (!keepComposer) resetComposer();
      renderConversation(id);
    }
    renderChatList();
    els.shell.classList.add('show-pane');
    let detail;
    let page;
    try {
      [detail, page] = await Promise.all([
        api('GET', `/api/chats/${enc(id)}`),
        api('GET', `/api/chats/${enc(id)}/messages?limit=${PAGE}`),
      ]);
    } catch (err) {
      if (seq === S.openSeq) fail(err);
      return;
    }
    if (seq !== S.openSeq) return;
    S.detail = detail;
    renderHeader();
    if (!switching) {
      // A resync: the newest page replaces what was shown.
      clearMessages();
      els.messages.querySelectorAll('.msg, .event-row, .day-sep').forEach((n) => n.remove());
    }
    S.pages = [''];
    S.before = page.before ?? null;
    for (const m of page.messages || []) upsertMessage(m, { batch: true });
    relayout();
    if (detail.removed) renderHeader(); // its events say whether you left or were removed
    if (switching) markUnread(S.chats.find((c) => c.id === id)?.unread || 0);
    scrollToBottom();
    updateOlderMarker();
    markRead();
    if (focusComposer || switching) els.compose?.focus({ preventScroll: true });
  }

  function renderConversation(id) {
    els.headTitle = h('h2', { class: 'conv-title', test: 'chat-header-title', text: S.chats.find((c) => c.id === id)?.title || '' });
    els.headSub = h('div', { class: 'conv-sub' });
    els.headChips = h('div', { class: 'conv-chips' });
    els.headAvatar = h('span', { class: 'avatar-slot' }, avatar(S.chats.find((c) => c.id === id)?.title || '?'));
    els.settingsBtn = iconButton('settings', 'Chat settings', { test: 'chat-settings', onclick: settingsDialog });
    const back = iconButton('back', 'Back to chats', {
      class: 'icon-btn back-btn',
      onclick: () => {
        closeChat();
        // Back where the person was in the list.
        const item = els.chatList.querySelector(`.chat-item[data-chat-id="${CSS.escape(id)}"]`);
        if (item) {
          els.chatList.querySelectorAll('.chat-item').forEach((it) => { it.tabIndex = -1; });
          item.tabIndex = 0;
          item.focus();
        } else focusChatList();
      },
    });
    els.banners = h('div', { class: 'banners' });
    // One Tab stop (roving tabindex over the rows): ↑/↓/Home/End move, Enter/Space opens the
    // focused message's actions, Tab goes on to the composer.
    els.messages = h('div', { class: 'messages', test: 'messages', role: 'list', 'aria-label': 'Messages' });
    els.messages.addEventListener('keydown', messageKeys);
    els.messages.addEventListener('focusin', (e) => {
      const row = e.target.closest?.('.msg, .event-row');
      if (!row) return;
      if (S.roving !== row.dataset.id) {
        S.roving = row.dataset.id;
        applyRoving();
      }
      setControlsTabbable(row, true);
    });
    els.messages.addEventListener('focusout', (e) => {
      const row = e.target.closest?.('.msg, .event-row');
      if (row && !row.contains(e.relatedTarget)) setControlsTabbable(row, false);
    });
    els.olderMarker = h('div', { class: 'older', 'aria-hidden': 'true' });
    els.messages.append(els.olderMarker);
    els.messages.addEventListener('scroll', onMessagesScroll, { passive: true });
    // When the composer grows (a reply, an upload, more lines) the newest message stays in view.
    S.stick = true;
    new ResizeObserver(() => {
      if (S.stick && els.messages) els.messages.scrollTop = els.messages.scrollHeight;
    }).observe(els.messages);
    els.jump = h('button', { type: 'button', class: 'jump', hidden: true, 'aria-label': 'Jump to newest messages', onclick: () => scrollToBottom(true) }, icon('down'), h('span', { class: 'jump-count' }));
    els.dropHint = h('div', { class: 'drop-hint', 'aria-hidden': 'true' }, icon('attach', 'icon lg'), h('span', { text: 'Drop files to attach' }));
    els.conv = h('section', { class: 'conv', test: 'conversation', 'data-chat-id': id, 'aria-labelledby': 'conv-title-id' },
      h('header', { class: 'conv-head' }, back, els.headAvatar,
        h('div', { class: 'conv-titles' }, els.headTitle, els.headSub), els.headChips, els.settingsBtn),
      els.banners,
      h('div', { class: 'messages-wrap' }, els.messages, els.jump, els.dropHint),
      renderComposer());
    els.headTitle.id = 'conv-title-id';
    setupDrop(els.conv);
    els.pane.replaceChildren(els.conv);
  }

  /** "the Example County archive" where the org is named, else "your organisation’s archive". */
  function archiveName() {
    const org = S.session.org || S.session.policy?.org || S.session.policy?.org_name;
    return org ? `the ${org} archive` : 'your organisation’s archive';
  }

  function renderHeader() {
    const d = S.detail;
    if (!d || !els.conv) return;
    els.headTitle.textContent = d.title;
    els.headAvatar.replaceChildren(avatar(d.title));
    const count = Array.isArray(d.members) ? d.members.length : d.members;
    const left = d.removed && leftByChoice(d.id);
    const sub = [d.removed ? (left ? 'You left' : 'You are no longer a member') : `${count} member${count === 1 ? '' : 's'}`];
    if (d.expire_secs) sub.push(`messages disappear after ${duration(d.expire_secs)}`);
    if (d.burn_secs) sub.push(`burn ${duration(d.burn_secs)} after reading`);
    els.headSub.textContent = sub.join(' · ');
    const chips = [];
    if (d.class !== 'record') {
      chips.push(h('span', { class: 'chip transitory', test: 'transitory-banner', title: 'Not kept as records' }, 'Transitory'));
    }
    if (d.held) chips.push(h('span', { class: 'chip held', title: 'Under legal hold: nothing in this chat is deleted' }, icon('lock', 'icon xs'), 'Legal hold'));
    els.headChips.replaceChildren(...chips);
    const banners = [];
    if (d.removed) {
      // One banner only: why nothing can be sent or downloaded here any more.
      banners.push(h('div', { class: 'banner notice', role: 'status' }, icon(left ? 'leave' : 'alert'),
        h('span', { text: left ? 'You left this chat.' : 'You are no longer a member of this chat.' })));
    } else if (d.class === 'record') {
      const archiver = (d.members || []).find((m) => m.role);
      banners.push(h('div', { class: 'banner records', test: 'records-banner', title: archiver?.role || '' }, icon('archive'),
        h('span', { text: `Messages in this chat are kept as records by ${archiveName()}` })));
    }
    if (!d.removed) for (const notice of d.notices || []) banners.push(h('div', { class: 'banner notice', role: 'status' }, icon('shield'), h('span', { text: notice })));
    els.banners.replaceChildren(...banners);
    const canWrite = !d.removed;
    els.compose.disabled = !canWrite;
    els.sendBtn.disabled = !canWrite;
    // Out of the chat: no composer, no attach/timer/burn controls.
    els.composer.hidden = !canWrite;
    els.compose.placeholder = canWrite ? 'Message' : 'You can no longer send messages here';
    renderTimerOptions();
    if (els.messages && els.messages.classList.contains('removed') !== !!d.removed) {
      els.messages.classList.toggle('removed', !!d.removed);
      // Attachments turn into "not available" notes (or back): re-render what is loaded.
      for (const m of [...S.msgs.values()]) upsertMessage(m, { batch: true });
      relayout();
    }
  }

  /** Left (rather than removed): this window did it, or the chat's own event says so. */
  function leftByChoice(id) {
    if (S.left.has(id)) return true;
    const said = (ev) => /^You left\b/.test(youInEvent(ev) || '');
    const last = S.chats.find((c) => c.id === id)?.last;
    if (last?.kind === 'event' && said({ kind: 'event', text: last.preview })) return true;
    return [...S.msgs.values()].some((m) => m.kind === 'event' && said(m.event));
  }

  async function loadDetail(id) {
    try {
      const d = await api('GET', `/api/chats/${enc(id)}`);
      if (id !== S.current) return;
      S.detail = d;
      renderHeader();
      relayout();
    } catch (err) {
      if (err.status === 404 || err.status === 403) closeChat();
      else fail(err);
    }
  }

  // ---------------------------------------------------------------- messages
  function isGroup() {
    const d = S.detail;
    if (!d || d.removed) return true; // out of the chat the member list is gone, the names stay
    const n = Array.isArray(d.members) ? d.members.filter((m) => !m.role).length : d.members;
    return n > 2;
  }

  function msgNode(id) {
    return els.messages?.querySelector(`[data-id="${CSS.escape(id)}"]`) || null;
  }

  /** Inserts or replaces a message (by id), in time order. */
  function upsertMessage(m, { batch = false, live = false, prepend = false } = {}) {
    if (!els.messages || m.chat && m.chat !== S.current) return;
    if (isPast(m)) {
      dropMessage(m.id);
      return;
    }
    const had = S.msgs.get(m.id);
    S.msgs.set(m.id, m);
    const node = renderMessage(m);
    const old = msgNode(m.id);
    if (old) {
      if (had) revokeIfAttachmentsChanged(had, m);
      const hadFocus = old.contains(document.activeElement);
      const wasRow = document.activeElement === old;
      old.replaceWith(node);
      if (hadFocus) {
        applyRoving();
        (wasRow ? node : node.querySelector('.actions button') || node).focus({ preventScroll: true });
      }
    } else {
      const wasAtBottom = atBottom();
      insertInOrder(node, m, prepend);
      if (live) {
        if (wasAtBottom || m.mine) scrollToBottom();
        else {
          S.unseenBelow++;
          showJump();
        }
        trimIfLong();
      }
    }
    if (had && had.text !== m.text && m.text != null) {
      // An edit: quotes of it follow.
      for (const q of els.messages.querySelectorAll(`.quote[data-ref="${CSS.escape(m.id)}"] .quote-text`)) q.textContent = m.text;
    }
    if (!batch) relayout();
    if (live && !m.mine) markRead();
  }

  function revokeIfAttachmentsChanged(before, after) {
    if (before.attachments.length !== after.attachments.length) revokeBlobs(before.id);
  }

  function insertInOrder(node, m, prepend) {
    const list = els.messages;
    const nodes = list.querySelectorAll('.msg, .event-row');
    const key = Number(m.sent_at) || 0;
    if (prepend) {
      // Older pages arrive oldest first: insert before the first newer node.
      for (const n of nodes) {
        if (Number(n.dataset.at) > key) {
          n.before(node);
          return;
        }
      }
      list.append(node);
      return;
    }
    for (let i = nodes.length - 1; i >= 0; i--) {
      if (Number(nodes[i].dataset.at) <= key) {
        nodes[i].after(node);
        return;
      }
    }
    if (nodes.length) nodes[0].before(node);
    else list.append(node);
  }

  function isPast(m) {
    const now = Date.now();
    return (m.expires_at != null && m.expires_at <= now) || (m.burn_at != null && m.burn_at <= now);
  }

  /** Removes a message from the page and from memory: text, quotes of it, its files. */
  function dropMessage(id) {
    S.msgs.delete(id);
    S.acked.delete(id);
    revokeBlobs(id);
    msgNode(id)?.remove();
    for (const q of els.messages?.querySelectorAll(`.quote[data-ref="${CSS.escape(id)}"]`) || []) {
      q.querySelector('.quote-text').textContent = 'Message no longer available';
      q.classList.add('gone');
    }
    for (const m of S.msgs.values()) {
      if (m.reply_to && m.reply_to.id === id) m.reply_to = { id, sender: m.reply_to.sender, text: null };
    }
    if (S.reply?.id === id) cancelMode();
    if (S.edit === id) {
      els.compose.value = '';
      cancelMode();
    }
    closePopovers();
    relayout();
  }

  function revokeBlobs(id) {
    const urls = S.blobs.get(id);
    if (urls) urls.forEach((u) => URL.revokeObjectURL(u));
    S.blobs.delete(id);
  }

  /** Day separators and runs of one sender (no repeated names). */
  function relayout() {
    const list = els.messages;
    if (!list) return;
    list.querySelectorAll('.day-sep').forEach((n) => n.remove());
    let prevDay = null;
    let prev = null;
    const group = isGroup();
    for (const n of list.querySelectorAll('.msg, .event-row')) {
      const at = Number(n.dataset.at);
      const day = startOfDay(at);
      if (day !== prevDay) {
        n.before(h('div', { class: 'day-sep', role: 'separator' }, h('span', { text: dayLabel(at) })));
        prevDay = day;
        prev = null;
      }
      const isMsg = n.classList.contains('msg');
      const afterDivider = n.previousElementSibling?.classList.contains('unread-sep');
      const cont = isMsg && !afterDivider && prev && prev.classList.contains('msg') && prev.dataset.sender === n.dataset.sender && at - Number(prev.dataset.at) < 5 * 60000;
      n.classList.toggle('cont', !!cont);
      n.classList.toggle('group', group);
      prev = n;
    }
    list.classList.toggle('is-group', group);
    applyRoving();
  }

  const FOCUSABLE = 'button, a[href], input, select, textarea, [tabindex]';
  /** Exactly one row of the list is a Tab stop (the one last focused, else the newest). Its own
   * controls (actions, reactions, files) join the Tab order only while the focus is in that
   * row, so Shift+Tab from the composer lands on the row itself. */
  function applyRoving() {
    const list = els.messages;
    if (!list) return;
    const rows = list.querySelectorAll('.msg, .event-row');
    let stop = S.roving ? list.querySelector(`.msg[data-id="${CSS.escape(S.roving)}"], .event-row[data-id="${CSS.escape(S.roving)}"]`) : null;
    if (!stop) stop = rows[rows.length - 1] || null;
    for (const row of rows) {
      const on = row === stop;
      row.tabIndex = on ? 0 : -1;
      setControlsTabbable(row, on && row.contains(document.activeElement));
    }
  }

  function setControlsTabbable(row, on) {
    for (const c of row.querySelectorAll(FOCUSABLE)) {
      if (c.classList.contains('bubble')) continue; // a quote's jump target, focused by script
      c.tabIndex = on ? 0 : -1;
    }
  }

  function messageKeys(e) {
    const list = els.messages;
    const row = e.target.closest?.('.msg, .event-row');
    if (!row || e.defaultPrevented) return;
    const rows = [...list.querySelectorAll('.msg, .event-row')];
    const i = rows.indexOf(row);
    if (e.target === row) {
      let next = -1;
      if (e.key === 'ArrowDown') next = Math.min(rows.length - 1, i + 1);
      else if (e.key === 'ArrowUp') {
        next = Math.max(0, i - 1);
        if (i === 0) loadOlder();
      } else if (e.key === 'Home') next = 0;
      else if (e.key === 'End') next = rows.length - 1;
      else if ((e.key === 'Enter' || e.key === ' ') && row.classList.contains('msg')) {
        e.preventDefault();
        row.querySelector('.actions button')?.focus();
        return;
      } else if (e.key === 'Tab' && !e.shiftKey && els.compose && !els.composer.hidden) {
        e.preventDefault();
        els.compose.focus();
        return;
      }
      if (next >= 0) {
        e.preventDefault();
        S.roving = rows[next].dataset.id;
        applyRoving();
        rows[next].focus();
      }
    } else if (e.key === 'Escape' && !row.querySelector('.picker')) {
      e.preventDefault();
      row.focus();
    } else if ((e.key === 'ArrowRight' || e.key === 'ArrowLeft') && e.target.closest('.actions') && !e.target.closest('.picker')) {
      const buttons = [...row.querySelectorAll('.actions > button')];
      const j = buttons.indexOf(e.target);
      if (j >= 0) {
        e.preventDefault();
        buttons[(j + (e.key === 'ArrowRight' ? 1 : buttons.length - 1)) % buttons.length].focus();
      }
    }
  }

  /** A divider above the first of the `count` unread messages (as the list counted them). */
  function markUnread(count) {
    els.messages.querySelector('.unread-sep')?.remove();
    if (!count) return;
    const others = [...els.messages.querySelectorAll('.msg[data-mine="false"]')];
    const first = others[Math.max(0, others.length - count)];
    if (!first) return;
    const label = `${count} unread message${count === 1 ? '' : 's'}`;
    first.before(h('div', { class: 'unread-sep', role: 'separator', 'aria-label': label }, h('span', { text: label })));
  }

  function renderText(text, mentions) {
    const el = h('div', { class: 'text', test: 'message-text', dir: 'auto' });
    const names = new Set(mentions || []);
    if (!names.size) {
      el.textContent = text;
      return el;
    }
    // Mentions are highlighted; everything stays a text node.
    const re = /@([\p{L}\p{N}._-]+)/gu;
    let last = 0;
    for (const match of text.matchAll(re)) {
      if (!names.has(match[1])) continue;
      if (match.index > last) el.append(text.slice(last, match.index));
      el.append(h('span', { class: `mention${match[1] === S.session.user ? ' me' : ''}`, text: match[0] }));
      last = match.index + match[0].length;
    }
    if (last < text.length) el.append(text.slice(last));
    return el;
  }

  /** Own messages: sending (clock), sent (one check), delivered (two), read (two, accent). */
  function statusMark(m) {
    if (m.seq == null) return h('span', { class: 'status pending', role: 'img', 'aria-label': 'Sending', title: 'Sending' }, icon('clock', 'icon xs'));
    const r = m.receipts;
    const count = (v) => (typeof v === 'number' ? v : v ? 1 : 0);
    const others = Array.isArray(S.detail?.members) ? S.detail.members.filter((x) => !x.you && !x.role).length : 0;
    const total = r?.total ?? (others || null);
    const of = (n) => (total && total > 1 ? ` by ${n} of ${total}` : '');
    let cls = 'sent';
    let label = 'Sent';
    if (r && count(r.read) > 0) {
      // The accent only once everyone read it; before that two plain checks say how many did.
      cls = !total || count(r.read) >= total ? 'read' : 'delivered';
      label = `Read${of(count(r.read))}`;
    } else if (r && count(r.delivered) > 0) {
      cls = 'delivered';
      label = `Delivered${of(count(r.delivered))}`;
    }
    return h('span', { class: `status ${cls}`, test: 'receipt', role: 'img', 'aria-label': label, title: label }, icon(cls === 'sent' ? 'check' : 'checks', 'icon xs'));
  }

  /** A quote shows its original's current (edited) text when the original is on the page. */
  function quoteText(q) {
    const original = S.msgs.get(q.id);
    if (original && original.text != null) return original.text;
    return q.text ?? 'Message no longer available';
  }

  function renderMessage(m) {
    if (m.kind === 'event') {
      return h('div', { class: 'event-row', test: 'event', 'data-kind': m.event?.kind || 'notice', 'data-id': m.id, 'data-at': m.sent_at, 'data-sender': m.sender, role: 'listitem', tabindex: '-1' },
        h('span', { class: 'event-pill' }, icon(eventIcon(m.event?.kind), 'icon xs'), h('span', { class: 'event-text', text: youInEvent(m.event) || 'Chat updated' }),
          h('time', { class: 'event-time', datetime: new Date(m.sent_at).toISOString(), title: fmtFull.format(m.sent_at), text: fmtTime.format(m.sent_at) })));
    }
    const bubble = h('div', { class: 'bubble', id: `bubble-${m.id}` });
    if (!m.mine) bubble.append(h('span', { class: `sender c${hue(m.sender)}`, test: 'message-sender', text: m.sender }));
    if (m.reply_to) {
      const q = m.reply_to;
      bubble.append(h('button', { type: 'button', class: `quote${q.text == null ? ' gone' : ''}`, test: 'reply-quote', 'data-ref': q.id, 'aria-label': `Reply to ${q.sender || 'a message'}: go to the original`, onclick: () => scrollToMessage(q.id) },
        h('span', { class: 'quote-sender', text: q.sender === S.session.user ? 'You' : (q.sender || 'Message') }),
        h('span', { class: 'quote-text', text: quoteText(q) })));
    }
    if (m.sealed || m.text == null) {
      bubble.append(h('button', { type: 'button', class: 'reveal', test: 'reveal', onclick: (e) => reveal(m, e.currentTarget) },
        icon('flame'), h('span', { text: 'Tap to read' }),
        m.burn_secs ? h('span', { class: 'reveal-sub', text: `Burns ${duration(m.burn_secs)} after opening` }) : null));
    } else if (m.text) {
      bubble.append(renderText(m.text, m.mentions));
    }
    if (m.attachments?.length && !m.sealed) {
      bubble.append(h('div', { class: 'atts' }, m.attachments.map((a) => renderAttachment(m, a))));
    }
    const meta = h('div', { class: 'meta' });
    if (m.edited_at) meta.append(h('span', { class: 'edited', test: 'edited', title: `Edited ${fmtFull.format(m.edited_at)}`, text: 'edited' }));
    const deadline = m.burn_at ?? m.expires_at;
    if (deadline != null) {
      meta.append(h('span', { class: 'countdown', test: 'countdown', 'data-deadline': deadline, 'data-burns': m.burn_at != null ? '1' : null, role: 'timer', 'aria-live': 'off', 'aria-label': countdownLabel(deadline - Date.now(), m.burn_at != null), title: m.burn_at != null ? 'Burns after reading' : 'Disappearing message' },
        icon(m.burn_at != null ? 'flame' : 'timer', 'icon xs'), h('span', { class: 'cd-text', text: remaining(deadline - Date.now()) })));
    } else if (m.sealed && m.burn_secs) {
      meta.append(h('span', { class: 'countdown-idle', title: 'Burns after reading' }, icon('flame', 'icon xs')));
    }
    if (m.archived) meta.append(h('span', { class: 'archived', title: 'Kept in the records archive (verified receipt)', 'aria-label': 'Archived' }, icon('archive', 'icon xs')));
    meta.append(h('time', { class: 'time', test: 'message-time', datetime: new Date(m.sent_at).toISOString(), title: fmtFull.format(m.sent_at), text: fmtTime.format(m.sent_at) }));
    if (m.mine) meta.append(statusMark(m));
    bubble.append(meta);

    const reactions = h('div', { class: 'reactions' });
    for (const r of m.reactions || []) {
      reactions.append(h('button', { type: 'button', class: `reaction${r.mine ? ' mine' : ''}`, test: 'reaction', 'data-emoji': r.emoji,
        'aria-label': `${r.emoji} ${r.count}${r.mine ? ', yours: remove' : ': add yours'}`, 'aria-pressed': String(!!r.mine), text: String(r.count), disabled: !!S.detail?.removed,
        onclick: () => react(m.id, r.emoji, r.mine) }));
    }

    const canEdit = m.mine && m.text != null;
    // Out of the chat nothing can be replied to, reacted to, edited or deleted.
    const actions = S.detail?.removed ? null : h('div', { class: 'actions', role: 'toolbar', 'aria-label': 'Message actions' },
      iconButton('reply', 'Reply', { test: 'action-reply', onclick: () => startReply(m.id) }),
      iconButton('smile', 'React', { test: 'action-react', 'aria-haspopup': 'true', onclick: (e) => openPicker(m.id, e.currentTarget) }),
      canEdit ? iconButton('edit', 'Edit', { test: 'action-edit', onclick: () => startEdit(m.id) }) : null,
      m.mine ? iconButton('trash', 'Delete for everyone', { test: 'action-delete', onclick: () => deleteMessage(m.id) }) : null);

    return h('article', {
      class: `msg${m.mine ? ' mine' : ''}`, test: 'message', 'data-id': m.id, 'data-sender': m.sender, role: 'listitem', tabindex: '-1',
      'data-mine': String(!!m.mine), 'data-at': m.sent_at, 'aria-label': `${m.mine ? 'You' : m.sender}, ${fmtTime.format(m.sent_at)}`,
      'aria-describedby': `bubble-${m.id}`, 'aria-keyshortcuts': 'Enter',
    },
    m.mine ? null : h('span', { class: 'msg-avatar' }, avatar(m.sender, 'xs')),
    h('div', { class: 'msg-body' }, bubble, reactions.childElementCount ? reactions : null),
    actions);
  }

  /** "alice deleted a message" on alice's screen reads "You deleted a message"; "alice made bob
   * an admin" on bob's reads "alice made you an admin". Only whole-word matches of the user's
   * name in the sentence shapes the device writes; free text (notices, alarms, a new title)
   * is left as it is. */
  function youInEvent(ev) {
    const text = ev?.text;
    const me = S.session.user;
    if (!text || !me || /notice|alarm/.test(ev.kind || '')) return text;
    const esc = me.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const word = (re) => new RegExp(re.replace(/ME/g, `(?<![\\p{L}\\p{N}_.-])${esc}(?![\\p{L}\\p{N}_-]|\\.[\\p{L}\\p{N}])`), 'u');
    // The sentence starts with the one who did it.
    let out = text
      .replace(word("^ME's "), 'Your ')
      .replace(word('^ME is '), 'You are ')
      .replace(word('^ME (?=[a-z])'), 'You ');
    if (out.startsWith('You ')) out = out.replace(/^You was /, 'You were ').replace(/ their /, ' your ');
    // A new title is the chat's own words: names inside it stay as they are.
    const cut = out.indexOf(' renamed the chat to ');
    if (cut >= 0) return out;
    return out
      .replace(word(" ME's "), ' your ')
      .replace(word('( (?:made|added|removed|by|invited) )ME(?= |$|[:.(])'), '$1you');
  }

  function eventIcon(kind) {
    if (!kind) return 'alert';
    if (kind.startsWith('admin') || kind.startsWith('member')) return 'users';
    if (kind.startsWith('react')) return 'smile';
    if (kind.startsWith('edit')) return 'edit';
    if (kind.startsWith('settings')) return 'settings';
    if (kind.startsWith('device')) return 'devices';
    if (kind.includes('safety') || kind.includes('key')) return 'shield';
    if (kind.includes('timer')) return 'timer';
    if (kind.includes('title')) return 'edit';
    if (kind.includes('delete')) return 'trash';
    return 'alert';
  }

  // ---------------------------------------------------------------- paging and scrolling
  function atBottom() {
    const l = els.messages;
    return !l || l.scrollHeight - l.scrollTop - l.clientHeight < 80;
  }
  function scrollToBottom(smooth = false) {
    const l = els.messages;
    if (!l) return;
    l.scrollTo({ top: l.scrollHeight, behavior: smooth && !reducedMotion() ? 'smooth' : 'instant' });
    if (!smooth) {
      // Heights settle after layout (content-visibility, fonts): pin to the bottom again.
      requestAnimationFrame(() => { l.scrollTop = l.scrollHeight; });
      setTimeout(() => { if (S.unseenBelow === 0) l.scrollTop = l.scrollHeight; }, 60);
    }
    S.unseenBelow = 0;
    showJump();
  }
  function reducedMotion() {
    return window.matchMedia('(prefers-reduced-motion: reduce)').matches;
  }
  function showJump() {
    if (!els.jump) return;
    const show = !atBottom();
    els.jump.hidden = !show;
    els.jump.querySelector('.jump-count').textContent = S.unseenBelow ? String(S.unseenBelow) : '';
  }
  function onMessagesScroll() {
    S.stick = atBottom();
    if (S.stick) {
      S.unseenBelow = 0;
      markRead();
      trimIfLong();
    }
    showJump();
    if (els.messages.scrollTop < 400) loadOlder();
  }
  function updateOlderMarker() {
    if (!els.olderMarker) return;
    els.olderMarker.textContent = S.before == null ? (S.msgs.size ? '' : 'No messages yet. Say hello!') : (S.loadingOlder ? 'Loading earlier messages…' : '');
    els.olderMarker.classList.toggle('start', S.before == null);
  }

  async function loadOlder() {
    if (S.loadingOlder || S.before == null || !S.current) return;
    S.loadingOlder = true;
    updateOlderMarker();
    const chat = S.current;
    const cursor = S.before;
    try {
      const page = await api('GET', `/api/chats/${enc(chat)}/messages?limit=${PAGE}&before=${enc(cursor)}`);
      if (chat !== S.current) return;
      const list = els.messages;
      const fromBottom = list.scrollHeight - list.scrollTop;
      for (const m of page.messages || []) if (!S.msgs.has(m.id)) upsertMessage(m, { batch: true, prepend: true });
      S.pages.push(cursor);
      S.before = page.before ?? null;
      relayout();
      list.scrollTop = list.scrollHeight - fromBottom;
    } catch (err) {
      fail(err);
    } finally {
      S.loadingOlder = false;
      updateOlderMarker();
    }
  }

  /** Keeps the DOM bounded: at the bottom with many loaded, the oldest page goes (re-paged on scroll up). */
  function trimIfLong() {
    if (S.msgs.size <= MAX_DOM_MESSAGES || !atBottom() || S.pages.length < 2) return;
    while (S.msgs.size > MAX_DOM_MESSAGES && S.pages.length > 1) {
      const cursor = S.pages.pop();
      const nodes = els.messages.querySelectorAll('.msg, .event-row');
      const drop = Math.min(PAGE, nodes.length - PAGE);
      for (let i = 0; i < drop; i++) {
        const id = nodes[i].dataset.id;
        S.msgs.delete(id);
        revokeBlobs(id);
        nodes[i].remove();
      }
      S.before = cursor;
    }
    relayout();
    updateOlderMarker();
    scrollToBottom();
  }

  async function scrollToMessage(id) {
    let node = msgNode(id);
    // Page back a little to find an older original.
    for (let i = 0; !node && i < 5 && S.before != null; i++) {
      await loadOlder();
      node = msgNode(id);
    }
    if (!node) {
      toast('The original message is no longer available.', 'info');
      return;
    }
    node.scrollIntoView({ block: 'center', behavior: reducedMotion() ? 'instant' : 'smooth' });
    node.classList.remove('flash');
    void node.offsetWidth;
    node.classList.add('flash');
    const target = node.querySelector('.bubble');
    target?.setAttribute('tabindex', '-1');
    target?.focus({ preventScroll: true });
  }

  // ---------------------------------------------------------------- reading, timers
  let readTimer = 0;
  function markRead() {
    clearTimeout(readTimer);
    readTimer = setTimeout(sendRead, 200);
  }
  async function sendRead() {
    if (!S.current || document.hidden || !document.hasFocus() || !atBottomish()) return;
    const ids = [];
    for (const m of S.msgs.values()) {
      if (m.mine || m.sealed || m.text == null && m.kind === 'text' || S.acked.has(m.id)) continue;
      ids.push(m.id);
    }
    if (!ids.length) return;
    ids.forEach((id) => S.acked.add(id));
    const chat = S.current;
    try {
      await api('POST', `/api/chats/${enc(chat)}/read`, { ids });
      const c = S.chats.find((x) => x.id === chat);
      if (c && c.unread) {
        c.unread = 0;
        renderChatList();
        updateTitle();
      }
    } catch (err) {
      ids.forEach((id) => S.acked.delete(id));
      if (err.status !== 404) fail(err);
    }
  }
  function atBottomish() {
    const l = els.messages;
    return !l || l.scrollHeight - l.scrollTop - l.clientHeight < l.clientHeight;
  }

  function tick() {
    if (!els.messages) return;
    const now = Date.now();
    let dropped = false;
    for (const cd of els.messages.querySelectorAll('.countdown')) {
      const deadline = Number(cd.dataset.deadline);
      const left = deadline - now;
      if (left <= 0) {
        const node = cd.closest('[data-id]');
        if (node) {
          dropMessage(node.dataset.id);
          dropped = true;
        }
        continue;
      }
      const txt = remaining(left);
      const span = cd.querySelector('.cd-text');
      if (span.textContent !== txt) span.textContent = txt;
      // The accessible label follows, at most every 5 s (no chatter for screen readers).
      if (now - (Number(cd.dataset.labelled) || 0) >= 5000) {
        cd.dataset.labelled = String(now);
        cd.setAttribute('aria-label', countdownLabel(left, cd.dataset.burns === '1'));
      }
      cd.classList.toggle('soon', left < 10000);
    }
    // Event rows and messages without a countdown node but with a deadline.
    for (const m of [...S.msgs.values()]) {
      if (isPast(m)) {
        dropMessage(m.id);
        dropped = true;
      }
    }
    if (dropped) reloadChatsSoon();
  }

  function countdownLabel(left, burns) {
    return `${burns ? 'Burns' : 'Disappears'} in ${remaining(Math.ceil(left / 5000) * 5000)}`;
  }

  async function reveal(m, btn) {
    btn.disabled = true;
    try {
      const shown = await api('POST', `/api/chats/${enc(m.chat || S.current)}/messages/${enc(m.id)}/reveal`);
      upsertMessage(shown);
      S.acked.add(shown.id);
      reloadChatsSoon();
    } catch (err) {
      btn.disabled = false;
      fail(err);
    }
  }

  // ---------------------------------------------------------------- actions
  async function react(id, emoji, remove) {
    closePopovers();
    try {
      const m = await api('POST', `/api/chats/${enc(S.current)}/messages/${enc(id)}/react`, remove ? { emoji, remove: true } : { emoji });
      if (m) upsertMessage(m);
    } catch (err) {
      fail(err);
    }
  }

  function openPicker(id, anchor) {
    const existed = document.querySelector('.picker');
    closePopovers();
    if (existed && existed.dataset.for === id) return;
    const m = S.msgs.get(id);
    const picker = h('div', { class: 'picker', role: 'menu', 'aria-label': 'React', 'data-for': id },
      EMOJI.map((e) => {
        const mine = m?.reactions?.some((r) => r.emoji === e && r.mine);
        return h('button', { type: 'button', class: `emoji${mine ? ' mine' : ''}`, role: 'menuitem', test: 'emoji', 'data-emoji': e, 'aria-label': mine ? `Remove ${e}` : `React ${e}`, text: e, onclick: () => react(id, e, mine) });
      }));
    picker.addEventListener('keydown', (e) => {
      const buttons = [...picker.querySelectorAll('button')];
      const i = buttons.indexOf(document.activeElement);
      if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
        e.preventDefault();
        buttons[(i + (e.key === 'ArrowRight' ? 1 : buttons.length - 1)) % buttons.length].focus();
      } else if (e.key === 'Escape') {
        e.preventDefault();
        closePopovers();
        anchor.focus();
      }
    });
    // Opens above the message, or below it near the top of the list (where above is clipped).
    const room = anchor.getBoundingClientRect().top - els.messages.getBoundingClientRect().top;
    if (room < 60) picker.classList.add('below');
    anchor.closest('.actions').append(picker);
    anchor.closest('.msg').classList.add('picking');
    picker.querySelector('button').focus({ preventScroll: true });
  }

  function closePopovers() {
    let closed = false;
    document.querySelectorAll('.picker').forEach((p) => {
      p.closest('.msg')?.classList.remove('picking');
      p.remove();
      closed = true;
    });
    if (els.mentionList && !els.mentionList.hidden) {
      hideMentions();
      closed = true;
    }
    return closed;
  }
  document.addEventListener('pointerdown', (e) => {
    if (!e.target.closest?.('.picker, [data-test="action-react"]')) document.querySelectorAll('.picker').forEach((p) => { p.closest('.msg')?.classList.remove('picking'); p.remove(); });
  });

  async function deleteMessage(id) {
    const ok = await confirmDialog({ title: 'Delete for everyone?', body: 'This message will be deleted on every member’s devices. A record chat keeps its archived record.', ok: 'Delete' });
    if (!ok) return;
    try {
      await api('POST', `/api/chats/${enc(S.current)}/messages/${enc(id)}/delete`);
      dropMessage(id);
      reloadChatsSoon();
    } catch (err) {
      fail(err);
    }
    // The button that opened the dialog went with its message: typing goes to the composer.
    els.compose?.focus();
  }

  function startReply(id) {
    const m = S.msgs.get(id);
    if (!m) return;
    S.edit = null;
    S.reply = { id, sender: m.sender };
    renderMode();
    els.compose.focus();
  }

  function startEdit(id) {
    const m = S.msgs.get(id);
    if (!m || !m.mine || m.text == null) return;
    S.reply = null;
    S.edit = id;
    els.compose.value = m.text;
    renderMode();
    autosize();
    els.compose.focus();
    els.compose.setSelectionRange(m.text.length, m.text.length);
  }

  function cancelMode() {
    const wasEdit = !!S.edit;
    S.reply = null;
    S.edit = null;
    if (wasEdit) els.compose.value = '';
    renderMode();
    autosize();
  }

  function renderMode() {
    const bar = els.modeBar;
    if (!bar) return;
    if (!S.reply && !S.edit) {
      bar.hidden = true;
      bar.replaceChildren();
      els.composer.classList.remove('editing');
      return;
    }
    const cancel = iconButton('close', S.edit ? 'Cancel editing' : 'Cancel reply', { test: 'compose-cancel', onclick: () => { cancelMode(); els.compose.focus(); } });
    if (S.edit) {
      bar.replaceChildren(h('div', { class: 'mode-body' }, icon('edit', 'icon sm'), h('span', { class: 'mode-label', test: 'compose-mode', text: 'Editing' }), h('span', { class: 'mode-hint', text: 'Esc to cancel' })), cancel);
    } else {
      const m = S.msgs.get(S.reply.id);
      const text = m?.text ?? (m?.attachments?.length ? m.attachments.map((a) => a.name).join(', ') : 'Message');
      bar.replaceChildren(h('div', { class: 'mode-body reply-preview', test: 'reply-preview' },
        h('span', { class: 'mode-label', test: 'compose-mode', text: `Replying to ${S.reply.sender === S.session.user ? 'yourself' : S.reply.sender}` }),
        h('span', { class: 'mode-text', text })), cancel);
    }
    bar.hidden = false;
    els.composer.classList.toggle('editing', !!S.edit);
  }

  // ---------------------------------------------------------------- composer
  function renderComposer() {
    els.compose = h('textarea', {
      class: 'compose', test: 'compose', rows: '1', placeholder: 'Message', 'aria-label': 'Message',
      spellcheck: 'false', translate: 'no', autocomplete: 'off', autocorrect: 'off', autocapitalize: 'sentences',
      'aria-autocomplete': 'list', 'aria-controls': 'mention-list',
    });
    els.compose.addEventListener('keydown', composeKeys);
    els.compose.addEventListener('input', () => { autosize(); updateMentions(); });
    els.compose.addEventListener('click', updateMentions);
    els.sendBtn = h('button', { type: 'button', class: 'send', test: 'send', 'aria-label': 'Send', title: 'Send (Enter)', onclick: send }, icon('send'));
    els.attach = h('input', { type: 'file', multiple: true, test: 'attach', class: 'file-input', id: 'attach-input', 'aria-label': 'Attach files' });
    els.attach.addEventListener('change', () => {
      addFiles([...els.attach.files]);
      els.attach.value = '';
    });
    const attachLabel = h('label', { class: 'icon-btn attach-btn', for: 'attach-input', title: 'Attach files' }, icon('attach'), h('span', { class: 'sr-only', text: 'Attach files' }));
    els.timer = h('select', { class: 'timer-select', test: 'compose-timer', 'aria-label': 'Disappearing timer for this message', title: 'Disappearing timer for this message' });
    els.timer.addEventListener('change', () => els.timerWrap.classList.toggle('on', !!els.timer.value));
    els.timerWrap = h('label', { class: 'timer-wrap' }, icon('timer', 'icon sm'), els.timer);
    els.burn = h('input', { type: 'checkbox', test: 'compose-burn', class: 'burn-input', id: 'burn-input' });
    els.burnWrap = h('label', { class: 'burn-toggle', for: 'burn-input', title: 'Burn after reading' }, els.burn, icon('flame', 'icon sm'), h('span', { class: 'sr-only', text: 'Burn after reading' }));
    els.modeBar = h('div', { class: 'mode-bar', hidden: true });
    els.uploadList = h('div', { class: 'upload-list', hidden: true });
    els.mentionList = h('ul', { class: 'mention-list', id: 'mention-list', role: 'listbox', 'aria-label': 'Mention a member', hidden: true });
    els.composer = h('footer', { class: 'composer' },
      els.mentionList, els.modeBar, els.uploadList,
      h('div', { class: 'compose-row' },
        attachLabel, els.attach,
        h('div', { class: 'compose-box' }, els.compose, els.timerWrap, els.burnWrap),
        els.sendBtn));
    renderTimerOptions();
    return els.composer;
  }

  function bounds() {
    return S.detail?.bounds || S.session.policy || {};
  }

  function expireChoices() {
    const b = bounds();
    return EXPIRE_CHOICES.filter((s) => (b.min_expire_secs == null || s >= b.min_expire_secs) && (b.max_expire_secs == null || s <= b.max_expire_secs));
  }
  function burnChoices() {
    const b = bounds();
    return BURN_CHOICES.filter((s) => b.max_burn_secs == null || s <= b.max_burn_secs);
  }

  function renderTimerOptions() {
    if (!els.timer) return;
    const keep = els.timer.value;
    const chatDefault = S.detail?.expire_secs;
    const opts = [h('option', { value: '', text: chatDefault ? `Chat default (${shortDuration(chatDefault)})` : 'Timer off' })];
    const choices = expireChoices();
    // A chosen timer survives a re-render (a `chat` event) even if it is not a preset.
    if (keep && !choices.includes(Number(keep)) && Number(keep) > 0) choices.push(Number(keep));
    for (const s of choices.sort((a, b) => a - b)) opts.push(h('option', { value: String(s), text: duration(s) }));
    els.timer.replaceChildren(...opts);
    els.timer.value = [...els.timer.options].some((o) => o.value === keep) ? keep : '';
    els.timerWrap.classList.toggle('on', !!els.timer.value);
    const burnable = burnChoices().length > 0;
    els.burnWrap.hidden = !burnable;
    renderBurnDefault();
  }

  /** Where the chat burns every message, the toggle shows it on (and cannot turn it off). */
  function renderBurnDefault() {
    const chatBurn = S.detail?.burn_secs;
    els.burn.disabled = !!chatBurn;
    if (chatBurn) els.burn.checked = true;
    const label = chatBurn ? `Burn after reading: every message in this chat burns ${duration(chatBurn)} after reading` : 'Burn after reading (this message only)';
    els.burnWrap.title = label;
    els.burnWrap.querySelector('.sr-only').textContent = label;
  }

  /** After a send the per-message timer and burn go back to the chat's default. */
  function resetMessageOptions() {
    if (!els.timer) return;
    els.timer.value = '';
    renderTimerOptions(); // drops a one-off (non-preset) choice too
    els.burn.checked = !!S.detail?.burn_secs;
    renderBurnDefault();
  }

  function resetComposer() {
    if (!els.compose) return;
    resetMessageOptions();
    els.compose.value = '';
    S.reply = null;
    S.edit = null;
    for (const u of S.uploads) discardUpload(u);
    S.uploads = [];
    renderUploads();
    renderMode();
    hideMentions();
  }

  function autosize() {
    const ta = els.compose;
    if (!ta) return;
    ta.style.height = 'auto';
    ta.style.height = `${Math.min(ta.scrollHeight, 180)}px`;
  }

  function composeKeys(e) {
    if (!els.mentionList.hidden) {
      const opts = [...els.mentionList.querySelectorAll('.mention-option')];
      let i = opts.findIndex((o) => o.getAttribute('aria-selected') === 'true');
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        i = (i + (e.key === 'ArrowDown' ? 1 : opts.length - 1)) % opts.length;
        opts.forEach((o, j) => o.setAttribute('aria-selected', String(j === i)));
        els.compose.setAttribute('aria-activedescendant', opts[i].id);
        opts[i].scrollIntoView({ block: 'nearest' });
        return;
      }
      if ((e.key === 'Enter' || e.key === 'Tab') && !e.shiftKey && opts[i]) {
        e.preventDefault();
        insertMention(opts[i].dataset.user);
        return;
      }
      if (e.key === 'Escape') {
        e.preventDefault();
        hideMentions();
        return;
      }
    }
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    } else if (e.key === 'Escape' && (S.reply || S.edit)) {
      e.preventDefault();
      cancelMode();
    } else if (e.key === 'ArrowUp' && !els.compose.value && !S.edit) {
      // As in Signal: the up arrow in an empty composer edits your last message.
      const mine = [...S.msgs.values()].filter((m) => m.mine && m.kind === 'text' && m.text != null).pop();
      if (mine) {
        e.preventDefault();
        startEdit(mine.id);
      }
    }
  }

  function mentionQuery() {
    const ta = els.compose;
    const before = ta.value.slice(0, ta.selectionStart);
    const match = /(^|\s)@([\p{L}\p{N}._-]*)$/u.exec(before);
    return match ? { query: match[2], start: before.length - match[2].length - 1 } : null;
  }

  function updateMentions() {
    const q = mentionQuery();
    const members = (S.detail?.members || []).filter((m) => !m.you && !m.role);
    if (!q || !members.length) {
      hideMentions();
      return;
    }
    const found = members.filter((m) => m.user.toLowerCase().startsWith(q.query.toLowerCase())).slice(0, 8);
    if (!found.length) {
      hideMentions();
      return;
    }
    els.mentionList.replaceChildren(...found.map((m, i) => h('li', {
      class: 'mention-option', test: 'mention-option', role: 'option', id: `mention-${i}`, 'data-user': m.user, 'aria-selected': String(i === 0),
      onpointerdown: (e) => { e.preventDefault(); insertMention(m.user); },
    }, avatar(m.user, 'xs'), h('span', { text: m.user }))));
    els.mentionList.hidden = false;
    els.compose.setAttribute('aria-expanded', 'true');
    els.compose.setAttribute('aria-activedescendant', 'mention-0');
  }

  function hideMentions() {
    if (!els.mentionList) return;
    els.mentionList.hidden = true;
    els.mentionList.replaceChildren();
    els.compose?.setAttribute('aria-expanded', 'false');
    els.compose?.removeAttribute('aria-activedescendant');
  }

  function insertMention(user) {
    const q = mentionQuery();
    const ta = els.compose;
    if (!q) return;
    const end = ta.selectionStart;
    ta.value = `${ta.value.slice(0, q.start)}@${user} ${ta.value.slice(end)}`;
    const caret = q.start + user.length + 2;
    ta.setSelectionRange(caret, caret);
    hideMentions();
    autosize();
    ta.focus();
  }

  let sending = false;
  async function send() {
    if (sending || !S.current || els.compose.disabled) return;
    const text = els.compose.value;
    const chat = S.current;
    if (S.edit) {
      if (!text.trim()) return;
      sending = true;
      try {
        const m = await api('POST', `/api/chats/${enc(chat)}/messages/${enc(S.edit)}/edit`, { text });
        if (chat === S.current) {
          if (m) upsertMessage(m);
          els.compose.value = '';
          cancelMode();
        }
      } catch (err) {
        fail(err);
      } finally {
        sending = false;
      }
      return;
    }
    if (S.uploads.some((u) => !u.id)) {
      // Enter during an upload sends once the files are staged (or dropped on failure).
      sending = true;
      els.sendBtn.disabled = true;
      els.sendBtn.classList.add('waiting');
      await Promise.all(S.uploads.filter((u) => !u.id).map((u) => u.done));
      sending = false;
      els.sendBtn.disabled = false;
      els.sendBtn.classList.remove('waiting');
      if (chat !== S.current || S.edit) return;
    }
    const uploads = S.uploads.filter((u) => u.id).map((u) => u.id);
    const typed = els.compose.value;
    if (!typed.trim() && !uploads.length) return;
    const body = { text: typed.trim() ? typed : S.uploads.map((u) => u.name).join(', ') };
    if (S.reply) body.reply_to = S.reply.id;
    if (els.timer.value) body.expire_secs = Number(els.timer.value);
    if (els.burn.checked && !els.burnWrap.hidden) {
      const choices = burnChoices();
      body.burn_secs = S.detail?.burn_secs || (choices.includes(60) ? 60 : choices[choices.length - 1]);
    }
    if (uploads.length) body.uploads = uploads;
    sending = true;
    els.sendBtn.disabled = true;
    try {
      const m = await api('POST', `/api/chats/${enc(chat)}/messages`, body);
      if (chat === S.current) {
        els.compose.value = '';
        S.reply = null;
        S.uploads = [];
        resetMessageOptions();
        renderUploads();
        renderMode();
        autosize();
        if (m) upsertMessage(m, { live: true });
        scrollToBottom();
      }
      reloadChatsSoon();
    } catch (err) {
      fail(err);
    } finally {
      sending = false;
      els.sendBtn.disabled = !!S.detail?.removed;
    }
  }

  // ---------------------------------------------------------------- attachments
  let uploadKey = 0;
  function addFiles(files) {
    const b = bounds();
    if (b.files === false) {
      toast('Your organisation does not allow files in chats.');
      return;
    }
    for (const file of files) {
      if (b.max_file_bytes != null && file.size > b.max_file_bytes) {
        toast(`${file.name} is larger than the ${fileSize(b.max_file_bytes)} your organisation allows.`);
        continue;
      }
      const u = { key: ++uploadKey, name: file.name, size: file.size, id: null, progress: 0, server: null, xhr: null };
      S.uploads.push(u);
      upload(u, file);
    }
    renderUploads();
  }

  function upload(u, file) {
    const xhr = new XMLHttpRequest();
    u.xhr = xhr;
    xhr.open('POST', '/api/uploads');
    xhr.setRequestHeader('X-Vellum-CSRF', S.csrf);
    xhr.setRequestHeader('X-File-Name', encodeURIComponent(file.name));
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    let settle;
    u.done = new Promise((resolve) => { settle = resolve; });
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        // Full only once the device answered with the staged upload's id.
        u.progress = Math.min(0.99, e.loaded / e.total);
        updateUploadNode(u);
      }
    };
    xhr.onloadend = () => settle();
    xhr.onload = () => {
      u.xhr = null;
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && data?.upload_id) {
        u.id = data.upload_id;
        u.progress = 1;
        updateUploadNode(u);
      } else {
        S.uploads = S.uploads.filter((x) => x !== u);
        renderUploads();
        toast(data?.message || `Could not upload ${u.name}.`);
      }
    };
    xhr.onerror = () => {
      u.xhr = null;
      S.uploads = S.uploads.filter((x) => x !== u);
      renderUploads();
      toast(`Could not upload ${u.name}.`);
    };
    xhr.send(file);
  }

  /** Stops an upload and has the device remove the file it staged (plaintext on its disk). */
  function discardUpload(u) {
    u.xhr?.abort();
    if (u.id) api('DELETE', `/api/uploads/${enc(u.id)}`).catch(() => {});
  }

  function renderUploads() {
    if (!els.uploadList) return;
    els.uploadList.replaceChildren(...S.uploads.map((u) => {
      const bar = h('progress', { class: 'progress', test: 'upload-progress', max: '1', value: String(u.progress), 'aria-label': `Uploading ${u.name}` });
      const node = h('div', { class: 'upload', 'data-key': u.key },
        icon('file', 'icon sm'),
        h('div', { class: 'upload-main' }, h('span', { class: 'upload-name', text: u.name }), h('span', { class: 'upload-size', text: fileSize(u.size) }), bar),
        iconButton('close', `Remove ${u.name}`, { onclick: () => { discardUpload(u); S.uploads = S.uploads.filter((x) => x !== u); renderUploads(); } }));
      return node;
    }));
    els.uploadList.hidden = !S.uploads.length;
  }

  function updateUploadNode(u) {
    const node = els.uploadList?.querySelector(`[data-key="${u.key}"]`);
    if (!node) return;
    const bar = node.querySelector('progress');
    bar.value = u.progress;
    node.classList.toggle('done', !!u.id);
  }

  /** The device's upload to the delivery server, after the send. */
  function uploadServerProgress(ev) {
    if (!els.composer) return;
    let bar = els.composer.querySelector('.server-progress');
    const done = ev.total ? ev.done / ev.total : 1;
    if (done >= 1) {
      bar?.remove();
      return;
    }
    if (!bar) {
      bar = h('div', { class: 'server-progress' }, h('span', { text: 'Sending file…' }), h('progress', { class: 'progress', test: 'upload-progress', max: '1', 'aria-label': 'Sending file' }));
      els.composer.prepend(bar);
    }
    bar.querySelector('progress').value = done;
  }

  function setupDrop(zone) {
    let depth = 0;
    zone.addEventListener('dragenter', (e) => {
      if (![...(e.dataTransfer?.types || [])].includes('Files')) return;
      e.preventDefault();
      depth++;
      zone.classList.add('dragging');
    });
    zone.addEventListener('dragover', (e) => {
      if ([...(e.dataTransfer?.types || [])].includes('Files')) e.preventDefault();
    });
    zone.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) zone.classList.remove('dragging');
    });
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      depth = 0;
      zone.classList.remove('dragging');
      if (e.dataTransfer?.files?.length && !S.detail?.removed) addFiles([...e.dataTransfer.files]);
    });
  }

  function renderAttachment(m, a) {
    if (S.detail?.removed) {
      // The device no longer fetches this chat's files: say so instead of a failed download.
      return h('div', { class: 'att-wrap' }, h('span', { class: 'attachment unavailable', test: 'attachment', 'data-index': a.index, 'aria-disabled': 'true', title: 'Files are not available after you leave a chat' },
        h('span', { class: 'att-icon' }, icon('file')),
        h('span', { class: 'att-main' }, h('span', { class: 'att-name', text: a.name }), h('span', { class: 'att-size', text: `${fileSize(a.size)} · not available: you are no longer in this chat` }))));
    }
    const isImage = /^image\/(png|jpeg|gif|webp)$/.test(a.mime || '');
    const bar = h('progress', { class: 'progress', max: '1', hidden: true, 'aria-label': `Downloading ${a.name}` });
    const btn = h('button', { type: 'button', class: 'attachment', test: 'attachment', 'data-index': a.index, 'aria-label': `Download ${a.name}, ${fileSize(a.size)}` },
      h('span', { class: 'att-icon' }, icon('file')),
      h('span', { class: 'att-main' }, h('span', { class: 'att-name', text: a.name }), h('span', { class: 'att-size', text: fileSize(a.size) }), bar),
      h('span', { class: 'att-dl' }, icon('download')));
    btn.addEventListener('click', async () => {
      if (!(await outsideCopyOk(S.msgs.get(m.id) || m))) return;
      download(S.msgs.get(m.id) || m, a, btn, bar, isImage);
    });
    return h('div', { class: 'att-wrap' }, btn);
  }

  /** In a browser that is not Vellum's own (its downloads are not tracked), a file of a message
   * that expires or burns leaves Vellum's reach once saved: say so, once per session. */
  let outsideCopyAgreed = false;
  async function outsideCopyOk(m) {
    if (S.session.dedicated_browser !== false || outsideCopyAgreed) return true;
    if (m.expires_at == null && m.burn_at == null && !m.burn_secs) return true;
    const ok = await confirmDialog({
      title: 'This copy will not disappear',
      body: 'The message this file belongs to disappears, but this window is not Vellum’s own browser: a copy it saves in your downloads is outside Vellum and will not be shredded with the message. Delete it yourself when you are done.',
      ok: 'Download anyway',
      danger: false,
    });
    if (ok) outsideCopyAgreed = true;
    return ok;
  }

  function download(m, a, btn, bar, isImage) {
    if (btn.classList.contains('busy')) return;
    btn.classList.add('busy');
    bar.hidden = false;
    bar.removeAttribute('value');
    const xhr = new XMLHttpRequest();
    xhr.open('GET', `/api/chats/${enc(m.chat || S.current)}/messages/${enc(m.id)}/files/${a.index}`);
    xhr.responseType = 'blob';
    xhr.onprogress = (e) => {
      if (e.lengthComputable || a.size) bar.value = e.loaded / (e.lengthComputable ? e.total : a.size);
    };
    xhr.onloadend = () => {
      btn.classList.remove('busy');
      bar.hidden = true;
      if (xhr.status !== 200 || !S.msgs.has(m.id)) {
        if (S.msgs.has(m.id)) toast(`Could not download ${a.name}.`);
        return;
      }
      const url = URL.createObjectURL(xhr.response);
      const urls = S.blobs.get(m.id) || [];
      urls.push(url);
      S.blobs.set(m.id, urls);
      // Saved into the app profile's Downloads, which the device tracks and shreds.
      const link = h('a', { href: url, download: a.name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      btn.classList.add('done');
      if (isImage && !btn.parentElement.querySelector('img')) {
        btn.parentElement.prepend(h('img', { class: 'att-preview', src: url, alt: a.name }));
      }
    };
    xhr.send();
  }

  // ---------------------------------------------------------------- new chat
  async function loadDirectory() {
    const data = await api('GET', '/api/directory');
    S.directory = data.users || [];
    return S.directory;
  }

  async function newChatDialog() {
    let users;
    try {
      users = await loadDirectory();
    } catch (err) {
      fail(err);
      return;
    }
    const title = h('input', { id: 'nc-title', test: 'new-chat-title', autocomplete: 'off', spellcheck: 'false', translate: 'no', placeholder: 'e.g. Permits team', maxlength: '120' });
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const picker = memberPicker(users.filter((u) => !u.you), { id: 'nc', filterTest: 'member-filter', onChange: () => { if (picker.picked.size) error.hidden = true; } });
    const expire = h('select', { id: 'nc-expire', test: 'new-chat-expire' }, timerOptions(null, expireChoices(), bounds().max_expire_secs == null));
    const create = h('button', { type: 'submit', class: 'btn primary', test: 'new-chat-create', text: 'Create chat', title: 'Create chat (Ctrl+Enter)' });
    const form = h('form', { class: 'dlg-body form' },
      h('label', { for: 'nc-title', text: 'Title' }), title,
      h('div', { class: 'label-row' }, h('label', { for: 'nc-filter', text: 'Members' }), picker.count), picker.filter, picker.hint, picker.list,
      h('label', { for: 'nc-expire', text: 'Disappearing messages' }), expire,
      error,
      h('div', { class: 'dlg-actions' }, h('button', { type: 'button', class: 'btn', text: 'Cancel', onclick: () => dialog.close() }), create));
    // Enter never creates the chat by accident (with nobody or one person picked): only the
    // Create button or Ctrl/Cmd+Enter submits. Enter in the title moves on to the members.
    form.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' || e.isComposing) return;
      if (e.ctrlKey || e.metaKey) {
        e.preventDefault();
        form.requestSubmit(create);
        return;
      }
      if (e.target === title) {
        e.preventDefault();
        picker.filter.focus();
      } else if (e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT') {
        e.preventDefault(); // the picker's own keys (filter, checkboxes) handle it
      }
    });
    const dialog = openDialog('New chat', form, { cls: 'new-chat' });
    title.focus();
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      error.hidden = true;
      if (!title.value.trim()) {
        error.textContent = 'Give the chat a title.';
        error.hidden = false;
        title.focus();
        return;
      }
      if (!picker.picked.size) {
        error.textContent = 'Choose at least one other person for the chat.';
        error.hidden = false;
        picker.filter.focus();
        return;
      }
      create.disabled = true;
      const body = { title: title.value.trim(), members: [...picker.picked] };
      if (expire.value) body.expire_secs = Number(expire.value);
      try {
        const chat = await api('POST', '/api/chats', body);
        dialog.close();
        await loadChats();
        if (chat?.id) openChat(chat.id, { focusComposer: true });
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
        create.disabled = false;
      }
    });
  }

  /** A filterable list of people with checkboxes (new chat, add a member). Enter in the filter
   * toggles the first match and clears the filter; Enter or Space on a checkbox toggles it. */
  function memberPicker(users, { id, filterTest, onChange }) {
    const picked = new Set();
    const count = h('span', { class: 'muted', 'aria-live': 'polite', text: '' });
    const filter = h('input', { id: `${id}-filter`, type: 'search', test: filterTest, autocomplete: 'off', spellcheck: 'false', placeholder: 'Filter people', 'aria-describedby': `${id}-hint` });
    const hint = h('p', { class: 'muted small picker-hint', id: `${id}-hint`, text: 'Enter picks the first match.' });
    const changed = () => {
      count.textContent = picked.size ? `${picked.size} selected` : '';
      onChange?.();
    };
    const list = h('ul', { class: 'member-picker', 'aria-label': 'People' },
      users.map((u) => {
        const box = h('input', { type: 'checkbox', test: 'member-option', 'data-user': u.user, id: `${id}-mo-${u.user}` });
        box.addEventListener('change', () => {
          if (box.checked) picked.add(u.user);
          else picked.delete(u.user);
          changed();
        });
        box.addEventListener('keydown', (e) => {
          if (e.key === 'Enter' && !e.ctrlKey && !e.metaKey) {
            e.preventDefault();
            box.click();
          }
        });
        return h('li', { 'data-user': u.user }, h('label', { for: `${id}-mo-${u.user}` }, box, avatar(u.user, 'xs'), h('span', { text: u.user })));
      }));
    if (!list.childElementCount) list.append(h('li', { class: 'muted', text: 'Nobody else is in the directory yet.' }));
    const applyFilter = () => {
      const q = filter.value.trim().toLowerCase();
      for (const li of list.querySelectorAll('li[data-user]')) li.hidden = !!q && !li.dataset.user.toLowerCase().includes(q);
    };
    filter.addEventListener('input', applyFilter);
    filter.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.ctrlKey && !e.metaKey && !e.isComposing) {
        e.preventDefault();
        const q = filter.value.trim().toLowerCase();
        if (!q) return;
        // A name that starts with what was typed comes before one that merely contains it.
        const shown = [...list.querySelectorAll('li[data-user]:not([hidden])')];
        const li = shown.find((x) => x.dataset.user.toLowerCase().startsWith(q)) || shown[0];
        const first = li?.querySelector('input');
        if (first) {
          first.click();
          filter.value = '';
          applyFilter();
        }
      } else if (e.key === 'ArrowDown') {
        const first = list.querySelector('li[data-user]:not([hidden]) input');
        if (first) {
          e.preventDefault();
          first.focus();
        }
      }
    });
    const reset = () => {
      picked.clear();
      list.querySelectorAll('input').forEach((b) => { b.checked = false; });
      filter.value = '';
      applyFilter();
      changed();
    };
    return { picked, count, filter, list, hint, reset };
  }

  function timerOptions(current, choices, allowOff, offLabel = 'Off') {
    // Where the org requires a timer, "off" is no choice: the longest allowed is the default.
    if (!allowOff && current == null && choices.length) current = choices[choices.length - 1];
    const opts = [];
    if (allowOff || current == null) opts.push(h('option', { value: '', text: offLabel, selected: current == null }));
    const all = [...new Set([...choices, ...(current ? [current] : [])])].sort((a, b) => a - b);
    for (const s of all) opts.push(h('option', { value: String(s), text: duration(s), selected: s === current }));
    return opts;
  }

  // ---------------------------------------------------------------- chat settings
  function settingsDialog() {
    const d = S.detail;
    if (!d) return;
    const admin = !!d.you_admin;
    const title = h('input', { id: 'st-title', test: 'settings-title', value: d.title, autocomplete: 'off', spellcheck: 'false', translate: 'no', maxlength: '120', disabled: !admin });
    const b = bounds();
    const expire = h('select', { id: 'st-expire', test: 'settings-expire', disabled: !admin }, timerOptions(d.expire_secs ?? null, expireChoices(), b.max_expire_secs == null));
    const burn = h('select', { id: 'st-burn', test: 'settings-burn', disabled: !admin }, timerOptions(d.burn_secs ?? null, burnChoices(), true));
    const receipts = h('input', { type: 'checkbox', id: 'st-rr', test: 'settings-read-receipts', checked: !!d.read_receipts, disabled: !admin });
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const save = h('button', { type: 'submit', class: 'btn primary', test: 'settings-save', text: 'Save', disabled: !admin });
    const form = h('form', { class: 'settings-form' },
      h('label', { for: 'st-title', text: 'Title' }), title,
      h('div', { class: 'two' },
        h('div', {}, h('label', { for: 'st-expire', text: 'Disappearing messages' }), expire),
        h('div', {}, h('label', { for: 'st-burn', text: 'Burn after reading' }), burn)),
      h('label', { class: 'check-row', for: 'st-rr' }, receipts, h('span', { text: 'Read receipts' })),
      boundsHint(b),
      error,
      admin ? h('div', { class: 'dlg-actions' }, save) : h('p', { class: 'muted small', text: 'Only the chat’s admins change its settings.' }));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = {};
      if (title.value.trim() && title.value.trim() !== d.title) body.title = title.value.trim();
      const ex = expire.value ? Number(expire.value) : null;
      if (ex !== (d.expire_secs ?? null)) body.expire_secs = ex;
      const bu = burn.value ? Number(burn.value) : null;
      if (bu !== (d.burn_secs ?? null)) body.burn_secs = bu;
      if (receipts.checked !== !!d.read_receipts) body.read_receipts = receipts.checked;
      save.disabled = true;
      error.hidden = true;
      try {
        S.detail = await api('POST', `/api/chats/${enc(d.id)}/settings`, body);
        renderHeader();
        reloadChatsSoon();
        dialog.close();
        toast('Settings saved', 'info');
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
        save.disabled = false;
      }
    });

    const membersBox = h('div', { class: 'members-box' });
    const renderMembers = (det) => {
      const rows = (det.members || []).map((m) => {
        const tags = [];
        if (m.you) tags.push('you');
        if (m.admin) tags.push('admin');
        const adminBox = h('input', { type: 'checkbox', test: 'settings-admin', 'data-user': m.user, checked: !!m.admin, disabled: !det.you_admin || m.you || !!m.role, 'aria-label': `${m.user} is an admin` });
        adminBox.addEventListener('change', () => memberAction('admins', { user: m.user, admin: adminBox.checked }));
        return h('li', { class: 'member', test: 'settings-member', 'data-user': m.user },
          avatar(m.user, 'sm'),
          h('div', { class: 'member-main' }, h('span', { class: 'member-name', text: m.user }),
            h('span', { class: 'member-sub', text: [m.role, tags.join(', '), m.devices != null ? `${m.devices} device${m.devices === 1 ? '' : 's'}` : ''].filter(Boolean).join(' · ') })),
          m.role ? null : h('label', { class: 'admin-toggle', title: 'Admin' }, adminBox, h('span', { text: 'Admin' })),
          !m.you && !m.role ? iconButton('shield', `Safety number with ${m.user}`, { onclick: () => safetyDialog(m.user) }) : null,
          det.you_admin && !m.you && !m.role ? iconButton('close', `Remove ${m.user}`, { test: 'settings-remove', 'data-user': m.user, class: 'icon-btn danger', onclick: () => removeMember(m.user) }) : null);
      });
      // The same picker as a new chat, over the directory (people not in the chat yet).
      const candidates = (S.directory || []).filter((u) => !u.you && !(det.members || []).some((m) => m.user === u.user));
      const addBtn = h('button', { type: 'button', class: 'btn', test: 'settings-add', text: 'Add', disabled: true });
      const picker = memberPicker(candidates, { id: 'st-add', filterTest: 'settings-add-member', onChange: () => {
        addBtn.disabled = !picker.picked.size;
        addBtn.textContent = picker.picked.size > 1 ? `Add ${picker.picked.size}` : 'Add';
      } });
      // Typing a name the picker does not list still works (the device checks the directory).
      picker.filter.addEventListener('input', () => { addBtn.disabled = !picker.picked.size && !picker.filter.value.trim(); });
      addBtn.addEventListener('click', () => {
        const add = picker.picked.size ? [...picker.picked] : [picker.filter.value.trim()].filter(Boolean);
        if (add.length) memberAction('members', { add });
      });
      membersBox.replaceChildren(
        h('h3', { text: `${(det.members || []).length} members` }),
        h('ul', { class: 'member-list' }, rows),
        det.you_admin ? h('div', { class: 'add-box' },
          h('div', { class: 'label-row' }, h('label', { for: 'st-add-filter', text: 'Add a member' }), picker.count),
          h('div', { class: 'add-row' }, picker.filter, addBtn), picker.hint, candidates.length || S.directory ? picker.list : null) : null);
    };
    const memberAction = async (what, body) => {
      try {
        const det = await api('POST', `/api/chats/${enc(d.id)}/${what}`, body);
        if (det) {
          S.detail = det;
          renderHeader();
          renderMembers(det);
        }
        reloadChatsSoon();
      } catch (err) {
        fail(err);
        renderMembers(S.detail);
      }
    };
    const removeMember = async (user) => {
      if (await confirmDialog({ title: `Remove ${user}?`, body: `${user} will no longer receive this chat’s messages.`, ok: 'Remove' })) memberAction('members', { remove: [user] });
    };
    renderMembers(d);
    if (!S.directory) loadDirectory().then(() => renderMembers(S.detail)).catch(() => {});

    const leave = h('button', { type: 'button', class: 'btn danger-outline', test: 'settings-leave' }, icon('leave', 'icon sm'), 'Leave chat');
    leave.addEventListener('click', async () => {
      if (!(await confirmDialog({ title: 'Leave this chat?', body: 'You will stop receiving its messages. Someone must add you back to return.', ok: 'Leave' }))) return;
      try {
        await api('POST', `/api/chats/${enc(d.id)}/leave`);
        S.left.add(d.id);
        dialog.close();
        loadDetail(d.id);
        loadChats();
      } catch (err) {
        fail(err);
      }
    });
    const dialog = openDialog('Chat settings', h('div', { class: 'dlg-body' }, form, membersBox, h('div', { class: 'leave-row' }, leave)), { cls: 'settings' });
  }

  function boundsHint(b) {
    const parts = [];
    if (b.min_expire_secs != null) parts.push(`at least ${duration(b.min_expire_secs)}`);
    if (b.max_expire_secs != null) parts.push(`at most ${duration(b.max_expire_secs)}`);
    if (!parts.length && b.max_burn_secs == null) return null;
    const burn = b.max_burn_secs != null ? ` Burn after reading: at most ${duration(b.max_burn_secs)}.` : '';
    return h('p', { class: 'muted small', text: `${parts.length ? `Your organisation’s policy: timers ${parts.join(' and ')}.` : ''}${burn}`.trim() });
  }

  /** 60 digits as 12 blocks of 5, in 3 rows of 4 (as Signal shows it). */
  function safetyNumber(number) {
    const digits = String(number).replace(/\D/g, '');
    const blocks = digits.match(/.{1,5}/g) || [String(number)];
    return h('p', { class: 'safety-number', 'aria-label': `Safety number: ${blocks.join(', ')}` },
      blocks.map((b) => h('span', { class: 'sn-block', 'aria-hidden': 'true', text: b })));
  }

  async function safetyDialog(user) {
    let s;
    try {
      s = await api('GET', `/api/safety/${enc(user)}`);
    } catch (err) {
      fail(err);
      return;
    }
    const status = h('p', { class: 'muted', text: s.confirmed ? 'You confirmed this safety number.' : 'Compare it with the number on their device, in person or on a call.' });
    const confirm = h('button', { type: 'button', class: 'btn primary', text: 'Mark as verified', disabled: !!s.confirmed });
    confirm.addEventListener('click', async () => {
      try {
        await api('POST', `/api/safety/${enc(user)}/confirm`);
        status.textContent = 'You confirmed this safety number.';
        confirm.disabled = true;
      } catch (err) {
        fail(err);
      }
    });
    openDialog(`Safety number with ${user}`, h('div', { class: 'dlg-body' }, safetyNumber(s.number), status, h('div', { class: 'dlg-actions' }, confirm)));
  }

  // ---------------------------------------------------------------- devices
  async function showDevices() {
    setNav('devices');
    S.current = null;
    S.detail = null;
    clearMessages();
    els.conv = null;
    els.messages = null;
    renderChatList();
    els.devicesBox = h('div', { class: 'devices-body' }, h('p', { class: 'muted', text: 'Loading…' }));
    const back = iconButton('back', 'Back to chats', { class: 'icon-btn back-btn', onclick: () => { setNav('chats'); renderEmptyPane(); focusChatList(); } });
    els.pane.replaceChildren(h('section', { class: 'devices-screen', 'aria-labelledby': 'devices-title' },
      h('header', { class: 'conv-head' }, back, h('div', { class: 'conv-titles' }, h('h2', { class: 'conv-title', id: 'devices-title', text: 'Your devices' }),
        h('div', { class: 'conv-sub', text: 'Every device of yours holds its own keys. Approve a new one by comparing its code.' }))),
      els.devicesBox));
    els.shell.classList.add('show-pane');
    await loadDevices();
    els.pane.querySelector('h2')?.focus?.();
  }

  let devicesSeq = 0;
  async function loadDevices() {
    const seq = ++devicesSeq;
    const onScreen = S.view === 'devices' && !!els.devicesBox;
    let data;
    try {
      data = await api('GET', '/api/devices');
    } catch (err) {
      if (onScreen && err.status !== 401) fail(err);
      return;
    }
    if (seq !== devicesSeq) return; // a newer answer is on its way
    S.devices = data;
    markDevicesDot(data);
    // Every `devices` event re-renders the screen (a new code, a state change) without a click.
    if (S.view === 'devices' && els.devicesBox) renderDevices(data);
    if (S.session.pending && data.devices?.some((d) => d.this && d.state === 'approved')) becameApproved();
  }

  /** The device waiting for approval was approved: on to the chat list by itself. */
  async function becameApproved() {
    if (!S.session.pending) return;
    S.session.pending = false;
    S.pending = false;
    try {
      S.session = await api('GET', '/api/session');
      S.session.pending = false;
    } catch {
      // The list below still loads.
    }
    renderConnection();
    setNav('chats');
    renderEmptyPane();
    await loadChats();
    toast('This device is approved. Your chats will appear here.', 'info');
    focusChatList();
  }

  function markDevicesDot(data) {
    const thisApproved = data.devices?.some((d) => d.this && d.state === 'approved');
    const waiting = thisApproved && data.devices.some((d) => d.state === 'pending' && !d.this);
    if (els.devicesDot) els.devicesDot.hidden = !waiting;
  }

  /** The device's notices speak the command line's language; the window says it in its own
   * terms (a pending device's row already offers "Approve…"). */
  function windowNotice(n, me) {
    let m = /^device (\S+) is pending:/.exec(n);
    if (m) return null;
    m = /^device (\S+) was approved at upgrade/.exec(n);
    if (m) return `Device ${m[1]} was approved when Vellum was upgraded. Confirm it with Approve… below (open Devices in Vellum on that device first), or revoke it.`;
    if (me && me.state === 'pending' && !/^WARNING/.test(n)) return null; // the waiting card says it
    let text = n.replace(/^WARNING: /, '');
    text = text.replace(/,? unless you run `vellum devices veto-reset`/, '. If you did not ask for this, contact your administrator at once');
    if (text.includes('`vellum')) text = text.slice(0, text.search(/[:;(]?[^:;(]*`vellum/)).trim() || 'Your devices need attention.';
    return text;
  }

  const approveNotes = new Map(); // device id -> the last approval step's message
  const approveStarted = new Set(); // pending devices whose approval was started here (step 1 done)
  function renderDevices(data) {
    const box = els.devicesBox;
    const kids = [];
    // A re-render (a `devices` event) keeps what was typed and where the focus was.
    const typed = new Map([...box.querySelectorAll('[data-test="approve-code"]')].map((i) => [i.id, i.value]));
    const focusedId = document.activeElement?.id;
    const me = (data.devices || []).find((d) => d.this);
    const approvedHere = me?.state === 'approved';
    if (data.pending_code) {
      kids.push(h('div', { class: 'pending-card', role: 'status' },
        h('h3', { text: 'Waiting for approval' }),
        h('p', { class: 'muted', text: 'On a device of yours that is already approved, open Vellum, go to Devices, press “Approve…” next to this device and type this code:' }),
        h('p', { class: 'pending-code', test: 'pending-code', 'aria-label': `Code: ${[...data.pending_code].join(' ')}`, text: data.pending_code }),
        h('p', { class: 'muted small', text: 'This screen moves on by itself once the device is approved. Until then it receives no messages.' })));
    } else if (me && me.state === 'pending') {
      kids.push(h('div', { class: 'pending-card', role: 'status' }, h('h3', { text: 'Waiting for approval' }),
        h('p', { class: 'muted', text: 'On a device of yours that is already approved, open Vellum, go to Devices and press “Approve…” next to this device. A code will then appear here.' })));
    }
    for (const n of data.notices || []) {
      const text = windowNotice(n, me);
      if (text) kids.push(h('div', { class: 'banner notice' }, icon('shield'), h('span', { text })));
    }
    const list = h('ul', { class: 'device-list' });
    const pendingIds = new Set();
    for (const d of data.devices || []) {
      const actions = [];
      if (approvedHere && d.state === 'pending' && !d.this) {
        pendingIds.add(d.id);
        actions.push(approveBox(d, typed));
      }
      if (approvedHere && !d.this && d.state !== 'revoked') {
        actions.push(h('button', { type: 'button', class: 'btn danger-outline small', test: 'revoke', text: 'Revoke', onclick: async () => {
          if (!(await confirmDialog({ title: 'Revoke this device?', body: `Device ${d.id} will lose access to your chats. This cannot be undone.`, ok: 'Revoke' }))) return;
          try {
            await api('POST', `/api/devices/${enc(d.id)}/revoke`);
            loadDevices();
          } catch (err) {
            fail(err);
          }
        } }));
      }
      const sub = [];
      if (d.enrolled_at) sub.push(`enrolled ${fmtDate.format(d.enrolled_at)}`);
      if (d.last_seen) sub.push(`last seen ${listTime(d.last_seen)}`);
      list.append(h('li', { class: `device state-${d.state}`, test: 'device', 'data-device-id': d.id, 'data-state': d.state },
        h('span', { class: 'device-icon' }, icon('devices')),
        h('div', { class: 'device-main' },
          h('div', { class: 'device-top' }, h('span', { class: 'device-name', title: d.id, text: d.this ? 'This device' : `Device ${d.id.length > 12 ? `${d.id.slice(0, 8)}…` : d.id}` }),
            h('span', { class: `state-badge ${d.state}`, text: d.state === 'pending' ? 'waiting for approval' : d.state })),
          h('span', { class: 'device-sub', text: [d.id, ...sub].join(' · ') }),
          d.warning ? h('span', { class: 'device-warning' }, icon('alert', 'icon xs'), h('span', { text: d.warning })) : null,
          actions)));
    }
    // A device no longer pending forgets its half-done approval.
    for (const id of [...approveStarted]) if (!pendingIds.has(id)) approveStarted.delete(id);
    kids.push(list);
    box.replaceChildren(...kids);
    if (focusedId) document.getElementById(focusedId)?.focus();
  }

  /** Approving a new device, in two steps: "Approve…" starts the exchange (the new device then
   * shows a code), then the code typed here and "Confirm" finish it. */
  function approveBox(d, typed) {
    const started = approveStarted.has(d.id);
    const msg = h('p', { class: 'muted small approve-msg', role: 'status', text: approveNotes.get(d.id) || '' });
    const codeInput = h('input', { test: 'approve-code', id: `code-${d.id}`, autocomplete: 'off', spellcheck: 'false', inputmode: 'numeric', placeholder: 'Code', 'aria-label': `Code shown on device ${d.id}` });
    if (typed.has(codeInput.id)) codeInput.value = typed.get(codeInput.id);
    const approve = h('button', { type: 'button', class: 'btn primary', test: 'approve', id: `approve-${d.id}`, text: 'Approve…', hidden: started });
    const confirm = h('button', { type: 'button', class: 'btn primary', test: 'approve-confirm', id: `confirm-${d.id}`, text: 'Confirm' });
    const cancel = h('button', { type: 'button', class: 'btn', id: `cancel-${d.id}`, text: 'Cancel' });
    const step2 = h('div', { class: 'approve-step2', hidden: !started },
      h('label', { for: codeInput.id, class: 'small', text: 'Type the code shown on the new device' }),
      h('div', { class: 'add-row' }, codeInput, confirm, cancel));
    const finish = async () => {
      const code = codeInput.value.trim();
      if (!code) {
        msg.textContent = 'Type the code the new device shows first.';
        codeInput.focus();
        return;
      }
      confirm.disabled = true;
      try {
        const r = await api('POST', `/api/devices/${enc(d.id)}/approve`, { code });
        if (r?.step === 'approved') {
          approveStarted.delete(d.id);
          approveNotes.delete(d.id);
          toast('Device approved', 'info');
          loadDevices();
        } else {
          msg.textContent = 'The approval did not finish: press Approve… again.';
          approveNotes.set(d.id, msg.textContent);
        }
      } catch (err) {
        msg.textContent = err.message;
        approveNotes.set(d.id, err.message);
      } finally {
        confirm.disabled = false;
      }
    };
    approve.addEventListener('click', async () => {
      // Kept for the browser tests' hooks: with the code already typed after step 1, it confirms.
      if (approveStarted.has(d.id) && codeInput.value.trim()) {
        finish();
        return;
      }
      approve.disabled = true;
      try {
        const r = await api('POST', `/api/devices/${enc(d.id)}/approve`, {});
        if (r?.step === 'approved') {
          loadDevices();
          return;
        }
        approveStarted.add(d.id);
        msg.textContent = 'The new device now shows a code.';
        approveNotes.set(d.id, msg.textContent);
        approve.hidden = true;
        step2.hidden = false;
        codeInput.focus();
      } catch (err) {
        msg.textContent = err.message;
        approveNotes.set(d.id, err.message);
      } finally {
        approve.disabled = false;
      }
    });
    confirm.addEventListener('click', finish);
    cancel.addEventListener('click', () => {
      approveStarted.delete(d.id);
      approveNotes.delete(d.id);
      codeInput.value = '';
      msg.textContent = '';
      step2.hidden = true;
      approve.hidden = false;
      approve.focus();
    });
    codeInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        finish();
      }
    });
    return h('div', { class: 'approve-box' }, approve, step2, msg);
  }

  // ---------------------------------------------------------------- go
  boot();
})();
