// One conversation: its messages (images shown, files linked, edits marked, deletions as
// tombstones), read receipts, the user's typing indicator, and for admins a reply box (with
// their own typing indicator), editing their own messages, removing any message with a reason,
// assign, close, reopen and archive.
import { api, query } from './api.js';
import { badge, fill, h, localLink, problem, when } from './dom.js';

const PAGE = 50;
/** A typing indicator that is not renewed fades after this long. */
const TYPING_FADES_MS = 8000;
/** The admin counts as stopped typing after this long without a key. */
const TYPING_IDLE_MS = 3000;

/** 20 B, 3.4 KB, 12 MB: a file's size as a bubble shows it. */
function readableSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const shown = unit === 0 || value >= 10 ? Math.round(value) : Math.round(value * 10) / 10;
  return `${shown} ${units[unit]}`;
}

/** The largest picture a bubble shows (the `img.attachment` rule's limits). */
const PICTURE_BOX = { width: 280, height: 240 };

function fitted(width, height) {
  const scale = Math.min(1, PICTURE_BOX.width / width, PICTURE_BOX.height / height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

function messageBody(message) {
  // Erased with its person: ids, sender and time stay, the text and the file are gone.
  if (message.erased) return h('div', { class: 'erased' }, 'erased');
  if (message.deleted) {
    const by = message.deleted_by === 'user' ? 'withdrawn by its sender' : `removed by ${message.deleted_by || 'staff'}`;
    return h('div', { class: 'deleted' }, `message deleted (${by})`);
  }
  const link = message.file_url ? localLink(message.file_url) : null;
  if (message.message_type === 'image' && link) {
    // The pixel size (when the message carries it), scaled into the bubble, reserves the
    // picture's space before it loads, so the list does not jump.
    const size = message.width && message.height ? fitted(message.width, message.height) : {};
    return h('a', { href: link, target: '_blank', rel: 'noopener' },
      h('img', { src: link, alt: message.content || message.file_name || 'image', class: 'attachment', ...size }),
      h('div', { class: 'caption' }, message.content));
  }
  if (message.message_type === 'file' && link) {
    // A bare `download`: the browser saves under the server's name, which ends in the detected
    // type's extension, rather than under the caption.
    const details = [message.file_name, message.file_size == null ? '' : readableSize(message.file_size)]
      .filter(Boolean).join(' · ');
    return h('div', {},
      h('a', { href: link, class: 'file', download: true }, h('span', { class: 'file-kind' }, 'file'),
        h('span', { class: 'file-name' }, details || 'download')),
      message.content ? h('div', { class: 'caption' }, message.content) : null);
  }
  return h('div', { class: 'text' }, message.content);
}

export function mount(view, context, id) {
  const { me, canWrite, live } = context;
  const messages = new Map();
  let conversation = null;
  let typingTimer = null;
  let typingSince = null;
  let idleTimer = null;
  let closed = false;
  /** The message whose edit or removal form is open: `{ id, mode: 'edit' | 'delete' }`. */
  let editing = null;

  const header = h('div', { class: 'conversation-header' });
  const actions = h('div', { class: 'actions', id: 'actions' });
  const notice = h('div', { 'aria-live': 'polite' });
  const list = h('ol', { class: 'messages', id: 'messages' });
  const older = h('button', { type: 'button', class: 'quiet', hidden: true, onclick: loadOlder }, 'Load older messages');
  const typing = h('div', { class: 'typing', id: 'typing', hidden: true });
  const text = h('textarea', {
    id: 'reply', name: 'reply', rows: 3, maxlength: 5000, placeholder: 'Write a reply (Enter sends, Shift+Enter for a new line)',
    'aria-label': 'Reply',
  });
  const reply = canWrite
    ? h('form', { class: 'reply', id: 'reply-form' }, text, h('button', { type: 'submit' }, 'Send'))
    : h('p', { class: 'hint read-only-note' }, 'Read only: auditors cannot reply or change conversations.');

  fill(view, h('section', { class: 'conversation' },
    h('p', {}, h('a', { href: '#/dashboard' }, '‹ All conversations')),
    header, actions, notice, older, list, typing, reply));

  function say(error) {
    fill(notice, error ? problem(error) : '');
  }

  function renderHeader() {
    const c = conversation;
    fill(header,
      h('h1', {}, `Conversation #${c.id}`),
      h('div', { class: 'facts' },
        badge(c.status),
        h('span', {}, 'User ', h('strong', {}, c.user_identifier), ` (#${c.user_id})`),
        h('span', { id: 'assignee' }, c.admin_id === null ? 'unassigned' : `assigned to admin #${c.admin_id}`),
        h('span', {}, `${c.message_count} messages`),
        c.feedback ? h('span', {}, `rated ${c.feedback.rating}/5`, c.feedback.comment ? ` “${c.feedback.comment}”` : '') : null,
        h('a', { href: `#/audit/${c.id}` }, 'Audit history')));
    if (!canWrite) {
      fill(actions);
      return;
    }
    const adminId = h('input', { name: 'admin-id', size: 16, value: String(c.admin_id || me.user_id), 'aria-label': 'Admin id' });
    const button = (label, onclick, name) => h('button', { type: 'button', onclick, dataset: { action: name } }, label);
    const archived = c.status === 'archived';
    fill(actions,
      archived ? null : h('span', { class: 'assign' }, adminId,
        button('Assign', () => act('PUT', 'assign', { admin_id: Number(adminId.value) }), 'assign')),
      c.status === 'active' ? button('Close', () => act('PUT', 'status', { status: 'closed' }), 'close') : null,
      c.status === 'closed' ? button('Reopen', () => act('PUT', 'status', { status: 'active' }), 'reopen') : null,
      archived ? null : button('Archive', () => act('PUT', 'status', { status: 'archived' }), 'archive'));
    if (canWrite) {
      text.disabled = archived;
      text.placeholder = archived ? 'Archived: no more messages.' : text.placeholder;
    }
  }

  function receipt(message) {
    // Read receipts are about the other side: the user has read what support sent.
    if (message.sender_role === 'user') return null;
    return h('span', { class: message.is_read ? 'receipt read' : 'receipt' }, message.is_read ? '✓✓ read' : '✓ sent');
  }

  /** The admin's own message (the session's identifier: views carry no sender id). */
  function isOwn(m) {
    return m.sender_role === 'admin' && m.sender_identifier === me.identifier;
  }

  /** What an admin may do to a message: edit their own text, delete any (others' with a reason). */
  function messageTools(m) {
    if (!canWrite || m.deleted || m.erased || conversation?.status === 'archived') return null;
    const tool = (label, name, onclick) => h('button', { type: 'button', class: 'link', dataset: { tool: name }, onclick }, label);
    return h('span', { class: 'message-tools' },
      isOwn(m) && m.message_type === 'text' ? tool('Edit', 'edit', () => { editing = { id: m.id, mode: 'edit' }; renderMessages(); }) : null,
      tool(isOwn(m) ? 'Delete' : 'Remove', 'delete', () => { editing = { id: m.id, mode: 'delete' }; renderMessages(); }));
  }

  /** The inline form for the message being edited or removed. */
  function changeForm(m) {
    const cancel = h('button', { type: 'button', class: 'quiet', onclick: () => { editing = null; renderMessages(); } }, 'Cancel');
    if (editing.mode === 'edit') {
      const field = h('textarea', { name: 'edit', rows: 3, maxlength: 5000, 'aria-label': 'New text' }, m.content);
      field.value = m.content;
      const form = h('form', { class: 'message-change', id: 'edit-form' }, field, h('button', { type: 'submit' }, 'Save'), cancel);
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        change(m.id, 'PATCH', { message: field.value });
      });
      return form;
    }
    const reason = h('input', { name: 'reason', size: 32, maxlength: 500, placeholder: 'Reason (shown in the audit)', 'aria-label': 'Reason', required: !isOwn(m) });
    const form = h('form', { class: 'message-change', id: 'delete-form' },
      isOwn(m) ? null : reason,
      h('button', { type: 'submit', class: 'danger' }, isOwn(m) ? 'Delete message' : 'Remove message'), cancel);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      change(m.id, 'DELETE', isOwn(m) ? undefined : { reason: reason.value });
    });
    return form;
  }

  async function change(messageId, method, body) {
    say(null);
    try {
      const changed = await api(method, `/chat/messages/${messageId}`, body);
      editing = null;
      add([changed]);
    } catch (error) {
      say(error);
    }
  }

  function renderMessages() {
    const sorted = [...messages.values()].sort((a, b) => a.id - b.id);
    fill(list, sorted.map((m) => h('li', {
      class: `message from-${m.sender_role}${m.deleted ? ' is-deleted' : ''}`, dataset: { id: String(m.id) },
    },
    h('div', { class: 'meta' },
      h('span', { class: 'sender' }, m.sender_role === 'system' ? 'system' : m.sender_identifier),
      h('time', { datetime: m.timestamp }, when(m.timestamp)),
      m.edited_at && !m.deleted ? h('span', { class: 'edited', title: `edited ${when(m.edited_at)}` }, 'edited') : null,
      receipt(m),
      messageTools(m)),
    editing && editing.id === m.id ? changeForm(m) : messageBody(m))));
  }

  function scrollToEnd() {
    list.lastElementChild?.scrollIntoView({ block: 'end' });
  }

  function add(incoming) {
    let added = false;
    for (const m of incoming) {
      if (m.conversation_id !== id) continue;
      added = added || !messages.has(m.id);
      messages.set(m.id, { ...messages.get(m.id), ...m });
    }
    renderMessages();
    return added;
  }

  /** Admins reading the conversation read the user's messages. */
  async function markRead() {
    if (!canWrite) return;
    const unread = [...messages.values()].filter((m) => m.sender_role === 'user' && !m.is_read).map((m) => m.id);
    if (unread.length === 0) return;
    try {
      await api('PUT', `/chat/conversations/${id}/read`, { message_ids: unread.slice(-1000) });
      unread.forEach((mid) => { messages.get(mid).is_read = true; });
    } catch {
      // Left unread; the next message tries again.
    }
  }

  async function loadConversation() {
    conversation = await api('GET', `/chat/conversations/${id}`);
    renderHeader();
  }

  async function loadOlder() {
    const oldest = Math.min(...messages.keys());
    const page = await api('GET', `/chat/messages${query({ conversation_id: id, before_id: oldest, limit: PAGE })}`);
    add(page.messages);
    older.hidden = page.messages.length < PAGE;
  }

  async function act(method, what, body) {
    say(null);
    try {
      conversation = await api(method, `/chat/conversations/${id}/${what}`, body);
      renderHeader();
    } catch (error) {
      say(error);
    }
  }

  function showTyping(indicator) {
    if (indicator.conversation_id !== id || indicator.sender_role !== 'user') return;
    clearTimeout(typingTimer);
    if (indicator.typing) {
      fill(typing, `${indicator.sender_identifier} is typing…`);
      typing.hidden = false;
      typingTimer = setTimeout(() => { typing.hidden = true; }, TYPING_FADES_MS);
    } else {
      typing.hidden = true;
    }
  }

  function stopTyping() {
    clearTimeout(idleTimer);
    if (typingSince !== null) {
      typingSince = null;
      live.emit('typing_stop', { conversation_id: id });
    }
  }

  function typed() {
    if (typingSince === null) {
      typingSince = Date.now();
      live.emit('typing_start', { conversation_id: id });
    }
    clearTimeout(idleTimer);
    idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  async function send(event) {
    event.preventDefault();
    const content = text.value.trim();
    if (!content) return;
    say(null);
    stopTyping();
    try {
      const sent = await api('POST', '/chat/messages', {
        conversation_id: id, content, client_msg_id: crypto.randomUUID(),
      });
      text.value = '';
      add([sent]);
      scrollToEnd();
    } catch (error) {
      say(error);
    }
  }

  if (canWrite) {
    reply.addEventListener('submit', send);
    text.addEventListener('input', typed);
    text.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        reply.requestSubmit();
      }
    });
  }

  async function join() {
    // Joining the room brings the typing indicators and read receipts of this conversation
    // (new messages and status changes reach every staff socket anyway); after a reconnect it
    // also brings what was missed.
    const since = messages.size ? Math.max(...messages.keys()) : undefined;
    try {
      const joined = await live.request('join_conversation', { conversation_id: id, since });
      if (joined && Array.isArray(joined.messages) && add(joined.messages)) {
        scrollToEnd();
        markRead();
      }
    } catch (error) {
      say(error);
    }
  }

  const stops = [
    live.on('new_message', (m) => {
      if (m.conversation_id !== id) return;
      if (add([m])) scrollToEnd();
      if (m.sender_role === 'user') {
        typing.hidden = true;
        markRead().then(renderMessages);
      }
      loadConversation().catch(say);
    }),
    live.on('message_updated', (update) => {
      const m = update.conversation_id === id ? messages.get(update.id) : null;
      if (!m) return;
      m.content = update.message;
      m.message = update.message;
      m.edited_at = update.edited_at;
      renderMessages();
    }),
    live.on('message_deleted', (deletion) => {
      const m = deletion.conversation_id === id ? messages.get(deletion.id) : null;
      if (!m) return;
      Object.assign(m, { deleted: true, deleted_by: deletion.deleted_by, content: '', message: '', file_url: null });
      if (editing && editing.id === m.id) editing = null;
      renderMessages();
    }),
    live.on('typing_indicator', showTyping),
    live.on('message_read', (read) => {
      if (read.conversation_id !== id) return;
      for (const mid of read.message_ids || []) {
        const m = messages.get(mid);
        if (m) m.is_read = true;
      }
      renderMessages();
    }),
    live.on('conversation_status', (change) => {
      if (change.conversation_id === id) loadConversation().catch(say);
    }),
    live.on('conversation_assigned', (change) => {
      if (change.conversation_id === id) loadConversation().catch(say);
    }),
    live.on('connect', join),
  ];

  (async () => {
    try {
      await loadConversation();
      const page = await api('GET', `/chat/messages${query({ conversation_id: id, limit: PAGE })}`);
      add(page.messages);
      older.hidden = page.messages.length < PAGE;
      scrollToEnd();
      if (!closed && live.socket.connected) await join();
      await markRead();
      renderMessages();
    } catch (error) {
      say(error);
    }
  })();

  return () => {
    closed = true;
    stopTyping();
    clearTimeout(typingTimer);
    stops.forEach((stop) => stop());
    live.emit('leave_conversation', { conversation_id: id });
  };
}
