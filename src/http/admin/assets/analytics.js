// The analytics report as charts: response-time trend, message volume per bucket, resolution
// rate, satisfaction distribution, with the date range chosen on the page. The report's
// timings are over the whole range, so the trend asks for the report of each bucket.
import { api, query } from './api.js';
import { duration, fill, h, problem } from './dom.js';
import { barChart, lineChart } from './charts.js';

const DAY_MS = 86400000;
/** Buckets whose own report the trend asks for; longer ranges show weekly buckets. */
const MAX_TREND_BUCKETS = 62;

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function rangeFrom(params) {
  const today = new Date(`${isoDay(new Date())}T00:00:00Z`);
  const to = /^\d{4}-\d{2}-\d{2}$/.test(params.get('to') || '') ? params.get('to') : isoDay(today);
  const from = /^\d{4}-\d{2}-\d{2}$/.test(params.get('from') || '') ? params.get('from') : isoDay(new Date(today.getTime() - 13 * DAY_MS));
  const bucket = params.get('bucket') === 'week' ? 'week' : 'day';
  return { from, to, bucket };
}

/** The API's range: `to` is exclusive, the page's end day is included. */
function apiRange({ from, to }) {
  const end = new Date(new Date(`${to}T00:00:00Z`).getTime() + DAY_MS);
  return { from: `${from}T00:00:00Z`, to: end.toISOString().replace('.000Z', 'Z') };
}

function percent(rate) {
  return rate === null || rate === undefined ? '–' : `${Math.round(rate * 100)} %`;
}

function card(label, value, detail) {
  return h('div', { class: 'card stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), detail ? h('div', { class: 'hint' }, detail) : null);
}

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

function timing(t) {
  return t.count ? `p50 ${duration(t.p50_seconds)} · p90 ${duration(t.p90_seconds)} · ${plural(t.count, 'wait', 'waits')}` : 'none in range';
}

/** Runs `jobs` a few at a time. */
async function limited(jobs, width = 4) {
  const results = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, jobs.length) }, async () => {
    while (next < jobs.length) {
      const i = next;
      next += 1;
      results[i] = await jobs[i]();
    }
  }));
  return results;
}

export function mount(view, context, params) {
  const range = rangeFrom(params);
  let gone = false;
  const from = h('input', { type: 'date', name: 'from', value: range.from, required: true, 'aria-label': 'From' });
  const to = h('input', { type: 'date', name: 'to', value: range.to, required: true, 'aria-label': 'To (included)' });
  const bucket = h('select', { name: 'bucket', 'aria-label': 'Bucket' },
    h('option', { value: 'day', selected: range.bucket === 'day' }, 'per day'),
    h('option', { value: 'week', selected: range.bucket === 'week' }, 'per week'));
  const form = h('form', { class: 'filters', id: 'range' },
    h('label', {}, 'From ', from), h('label', {}, 'To ', to), h('label', {}, 'Buckets ', bucket),
    h('button', { type: 'submit' }, 'Show'),
    h('span', { class: 'hint' }, 'Days are UTC days.'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    window.location.hash = `#/analytics${query({ from: from.value, to: to.value, bucket: bucket.value })}`;
  });
  const body = h('div', { class: 'analytics-body', id: 'analytics' }, h('p', { class: 'hint' }, 'Loading the report…'));
  fill(view, h('section', { class: 'analytics' }, h('h1', {}, 'Analytics'), form, body));

  (async () => {
    try {
      const { from: start, to: end } = apiRange(range);
      const report = await api('GET', `/chat/analytics${query({ from: start, to: end, bucket: range.bucket })}`);
      if (gone) return;
      const labels = report.volume.map((b) => b.start);
      const starts = report.volume.map((b, i) => {
        const first = i === 0 ? report.from : `${b.start}T00:00:00Z`;
        const last = i + 1 < report.volume.length ? `${report.volume[i + 1].start}T00:00:00Z` : report.to;
        return { from: first, to: last };
      });
      const trend = starts.length <= MAX_TREND_BUCKETS
        ? await limited(starts.map((b) => () => api('GET', `/chat/analytics${query({ ...b, bucket: range.bucket })}`).catch(() => null)))
        : [];
      if (gone) return;
      const distribution = ['1', '2', '3', '4', '5'];
      fill(body,
        h('div', { class: 'stats' },
          card('First response (avg)', duration(report.first_response.avg_seconds), timing(report.first_response)),
          card('Reply time (avg)', duration(report.reply_time.avg_seconds), timing(report.reply_time)),
          card('Resolution rate', percent(report.conversations.resolution_rate), `${report.conversations.opened} opened · ${report.conversations.closed} closed`),
          card('Satisfaction', report.satisfaction.average === null ? '–' : `${report.satisfaction.average.toFixed(2)} / 5`, plural(report.satisfaction.count, 'rating', 'ratings'))),
        h('div', { class: 'charts' },
          h('figure', { class: 'card', id: 'chart-response' },
            h('figcaption', {}, 'Response time trend (average per bucket)'),
            trend.length
              ? lineChart({
                title: 'Response time trend',
                labels,
                format: duration,
                series: [
                  { name: 'first response', cls: 'a', values: trend.map((r) => (r ? r.first_response.avg_seconds : null)) },
                  { name: 'reply time', cls: 'b', values: trend.map((r) => (r ? r.reply_time.avg_seconds : null)) },
                ],
              })
              : h('p', { class: 'hint' }, 'Choose a shorter range or weekly buckets for the trend.')),
          h('figure', { class: 'card', id: 'chart-volume' },
            h('figcaption', {}, `Message volume per ${report.bucket}`),
            barChart({
              title: 'Message volume',
              labels,
              series: [
                { name: 'user messages', cls: 'a', values: report.volume.map((b) => b.user) },
                { name: 'admin messages', cls: 'b', values: report.volume.map((b) => b.admin) },
              ],
            })),
          h('figure', { class: 'card', id: 'chart-resolution' },
            h('figcaption', {}, `Resolution rate per ${report.bucket} (overall ${percent(report.conversations.resolution_rate)})`),
            trend.length
              ? lineChart({
                title: 'Resolution rate',
                labels,
                max: 1,
                format: percent,
                series: [{ name: 'closed in the bucket of those opened in it', cls: 'c', values: trend.map((r) => (r ? r.conversations.resolution_rate : null)) }],
              })
              : h('p', { class: 'hint' }, `${report.conversations.opened} opened, ${report.conversations.closed} closed.`)),
          h('figure', { class: 'card', id: 'chart-satisfaction' },
            h('figcaption', {}, 'Satisfaction distribution (ratings 1 to 5)'),
            barChart({
              title: 'Satisfaction distribution',
              labels: distribution.map((r) => `${r} ★`),
              series: [{ name: 'ratings', cls: 'c', values: distribution.map((r) => report.satisfaction.distribution[r] || 0) }],
            }))),
        h('h2', {}, 'Per admin'),
        report.per_admin.length
          ? h('table', { class: 'list' },
            h('thead', {}, h('tr', {}, ['Admin', 'Messages', 'Closed', 'First response (avg)', 'Reply time (avg)', 'Satisfaction'].map((t) => h('th', {}, t)))),
            h('tbody', {}, report.per_admin.map((a) => h('tr', {},
              h('td', {}, `#${a.admin_id}`), h('td', {}, String(a.messages)), h('td', {}, String(a.closed)),
              h('td', {}, duration(a.first_response.avg_seconds)), h('td', {}, duration(a.reply_time.avg_seconds)),
              h('td', {}, a.satisfaction.average === null ? '–' : `${a.satisfaction.average.toFixed(2)} (${a.satisfaction.count})`)))))
          : h('p', { class: 'hint' }, 'No admin activity in this range.'));
    } catch (error) {
      if (!gone) fill(body, problem(error));
    }
  })();

  return () => { gone = true; };
}
