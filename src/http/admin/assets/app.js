// The web manager's shell: sign-in, the top bar, the live feed and the hash routes
// (#/dashboard, #/conversations/ID, #/analytics, #/audit/ID).
import { AppError, SIGNED_OUT_EVENT, api, connectLive, signIn, signOut, whoAmI } from './api.js';
import { fill, h, problem } from './dom.js';
import * as dashboard from './dashboard.js';
import * as conversation from './conversation.js';
import * as analytics from './analytics.js';
import * as audit from './audit.js';

const view = document.getElementById('view');
const topbar = document.getElementById('topbar');
const liveBadge = document.getElementById('live');
let context = null;
let unmount = null;

function showSignIn(message) {
  topbar.hidden = true;
  const token = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true,
    placeholder: 'session token', 'aria-label': 'Session token',
  });
  const status = h('p', { class: 'problem', role: 'alert' }, message || '');
  const form = h('form', { class: 'card sign-in', id: 'sign-in' },
    h('h1', {}, 'chatd web manager'),
    h('p', { class: 'hint' }, 'Sign in with an admin or auditor session token (chatd session create --role admin ...).'),
    h('label', { for: 'token' }, 'Session token'),
    token,
    h('button', { type: 'submit' }, 'Sign in'),
    status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    fill(status, '');
    try {
      enter(await signIn(token.value.trim()));
    } catch (error) {
      fill(status, error.message);
    }
  });
  fill(view, form);
  token.focus();
}

function setLive(state) {
  liveBadge.textContent = state;
  liveBadge.className = `live ${state}`;
}

/** An admin's away switch: while away, automatic assignment passes them by. */
function awaySwitch(me) {
  const button = h('button', { type: 'button', id: 'away', class: 'quiet' }, 'Available');
  const show = (away) => {
    button.dataset.away = String(away);
    fill(button, away ? 'Away' : 'Available');
    button.title = away ? 'away: no conversations are assigned to you automatically; click to be available'
      : 'available: click to be away';
  };
  button.addEventListener('click', async () => {
    try {
      const mine = await api('PUT', '/chat/presence', { status: button.dataset.away === 'true' ? 'available' : 'away' });
      show(mine.away);
    } catch (error) {
      button.title = error.message;
    }
  });
  api('GET', '/chat/presence/admins')
    .then(({ admins }) => show(admins.some((a) => a.admin_id === me.user_id && a.away)))
    .catch(() => show(false));
  return button;
}

function enter(me) {
  context = { me, canWrite: me.role === 'admin', live: connectLive(setLive) };
  document.body.classList.toggle('read-only', !context.canWrite);
  fill(document.getElementById('who'), `${me.identifier} (${me.role} #${me.user_id})`,
    context.canWrite ? awaySwitch(me) : null);
  topbar.hidden = false;
  if (!window.location.hash || window.location.hash === '#' || window.location.hash === '#/') {
    window.location.hash = '#/dashboard';
  } else {
    route();
  }
}

function parseHash() {
  const raw = window.location.hash.replace(/^#/, '') || '/dashboard';
  const [path, search] = raw.split('?');
  const parts = path.split('/').filter(Boolean);
  return { parts, params: new URLSearchParams(search || '') };
}

function route() {
  if (!context) return;
  if (unmount) {
    unmount();
    unmount = null;
  }
  const { parts, params } = parseHash();
  for (const link of document.querySelectorAll('[data-nav]')) {
    const current = link.dataset.nav === parts[0]
      || (link.dataset.nav === 'dashboard' && parts[0] === 'conversations');
    link.classList.toggle('current', current);
  }
  const id = Number(parts[1]);
  let mounted;
  try {
    if (parts[0] === 'conversations' && Number.isSafeInteger(id) && id > 0) {
      mounted = conversation.mount(view, context, id);
    } else if (parts[0] === 'analytics') {
      mounted = analytics.mount(view, context, params);
    } else if (parts[0] === 'audit') {
      mounted = audit.mount(view, context, Number.isSafeInteger(id) && id > 0 ? id : null, params);
    } else {
      mounted = dashboard.mount(view, context, params);
    }
  } catch (error) {
    fill(view, problem(error));
  }
  unmount = typeof mounted === 'function' ? mounted : null;
}

window.addEventListener('hashchange', route);

function leave(message) {
  if (unmount) unmount();
  unmount = null;
  if (context) context.live.close();
  context = null;
  showSignIn(message);
}

document.getElementById('sign-out').addEventListener('click', async () => {
  try {
    await signOut();
  } catch {
    // Signed out or not, the page forgets the session.
  }
  leave('Signed out.');
});

window.addEventListener(SIGNED_OUT_EVENT, () => {
  if (context) leave('The session has ended; sign in again.');
});

async function start() {
  try {
    enter(await whoAmI());
  } catch (error) {
    if (error instanceof AppError && (error.status === 401 || error.status === 403)) {
      showSignIn(error.status === 403 ? error.message : '');
    } else {
      fill(view, problem(error));
    }
  }
}

start();
