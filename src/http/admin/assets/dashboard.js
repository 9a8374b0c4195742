// The dashboard: every conversation with its status, assignee, unread count, last message and
// waiting time; filters, text search, paging, bulk actions; refreshed as events arrive.
import { api, query } from './api.js';
import { badge, duration, fill, h, problem, secondsSince, when } from './dom.js';

const PAGE_SIZE = 20;

function filtersFrom(params) {
  return {
    status: params.get('status') || '',
    assignee: params.get('assignee') || '',
    q: params.get('q') || '',
    // A search that stopped among the newest messages goes on below this message id.
    before: params.get('before') || '',
    page: Math.max(1, Number(params.get('page')) || 1),
  };
}

function hashOf(filters) {
  return `#/dashboard${query(filters.page > 1 ? filters : { ...filters, page: '' })}`;
}

/** The list query for the filters: `assignee` is '', 'me', 'none' or an admin id. */
function listQuery(filters, me) {
  const assignee = filters.assignee === 'me' ? me.user_id : filters.assignee;
  return query({
    status: filters.status,
    assigned_to: assignee && assignee !== 'none' ? assignee : '',
    unassigned: filters.assignee === 'none' ? 'true' : '',
    page: filters.page,
    limit: PAGE_SIZE,
  });
}

function matchesFilters(conversation, filters, me) {
  if (filters.status && conversation.status !== filters.status) return false;
  if (filters.assignee === 'none') return conversation.admin_id === null;
  if (filters.assignee === 'me') return conversation.admin_id === me.user_id;
  if (filters.assignee) return String(conversation.admin_id) === filters.assignee;
  return true;
}

/** Text search: the matching messages' conversations, each with the first match's context. */
async function searchPage(filters, me) {
  const found = await api('GET', `/chat/search${query({
    q: filters.q, before_id: filters.before, page: filters.page, limit: 50,
  })}`);
  const contexts = new Map();
  for (const hit of found.results) {
    if (!contexts.has(hit.conversation_id)) contexts.set(hit.conversation_id, hit.context);
  }
  const conversations = await Promise.all([...contexts.keys()].map(
    (id) => api('GET', `/chat/conversations/${id}`).catch(() => null)));
  return {
    conversations: conversations
      .filter((c) => c && matchesFilters(c, filters, me))
      .map((c) => ({ ...c, match: contexts.get(c.id) })),
    pagination: found.pagination,
    exact: found.total_is_exact,
    nextBefore: found.next_before_id,
  };
}

/** The user's presence: online now, or when they were last seen. */
function presence(conversation) {
  if (conversation.user_online) {
    return h('span', { class: 'presence online', title: 'online' }, 'online');
  }
  const seen = conversation.user_last_seen_at;
  return h('span', { class: 'presence offline', title: seen ? `last seen ${when(seen)}` : 'not seen yet' },
    seen ? `seen ${duration(secondsSince(seen))} ago` : 'offline');
}

function waiting(conversation) {
  // Waiting: the user spoke last in an active conversation and nobody has answered yet.
  const last = conversation.last_message;
  if (conversation.status !== 'active' || !last || last.sender_role !== 'user') return null;
  return secondsSince(conversation.last_message_at);
}

export function mount(view, context, params) {
  const { me, canWrite, live } = context;
  const filters = filtersFrom(params);
  const selected = new Set();
  let page = null;
  let timer = null;

  const status = h('select', { name: 'status', 'aria-label': 'Status' },
    ['', 'active', 'closed', 'archived'].map((s) => h('option', { value: s, selected: s === filters.status }, s || 'any status')));
  const assignee = h('input', {
    name: 'assignee', list: 'assignee-choices', placeholder: 'anyone', size: 10,
    value: filters.assignee, 'aria-label': 'Assignee (me, none or an admin id)',
  });
  const choices = h('datalist', { id: 'assignee-choices' },
    h('option', { value: 'me' }, 'assigned to me'), h('option', { value: 'none' }, 'unassigned'));
  const text = h('input', {
    name: 'q', type: 'search', placeholder: 'search messages', value: filters.q, 'aria-label': 'Text search',
  });
  const form = h('form', { class: 'filters', id: 'filters' },
    h('label', {}, 'Status ', status),
    h('label', {}, 'Assignee ', assignee, choices),
    h('label', { class: 'grow' }, 'Text ', text),
    h('button', { type: 'submit' }, 'Apply'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    window.location.hash = hashOf({
      status: status.value, assignee: assignee.value.trim(), q: text.value.trim(), before: '', page: 1,
    });
  });

  const table = h('tbody', { id: 'conversations' });
  const pager = h('div', { class: 'pager' });
  const outcome = h('div', { class: 'bulk-outcome', id: 'bulk-outcome', 'aria-live': 'polite' });
  const bulkAdmin = h('input', { name: 'bulk-admin', size: 16, placeholder: 'admin id', value: String(me.user_id), 'aria-label': 'Assign to admin id' });
  const selectedCount = h('span', { class: 'selected-count' }, '0 selected');
  const bulk = canWrite
    ? h('div', { class: 'bulk', id: 'bulk' },
      selectedCount,
      h('button', { type: 'button', onclick: () => runBulk('close') }, 'Close'),
      h('button', { type: 'button', onclick: () => runBulk('archive') }, 'Archive'),
      h('span', { class: 'assign' }, bulkAdmin,
        h('button', { type: 'button', onclick: () => runBulk('assign') }, 'Assign')))
    : null;
  const message = h('div');
  const all = h('input', { type: 'checkbox', 'aria-label': 'Select all on this page', onchange: () => {
    for (const c of page ? page.conversations : []) {
      if (all.checked) selected.add(c.id); else selected.delete(c.id);
    }
    render();
  } });

  fill(view,
    h('section', { class: 'dashboard' },
      h('div', { class: 'title-row' },
        h('h1', {}, 'Conversations'),
        h('span', { class: 'hint' }, filters.q ? `messages matching “${filters.q}”` : 'most recently active first')),
      form, bulk, outcome, message,
      h('table', { class: 'list' },
        h('thead', {}, h('tr', {},
          canWrite ? h('th', {}, all) : null,
          h('th', {}, '#'), h('th', {}, 'User'), h('th', {}, 'Status'), h('th', {}, 'Assignee'),
          h('th', { class: 'num' }, 'Unread'), h('th', {}, 'Last message'), h('th', {}, 'Waiting'),
          h('th', {}, 'Last activity'))),
        table),
      pager));

  function row(c) {
    const wait = waiting(c);
    const last = c.last_message;
    const box = canWrite
      ? h('td', {}, h('input', {
        type: 'checkbox', checked: selected.has(c.id), 'aria-label': `Select conversation ${c.id}`,
        onchange: (event) => {
          if (event.target.checked) selected.add(c.id); else selected.delete(c.id);
          updateCount();
        },
      }))
      : null;
    return h('tr', { dataset: { id: String(c.id) }, class: c.unread_count ? 'unread' : '' },
      box,
      h('td', {}, h('a', { href: `#/conversations/${c.id}` }, `#${c.id}`)),
      h('td', {}, c.user_identifier, h('span', { class: 'dim' }, ` (${c.user_id}) `), presence(c)),
      h('td', {}, badge(c.status)),
      h('td', {}, c.admin_id === null ? h('span', { class: 'dim' }, 'unassigned') : `#${c.admin_id}`),
      h('td', { class: 'num' }, c.unread_count ? h('span', { class: 'count' }, String(c.unread_count)) : '0'),
      h('td', { class: 'last' },
        h('a', { href: `#/conversations/${c.id}`, class: 'message-preview' },
          last ? [h('span', { class: `who ${last.sender_role}` }, `${last.sender_role}: `),
            last.message_type === 'text' ? last.content : `[${last.message_type}] ${last.content}`] : '–'),
        c.match ? h('div', { class: 'match dim' }, c.match) : null),
      h('td', { class: wait !== null && wait > 300 ? 'late' : '' }, wait === null ? '–' : duration(wait)),
      h('td', {}, when(c.last_message_at || c.updated_at)));
  }

  function updateCount() {
    if (selectedCount) fill(selectedCount, `${selected.size} selected`);
  }

  function render() {
    if (!page) return;
    if (page.conversations.length === 0) {
      fill(table, h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No conversations match.')));
    } else {
      fill(table, page.conversations.map(row));
    }
    all.checked = page.conversations.length > 0 && page.conversations.every((c) => selected.has(c.id));
    updateCount();
    const { page: number, pages, total } = page.pagination;
    const counted = filters.q
      ? `${total} matching messages${page.exact === false ? (filters.before ? ' in these older messages' : ' among the newest') : ''}`
      : `${total} conversations`;
    fill(pager,
      h('a', { class: number > 1 ? 'button' : 'button disabled', href: number > 1 ? hashOf({ ...filters, page: number - 1 }) : undefined }, '‹ Previous'),
      h('span', {}, `Page ${number} of ${Math.max(1, pages)} · ${counted}`),
      h('a', { class: number < pages ? 'button' : 'button disabled', href: number < pages ? hashOf({ ...filters, page: number + 1 }) : undefined }, 'Next ›'),
      filters.before
        ? h('a', { class: 'button', id: 'search-newest', href: hashOf({ ...filters, before: '', page: 1 }) }, 'Newest messages')
        : null,
      page.nextBefore
        ? h('a', { class: 'button', id: 'search-older', href: hashOf({ ...filters, before: page.nextBefore, page: 1 }) }, 'Search older messages ›')
        : null);
  }

  async function load() {
    try {
      page = filters.q ? await searchPage(filters, me) : await api('GET', `/chat/conversations${listQuery(filters, me)}`);
      fill(message);
      render();
    } catch (error) {
      fill(message, problem(error));
    }
  }

  async function runBulk(action) {
    const ids = [...selected];
    if (ids.length === 0) {
      fill(outcome, h('p', { class: 'hint' }, 'Select conversations first.'));
      return;
    }
    const body = { conversation_ids: ids, action };
    if (action === 'assign') body.admin_id = Number(bulkAdmin.value);
    try {
      const result = await api('POST', '/chat/conversations/bulk', body);
      fill(outcome, h('div', { class: 'card' },
        h('strong', {}, `${action}: ${result.succeeded} done, ${result.failed} refused`),
        h('ul', { class: 'outcomes' }, result.results.map((r) => h('li', {
          class: r.status, dataset: { id: String(r.conversation_id) },
        }, `#${r.conversation_id}: `, r.status === 'success' ? 'done' : `${r.error_code} — ${r.message}`)))));
      selected.clear();
      load();
    } catch (error) {
      fill(outcome, problem(error));
    }
  }

  // Any message, status change or assignment may change this page: reload it, at most a few
  // times a second.
  let pending = null;
  const refresh = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      load();
    }, 200);
  };
  const stops = ['new_message', 'message_updated', 'message_deleted', 'conversation_status', 'conversation_assigned', 'message_read', 'connect']
    .map((event) => live.on(event, refresh));
  // A user coming or going changes only their rows: no reload.
  stops.push(live.on('presence', (change) => {
    if (!page || change.role !== 'user') return;
    let changed = false;
    for (const c of page.conversations) {
      if (c.user_id === change.user_id) {
        c.user_online = change.online;
        c.user_last_seen_at = change.last_seen_at;
        changed = true;
      }
    }
    if (changed) render();
  }));
  // Waiting times grow while nobody answers.
  timer = setInterval(render, 15000);
  load();

  return () => {
    stops.forEach((stop) => stop());
    clearInterval(timer);
    if (pending) clearTimeout(pending);
  };
}
