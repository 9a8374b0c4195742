// The audit view (auditors and admins): a conversation's event history as stored, and the
// conversation as it stood at a chosen instant.
import { api, query } from './api.js';
import { badge, fill, h, problem, when } from './dom.js';

const PAGE = 100;

/** An RFC 3339 instant with the event's microseconds, so "as of this event" includes it. */
function instantOf(micros) {
  const seconds = Math.floor(micros / 1e6);
  const fraction = String(micros - seconds * 1e6).padStart(6, '0');
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, `.${fraction}Z`);
}

/** A `datetime-local` value (read as UTC) as RFC 3339. */
function fromLocalInput(value) {
  if (!value) return '';
  return value.length === 16 ? `${value}:00Z` : `${value}Z`;
}

function toLocalInput(instant) {
  return instant ? instant.slice(0, 19) : '';
}

function actor(metadata) {
  if (!metadata || typeof metadata !== 'object') return '–';
  return `${metadata.actor_role || '?'} #${metadata.actor_id ?? '?'}`;
}

export function mount(view, context, id, params) {
  const asOf = params.get('as_of') || '';
  let gone = false;
  const conversationId = h('input', { name: 'conversation', size: 8, value: id ? String(id) : '', required: true, 'aria-label': 'Conversation id' });
  const instant = h('input', { type: 'datetime-local', step: 1, name: 'as_of', value: toLocalInput(asOf), 'aria-label': 'As of (UTC)' });
  const form = h('form', { class: 'filters', id: 'audit-form' },
    h('label', {}, 'Conversation # ', conversationId),
    h('label', {}, 'State as of (UTC) ', instant),
    h('button', { type: 'submit' }, 'Show'),
    h('span', { class: 'hint' }, 'Empty: now. Or pick an event below.'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const target = Number(conversationId.value);
    if (!Number.isSafeInteger(target) || target < 1) return;
    window.location.hash = `#/audit/${target}${query({ as_of: fromLocalInput(instant.value) })}`;
  });
  const events = h('tbody', { id: 'audit-events' });
  const more = h('button', { type: 'button', class: 'quiet', hidden: true }, 'More events');
  const state = h('div', { class: 'card', id: 'audit-state' });
  const notice = h('div');
  fill(view, h('section', { class: 'audit' },
    h('h1', {}, id ? `Audit: conversation #${id}` : 'Audit'),
    form, notice,
    id ? h('div', { class: 'audit-grid' },
      h('div', {},
        h('h2', {}, 'Event history'),
        h('table', { class: 'list events' },
          h('thead', {}, h('tr', {}, ['Seq', 'Type', 'Recorded (UTC)', 'Actor', 'Payload', ''].map((t) => h('th', {}, t)))),
          events),
        more),
      h('div', {}, h('h2', {}, asOf ? `State as of ${asOf}` : 'State now'), state)) : null));
  if (!id) return () => { gone = true; };

  let after = 0;
  async function loadEvents() {
    try {
      const page = await api('GET', `/audit/conversations/${id}/events${query({ after_sequence: after || '', limit: PAGE })}`);
      if (gone) return;
      for (const e of page.events) {
        const at = instantOf(e.recorded_at_micros);
        events.append(h('tr', { dataset: { sequence: String(e.sequence) }, class: at === asOf ? 'chosen' : '' },
          h('td', {}, String(e.sequence)),
          h('td', {}, h('code', {}, `${e.type} v${e.version}`)),
          h('td', {}, e.recorded_at.replace('T', ' ').replace('Z', '')),
          h('td', {}, actor(e.metadata)),
          h('td', {}, h('pre', { class: 'payload' }, JSON.stringify(e.payload))),
          h('td', {}, h('a', { href: `#/audit/${id}${query({ as_of: at })}`, title: 'The conversation right after this event' }, 'state then'))));
      }
      after = page.next_after_sequence || after;
      more.hidden = !page.has_more;
    } catch (error) {
      if (!gone) fill(notice, problem(error));
    }
  }
  more.addEventListener('click', loadEvents);

  (async () => {
    try {
      const s = await api('GET', `/audit/conversations/${id}/state${query({ as_of: asOf })}`);
      if (gone) return;
      fill(state,
        h('div', { class: 'facts' },
          badge(s.status),
          h('span', {}, `user ${s.user_identifier} (#${s.user_id})`),
          h('span', {}, s.admin_id === null ? 'unassigned' : `assigned to admin #${s.admin_id}`),
          h('span', {}, `through event ${s.sequence}`),
          s.feedback ? h('span', {}, `rated ${s.feedback.rating}/5`) : null),
        h('ol', { class: 'messages compact' }, s.messages.map((m) => h('li', { class: `message from-${m.sender_role}` },
          h('div', { class: 'meta' },
            h('span', { class: 'sender' }, m.sender_identifier),
            h('time', {}, when(m.timestamp)),
            m.sender_role === 'user' ? null : h('span', { class: 'receipt' }, m.is_read ? '✓✓ read' : '✓ sent')),
          m.deleted ? h('div', { class: 'deleted' }, `deleted by ${m.deleted_by}${m.deletion_reason ? `: “${m.deletion_reason}”` : ''}`) : null,
          (m.earlier_versions || []).map((v) => h('div', { class: 'earlier-version' },
            h('time', {}, when(v.written_at)), ' ', h('del', {}, v.content))),
          h('div', { class: 'text' }, m.content, m.edited_at ? h('span', { class: 'edited' }, ` (edited ${when(m.edited_at)})`) : null)))));
    } catch (error) {
      if (!gone) fill(state, problem(error));
    }
  })();
  loadEvents();
  return () => { gone = true; };
}
