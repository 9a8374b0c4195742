// /api/docs in a real browser (Playwright driving Debian's Chromium): "Try it out" signs. The
// page's request interceptor asks for the app secret once (answered here like an operator
// would), signs a request with WebCrypto, and the server accepts it; a second request is not
// asked again; an upload is left unsigned with a notice.
import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const URL_BASE = env('CHAT_URL');
const SECRET = env('APP_SECRET');
const TOKEN = env('USER_TOKEN');

function check(condition, message) {
  if (!condition) throw new Error(message);
  console.log(`ok: ${message}`);
}

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  const dialogs = [];
  page.on('dialog', async (dialog) => {
    dialogs.push({ type: dialog.type(), message: dialog.message() });
    if (dialog.type() === 'prompt') await dialog.accept(SECRET);
    else await dialog.accept();
  });
  await page.goto(`${URL_BASE}/api/docs/`);
  await page.waitForFunction(() => window.ui && window.ui.getConfigs && window.ui.getConfigs().requestInterceptor);
  await page.waitForSelector('.opblock', { timeout: 20000 });
  check(true, 'Swagger UI loaded the document with the signing interceptor');

  const statuses = await page.evaluate(async ({ token }) => {
    const intercept = window.ui.getConfigs().requestInterceptor;
    const results = [];
    for (const url of ['/api/chat/conversations', '/api/chat/messages?after_id=0&limit=5']) {
      const request = await intercept({ url, method: 'GET', headers: { Authorization: `Bearer ${token}` } });
      const response = await fetch(request.url, { method: request.method, headers: request.headers });
      results.push({ status: response.status, signed: Boolean(request.headers['X-Signature']) });
    }
    const body = JSON.stringify({ message: 'sent from the API page' });
    const post = await intercept({ url: '/api/chat/messages', method: 'POST', body,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' } });
    const posted = await fetch(post.url, { method: 'POST', headers: post.headers, body });
    results.push({ status: posted.status, signed: Boolean(post.headers['X-Signature']) });
    const form = new FormData();
    form.append('conversation_id', '1');
    const upload = await intercept({ url: '/api/chat/upload', method: 'POST', body: form, headers: {} });
    results.push({ status: 0, signed: Boolean(upload.headers['X-Signature']) });
    return results;
  }, { token: TOKEN });
  check(statuses[0].signed && statuses[0].status === 200, `a signed GET is accepted: ${JSON.stringify(statuses[0])}`);
  check(statuses[1].signed && statuses[1].status === 200, `a signed GET with a query is accepted: ${JSON.stringify(statuses[1])}`);
  check(statuses[2].signed && statuses[2].status === 201, `a signed POST with a body is accepted: ${JSON.stringify(statuses[2])}`);
  check(!statuses[3].signed, 'an upload is not signed on the page');
  const prompts = dialogs.filter((d) => d.type === 'prompt');
  check(prompts.length === 1 && prompts[0].message.includes('never stored'), `the secret was asked once: ${JSON.stringify(dialogs)}`);
  check(dialogs.some((d) => d.type === 'alert' && d.message.includes('Uploads cannot be signed')), 'the upload notice was shown');
  const stored = await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie);
  check(!stored.includes(SECRET), 'the secret is in no storage of the page');
} finally {
  await browser.close();
}
