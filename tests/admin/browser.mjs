#!/usr/bin/env node
// The admin web manager in a real browser: headless Chromium (Debian's package) driven by
// Playwright, against a chatd started by tests/api/admin.rs, with the user's side a real Socket.IO
// client (socket.io-client) and REST calls signed as the iOS app signs them.
//
// Configuration from the environment: CHAT_URL, APP_SECRET, ADMIN_TOKEN, ADMIN_ID,
// AUDITOR_TOKEN, USER_TOKEN, USER_ID, CONVERSATION_ID, SECOND_CONVERSATION_ID, CHROMIUM,
// SCREENSHOT_DIR. Exit status 0 when every step holds; otherwise the failed check, the steps
// taken, what the user's socket received and the page's console are printed and the status is 1.
//
// Waits are explicit: each expectation is awaited with a timeout, never a sleep.
import crypto from 'node:crypto';
import path from 'node:path';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';
import { io } from 'socket.io-client';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const URL_BASE = env('CHAT_URL');
const SECRET = env('APP_SECRET');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const ADMIN_ID = Number(env('ADMIN_ID'));
const AUDITOR_TOKEN = env('AUDITOR_TOKEN');
const USER_TOKEN = env('USER_TOKEN');
const CONVERSATION = Number(env('CONVERSATION_ID'));
const SECOND = Number(env('SECOND_CONVERSATION_ID'));
const SECOND_USER_ID = Number(env('SECOND_USER_ID'));
const HAYSTACK = Number(env('HAYSTACK_CONVERSATION_ID'));
const SHOTS = env('SCREENSHOT_DIR');
const TIMEOUT = 10000;
const XSS = '<img src=x onerror=alert(1)>';

const START = Date.now();
const steps = [];
const received = [];
const consoleLines = [];
const dialogs = [];

function step(text) {
  const line = `[${((Date.now() - START) / 1000).toFixed(3).padStart(7)}] ${text}`;
  steps.push(line);
  console.log(line);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(6).toString('hex')}`;
}

async function rest(method, pathAndQuery, token, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  const timestamp = String(Date.now());
  const bodyHash = crypto.createHash('sha256').update(text).digest('hex');
  const signature = crypto.createHmac('sha256', SECRET)
    .update(`${timestamp}\n${method}\n${pathAndQuery}\n${bodyHash}`).digest('hex');
  const headers = { 'X-Timestamp': timestamp, 'X-Signature': signature, Authorization: `Bearer ${token}` };
  if (text) headers['Content-Type'] = 'application/json';
  const response = await fetch(URL_BASE + pathAndQuery, { method, headers, body: text || undefined });
  const json = await response.json();
  return { status: response.status, json };
}

/** Waits until the user's socket has received an event matching `predicate`. */
async function received_(name, predicate, what) {
  const deadline = Date.now() + TIMEOUT;
  while (Date.now() < deadline) {
    const found = received.find((e) => e.name === name && predicate(e.data));
    if (found) return found.data;
    await new Promise((resolve) => { setTimeout(resolve, 50); });
  }
  throw new Error(`the user's socket did not receive ${name} (${what}) within ${TIMEOUT} ms`);
}

/** A small PNG (a colour gradient), made here so the test needs no fixture file. */
function png(width, height) {
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const rows = [];
  for (let y = 0; y < height; y += 1) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x += 1) row.set([36 + x * 3, 86 + y * 2, 200], 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header), chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Uploads `bytes` as the user (multipart, the signature over the raw body) and sends the
 * message that carries it. */
async function sendAttachment(kind, name, contentType, bytes) {
  const boundary = `----chatd${crypto.randomBytes(8).toString('hex')}`;
  const field = (key, value) => `--${boundary}\r\nContent-Disposition: form-data; name="${key}"\r\n\r\n${value}\r\n`;
  const body = Buffer.concat([
    Buffer.from(field('conversation_id', CONVERSATION) + field('message_type', kind)),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: ${contentType}\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const timestamp = String(Date.now());
  const bodyHash = crypto.createHash('sha256').update(body).digest('hex');
  const signature = crypto.createHmac('sha256', SECRET)
    .update(`${timestamp}\nPOST\n/api/chat/upload\n${bodyHash}`).digest('hex');
  const response = await fetch(`${URL_BASE}/api/chat/upload`, {
    method: 'POST',
    headers: {
      'X-Timestamp': timestamp, 'X-Signature': signature, Authorization: `Bearer ${USER_TOKEN}`,
      'Content-Type': `multipart/form-data; boundary=${boundary}`,
    },
    body,
  });
  const uploaded = await response.json();
  check(response.status === 201, `the ${kind} upload was accepted: ${JSON.stringify(uploaded)}`);
  const sent = await rest('POST', '/api/chat/messages', USER_TOKEN, {
    conversation_id: CONVERSATION, message_type: kind, file_id: uploaded.data.file_id, content: name,
  });
  check(sent.status === 201, `the ${kind} message was accepted: ${JSON.stringify(sent.json)}`);
  return sent.json.data;
}

function userSocket() {
  return new Promise((resolve, reject) => {
    const socket = io(URL_BASE, { auth: { token: USER_TOKEN }, transports: ['websocket'], reconnection: false });
    socket.onAny((name, data) => received.push({ name, data, at: Date.now() - START }));
    socket.on('connect', () => resolve(socket));
    socket.on('connect_error', (error) => reject(new Error(`the user's socket was refused: ${error.message}`)));
  });
}

function ack(socket, event, data) {
  return new Promise((resolve, reject) => {
    socket.timeout(TIMEOUT).emit(event, data, (timeout, answer) => {
      if (timeout) reject(new Error(`${event} was not acknowledged`));
      else if (!answer || answer.status !== 'success') reject(new Error(`${event}: ${JSON.stringify(answer)}`));
      else resolve(answer.data);
    });
  });
}

function watch(page, who) {
  page.on('dialog', async (dialog) => {
    dialogs.push(`${who}: ${dialog.type()} ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on('console', (message) => consoleLines.push(`${who} ${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`${who} pageerror: ${error.message}`));
}

async function signIn(context, token, who) {
  const page = await context.newPage();
  watch(page, who);
  await page.goto(`${URL_BASE}/admin/`);
  await page.locator('#token').fill(token);
  await page.locator('#sign-in button[type=submit]').click();
  await page.locator('#topbar').waitFor({ state: 'visible' });
  await page.locator('#live.live').waitFor({ timeout: TIMEOUT });
  return page;
}

async function run() {
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM'),
    // Chromium's own sandbox needs user namespaces that containers and root lack.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    context.setDefaultTimeout(TIMEOUT);

    step('the sign-in page refuses a user token');
    const probe = await context.newPage();
    watch(probe, 'probe');
    await probe.goto(`${URL_BASE}/admin/`);
    await probe.locator('#token').fill(USER_TOKEN);
    await probe.locator('#sign-in button[type=submit]').click();
    await probe.locator('#sign-in .problem', { hasText: 'admins and auditors' }).waitFor();
    await probe.close();

    step('an admin signs in');
    const page = await signIn(context, ADMIN_TOKEN, 'admin');
    const cookies = await context.cookies();
    const cookie = cookies.find((c) => c.name === 'chatd_admin');
    check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.path === '/admin', `the cookie is HttpOnly, Strict, /admin: ${JSON.stringify(cookie)}`);
    check(!(await page.evaluate(() => document.cookie)).includes('chatd_admin'), 'the page cannot read the cookie');
    await page.locator(`#conversations tr[data-id="${CONVERSATION}"]`).waitFor();

    step('the user connects with a real Socket.IO client and joins the conversation');
    await page.locator(`#conversations tr[data-id="${CONVERSATION}"] .presence.offline`).waitFor();
    const socket = await userSocket();
    await ack(socket, 'join_conversation', { conversation_id: CONVERSATION });

    step('the dashboard shows the user online without a reload');
    await page.locator(`#conversations tr[data-id="${CONVERSATION}"] .presence.online`).waitFor();

    step('the admin sets themselves away and available again');
    await page.locator('#away', { hasText: 'Available' }).click();
    await page.locator('#away[data-away="true"]', { hasText: 'Away' }).waitFor();
    const admins = await rest('GET', '/api/chat/presence/admins', ADMIN_TOKEN);
    check(admins.json.data.admins.some((a) => a.admin_id === ADMIN_ID && a.away), `the server has the admin away: ${JSON.stringify(admins.json)}`);
    await page.locator('#away').click();
    await page.locator('#away[data-away="false"]', { hasText: 'Available' }).waitFor();

    step('a message the user sends over REST appears on the dashboard without a reload');
    const first = unique('where is my order');
    const sent = await rest('POST', '/api/chat/messages', USER_TOKEN, { conversation_id: CONVERSATION, content: first });
    check(sent.status === 201, `the user's message was accepted: ${JSON.stringify(sent.json)}`);
    await page.locator(`#conversations tr[data-id="${CONVERSATION}"] .message-preview`, { hasText: first }).waitFor();
    await page.locator(`#conversations tr[data-id="${CONVERSATION}"] .count`).waitFor();

    step('the XSS message is shown as text on the dashboard');
    const xss = await rest('POST', '/api/chat/messages', USER_TOKEN, { conversation_id: CONVERSATION, content: XSS });
    check(xss.status === 201, `the XSS message was accepted: ${JSON.stringify(xss.json)}`);
    await page.locator(`#conversations tr[data-id="${CONVERSATION}"] .message-preview`, { hasText: XSS }).waitFor();
    check(await page.locator('#conversations img').count() === 0, 'no image element was made from the message');
    await page.screenshot({ path: path.join(SHOTS, 'dashboard.png'), fullPage: true });

    step('the conversation view shows the history, the XSS message literally, and runs nothing');
    await page.locator(`#conversations tr[data-id="${CONVERSATION}"] a`).first().click();
    await page.waitForURL(`**/admin/#/conversations/${CONVERSATION}`);
    const xssId = xss.json.data.id;
    const xssText = page.locator(`#messages li[data-id="${xssId}"] .text`);
    await xssText.waitFor();
    check(await xssText.textContent() === XSS, `the message reads literally: ${await xssText.textContent()}`);
    check(await page.locator('#messages img').count() === 0, 'no image element in the history');
    check(await page.evaluate(() => document.querySelectorAll('img[src="x"]').length) === 0, 'no img[src=x] anywhere');

    step('an image the user sends is shown, a file is linked');
    const image = await sendAttachment('image', 'screenshot.png', 'image/png', png(160, 96));
    const picture = page.locator(`#messages li[data-id="${image.id}"] img.attachment`);
    await picture.waitFor();
    await page.waitForFunction((id) => {
      const img = document.querySelector(`#messages li[data-id="${id}"] img.attachment`);
      return img && img.complete && img.naturalWidth === 160;
    }, image.id);
    check(image.width === 160 && image.height === 96 && image.file_name === 'screenshot.png',
      `the image message carries its pixels and name: ${JSON.stringify(image)}`);
    check(await picture.getAttribute('width') === '160' && await picture.getAttribute('height') === '96',
      'the picture\'s space is reserved from the message\'s pixel size');
    const file = await sendAttachment('file', 'invoice.txt', 'text/plain', Buffer.from('Invoice 42: 3 items\n'));
    const link = page.locator(`#messages li[data-id="${file.id}"] a.file`);
    await link.waitFor();
    const bubble = await link.textContent();
    check(bubble.includes('invoice.txt') && bubble.includes('20 B'),
      `the file bubble names the file and its size: ${bubble}`);
    const downloaded = await page.evaluate(async (href) => {
      const response = await fetch(href);
      return { status: response.status, text: await response.text() };
    }, await link.getAttribute('href'));
    check(downloaded.status === 200 && downloaded.text.startsWith('Invoice 42'), `the file link loads: ${JSON.stringify(downloaded)}`);

    step('the user\'s new message and typing appear in the conversation view without a reload');
    const second = unique('still waiting');
    const sentSecond = await rest('POST', '/api/chat/messages', USER_TOKEN, { conversation_id: CONVERSATION, content: second });
    check(sentSecond.status === 201, 'the second message was accepted');
    await page.locator('#messages li .text', { hasText: second }).waitFor();
    socket.emit('typing_start', { conversation_id: CONVERSATION });
    await page.locator('#typing', { hasText: 'is typing' }).waitFor({ state: 'visible' });

    step('the admin types: the user\'s client sees the typing indicator');
    await page.locator('#reply').click();
    await page.keyboard.type('Thanks for waiting, ');
    await received_('typing_indicator', (d) => d.conversation_id === CONVERSATION && d.sender_role === 'admin' && d.typing === true, 'the admin typing');

    step('the admin replies: the user\'s client receives it');
    const reply = unique('your order ships today');
    await page.locator('#reply').fill(reply);
    await page.locator('#reply').press('Enter');
    const replied = await received_('new_message', (d) => d.content === reply, 'the reply');
    check(replied.sender_role === 'admin' && replied.conversation_id === CONVERSATION, `the reply's shape: ${JSON.stringify(replied)}`);
    await page.locator(`#messages li[data-id="${replied.id}"] .receipt`, { hasText: 'sent' }).waitFor();

    step('the user reads the reply: the read receipt appears');
    await ack(socket, 'mark_read', { conversation_id: CONVERSATION, message_ids: [replied.id] });
    await page.locator(`#messages li[data-id="${replied.id}"] .receipt.read`).waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'conversation.png'), fullPage: true });

    step('the admin edits their reply: the user\'s client hears message_updated');
    const corrected = unique('your order ships tomorrow');
    await page.locator(`#messages li[data-id="${replied.id}"] [data-tool=edit]`).click();
    await page.locator('#edit-form textarea').fill(corrected);
    await page.locator('#edit-form button[type=submit]').click();
    await received_('message_updated', (d) => d.id === replied.id && d.message === corrected, 'the edit');
    await page.locator(`#messages li[data-id="${replied.id}"] .text`, { hasText: corrected }).waitFor();
    await page.locator(`#messages li[data-id="${replied.id}"] .edited`).waitFor();

    step('the user edits a message from their client: the view follows without a reload');
    const sentId = sent.json.data.id;
    const rewritten = unique('where is my parcel');
    await ack(socket, 'edit_message', { id: sentId, message: rewritten });
    await page.locator(`#messages li[data-id="${sentId}"] .text`, { hasText: rewritten }).waitFor();

    step('the admin removes a user message with a reason: a tombstone, and the user\'s client hears it');
    const removedId = sentSecond.json.data.id;
    await page.locator(`#messages li[data-id="${removedId}"] [data-tool=delete]`).click();
    await page.locator('#delete-form input[name=reason]').fill('off-topic');
    await page.locator('#delete-form button[type=submit]').click();
    await received_('message_deleted', (d) => d.id === removedId && d.deleted_by === 'admin', 'the removal');
    await page.locator(`#messages li[data-id="${removedId}"] .deleted`, { hasText: 'removed by admin' }).waitFor();
    check(await page.locator('#messages li .text', { hasText: second }).count() === 0, 'the removed text is shown nowhere');
    await page.screenshot({ path: path.join(SHOTS, 'message-changes.png'), fullPage: true });

    step('assign: the user\'s client gets conversation_assigned');
    await page.locator('#actions input[name=admin-id]').fill(String(ADMIN_ID));
    await page.locator('#actions [data-action=assign]').click();
    await received_('conversation_assigned', (d) => d.conversation_id === CONVERSATION && d.admin_id === ADMIN_ID, 'the assignment');
    await page.locator('#assignee', { hasText: `admin #${ADMIN_ID}` }).waitFor();

    step('close: the user\'s client gets conversation_status closed');
    await page.locator('#actions [data-action=close]').click();
    await received_('conversation_status', (d) => d.conversation_id === CONVERSATION && d.status === 'closed', 'the close');
    await page.locator('#actions [data-action=reopen]').waitFor();

    step('reopen and close again: the user\'s client follows');
    await page.locator('#actions [data-action=reopen]').click();
    await received_('conversation_status', (d) => d.conversation_id === CONVERSATION && d.status === 'active', 'the reopen');
    await page.locator('#actions [data-action=close]').click();
    await page.locator('#actions [data-action=reopen]').waitFor();
    const rated = await rest('POST', `/api/chat/conversations/${CONVERSATION}/feedback`, USER_TOKEN, { rating: 4, comment: 'quick and kind' });
    check(rated.status === 201, `the user rates the closed conversation: ${JSON.stringify(rated.json)}`);

    step('bulk: close both conversations, one already closed, and see each outcome');
    await page.goto(`${URL_BASE}/admin/#/dashboard`);
    for (const id of [CONVERSATION, SECOND]) {
      await page.locator(`#conversations tr[data-id="${id}"] input[type=checkbox]`).check();
    }
    await page.locator('#bulk button', { hasText: 'Close' }).click();
    await page.locator(`#bulk-outcome li.success[data-id="${SECOND}"]`).waitFor();
    await page.locator(`#bulk-outcome li.error[data-id="${CONVERSATION}"]`, { hasText: 'CONFLICT' }).waitFor();
    await page.locator(`#conversations tr[data-id="${SECOND}"] .badge`, { hasText: 'closed' }).waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'bulk.png'), fullPage: true });

    step('archive from the conversation view: no more replies');
    await page.goto(`${URL_BASE}/admin/#/conversations/${SECOND}`);
    await page.locator('#actions [data-action=archive]').click();
    await page.locator('.conversation-header .badge', { hasText: 'archived' }).waitFor();
    check(await page.locator('#reply').isDisabled(), 'the reply box is disabled once archived');
    check(await page.locator('#actions button').count() === 0, 'nothing more to do with an archived conversation');

    step('an erased person\'s messages show as erased, with their sender and time');
    const erasure = await rest('POST', '/api/chat/admin/erasures', ADMIN_TOKEN,
      { user_id: SECOND_USER_ID, reason: 'request in the browser test' });
    check(erasure.status === 200, `erased: ${erasure.status} ${JSON.stringify(erasure.json)}`);
    await page.reload();
    const erasedMessage = page.locator('#messages li .erased', { hasText: 'erased' }).first();
    await erasedMessage.waitFor({ timeout: TIMEOUT });
    check(await page.locator('#messages li', { hasText: 'Another question' }).count() === 0,
      'the erased text is shown nowhere');
    check(await page.locator('#messages li time').count() > 0, 'the times stay');
    await page.goto(`${URL_BASE}/admin/#/dashboard`);

    step('filters: closed conversations assigned to me');
    await page.locator('#filters select[name=status]').selectOption('closed');
    await page.locator('#filters input[name=assignee]').fill('me');
    await page.locator('#filters button[type=submit]').click();
    // The list shown before the filter applies has both rows: wait for the filtered one.
    await page.locator(`#conversations tr[data-id="${SECOND}"]`).waitFor({ state: 'detached' });
    await page.locator(`#conversations tr[data-id="${CONVERSATION}"]`).waitFor();

    step('text search finds the conversation by a message as it was edited');
    await page.locator('#filters select[name=status]').selectOption('');
    await page.locator('#filters input[name=assignee]').fill('');
    await page.locator('#filters input[name=q]').fill(rewritten);
    await page.locator('#filters button[type=submit]').click();
    await page.locator(`#conversations tr[data-id="${CONVERSATION}"]`).waitFor();

    step('a search that stopped among the newest messages goes on to the older ones');
    await page.locator('#filters input[name=q]').fill('haystack');
    await page.locator('#filters button[type=submit]').click();
    await page.locator(`#conversations tr[data-id="${HAYSTACK}"]`).waitFor();
    await page.locator('#search-older').waitFor();
    check((await page.locator('.pager').innerText()).includes('1000 matching messages among the newest'),
      'the pager says the count is of the newest messages');
    await page.locator('#search-older').click();
    await page.locator('#search-newest').waitFor();
    check((await page.evaluate(() => window.location.hash)).includes('before='), 'the older search is in the address');
    await page.locator('.pager', { hasText: '101 matching messages' }).waitFor();
    await page.locator(`#conversations tr[data-id="${HAYSTACK}"]`).waitFor();
    check(await page.locator('#search-older').count() === 0, 'nothing older is left to search');

    step('the analytics page draws its charts');
    await page.goto(`${URL_BASE}/admin/#/analytics`);
    for (const chart of ['response', 'volume', 'resolution', 'satisfaction']) {
      await page.locator(`#chart-${chart} svg.chart, #chart-${chart} p.hint`).first().waitFor();
    }
    check(await page.locator('#chart-volume rect.bar').count() > 0, 'the volume chart has bars');
    await page.screenshot({ path: path.join(SHOTS, 'analytics.png'), fullPage: true });

    step('the audit view shows the event history and the state at an instant');
    await page.goto(`${URL_BASE}/admin/#/audit/${CONVERSATION}`);
    await page.locator('#audit-events tr').first().waitFor();
    await page.locator('#audit-state .badge', { hasText: 'closed' }).waitFor();
    await page.locator('#audit-events tr[data-sequence="1"] a').click();
    await page.locator('#audit-state .badge', { hasText: 'active' }).waitFor();
    check(await page.locator('#audit-state .message').count() === 1, 'right after the first event there was one message');
    await page.goto(`${URL_BASE}/admin/#/audit/${CONVERSATION}`);
    await page.locator('#audit-events code', { hasText: 'MessageEdited' }).first().waitFor();
    await page.locator('#audit-events code', { hasText: 'MessageDeleted' }).first().waitFor();
    await page.locator('#audit-state .earlier-version del', { hasText: reply }).waitFor();
    await page.locator('#audit-state .deleted', { hasText: 'off-topic' }).waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'audit.png'), fullPage: true });

    step('an auditor sees the conversation read-only and the server refuses their reply');
    const auditorContext = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    auditorContext.setDefaultTimeout(TIMEOUT);
    const auditor = await signIn(auditorContext, AUDITOR_TOKEN, 'auditor');
    await auditor.goto(`${URL_BASE}/admin/#/conversations/${CONVERSATION}`);
    await auditor.locator('#messages li .text', { hasText: corrected }).waitFor();
    check(await auditor.locator('#reply').count() === 0, 'no reply box for an auditor');
    check(await auditor.locator('#actions button').count() === 0, 'no action buttons for an auditor');
    await auditor.locator('.read-only-note').waitFor();
    const refused = await auditor.evaluate(async (conversationId) => {
      const me = await (await fetch('/admin/session')).json();
      const response = await fetch('/admin/api/chat/messages', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.data.csrf_token },
        body: JSON.stringify({ conversation_id: conversationId, content: 'an auditor writes' }),
      });
      return { status: response.status, body: await response.json() };
    }, CONVERSATION);
    check(refused.status === 403 && refused.body.error_code === 'FORBIDDEN', `an auditor's reply is refused: ${JSON.stringify(refused)}`);

    step('when the session ends elsewhere, the page asks for a sign-in again');
    const cookieHeader = { Cookie: `chatd_admin=${AUDITOR_TOKEN}` };
    const who = await (await fetch(`${URL_BASE}/admin/session`, { headers: cookieHeader })).json();
    const ended = await fetch(`${URL_BASE}/admin/session`, {
      method: 'DELETE', headers: { ...cookieHeader, 'X-CSRF-Token': who.data.csrf_token },
    });
    check(ended.status === 200, `the auditor's session was ended: ${ended.status}`);
    await auditor.goto(`${URL_BASE}/admin/#/dashboard`);
    await auditor.locator('#sign-in', { hasText: 'sign in again' }).waitFor();

    step('signing out ends the session');
    await page.goto(`${URL_BASE}/admin/#/dashboard`);
    await page.locator('#sign-out').click();
    await page.locator('#sign-in').waitFor();
    const after = await page.evaluate(async () => (await fetch('/admin/session')).status);
    check(after === 401, `signed out: /admin/session answers ${after}`);
    const apiAfter = await rest('GET', '/api/chat/conversations', ADMIN_TOKEN);
    check(apiAfter.status === 401, `the session is gone for the API too: ${apiAfter.status}`);

    check(dialogs.length === 0, `no dialog opened: ${dialogs.join('; ')}`);
    const errors = consoleLines.filter((line) => line.includes('pageerror'));
    check(errors.length === 0, `no script errors: ${errors.join('; ')}`);
    socket.disconnect();
  } finally {
    await browser.close();
  }
}

try {
  await run();
  step('all steps held');
  process.exit(0);
} catch (error) {
  console.error(`FAILED: ${error.stack || error}`);
  console.error('--- steps ---');
  console.error(steps.join('\n'));
  console.error('--- received by the user\'s socket ---');
  for (const event of received) console.error(`[${event.at} ms] ${event.name} ${JSON.stringify(event.data)}`);
  console.error('--- browser console ---');
  console.error(consoleLines.join('\n'));
  console.error(`--- dialogs --- ${dialogs.join('; ') || 'none'}`);
  process.exit(1);
}
