// Swagger UI for chatd, with "Try it out" able to sign: every request to /api carries
// X-Timestamp and X-Signature, computed here with WebCrypto from the app secret the operator
// types in when the first request goes out. The secret stays in this page's memory: it is never
// stored, and a reload asks again. Uploads (multipart) cannot be signed here: the browser builds
// their bytes after this code runs; use `chatd curl` or a client.
window.onload = function () {
  let secret = null;

  const hex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');

  // The headers for one request, as the contract's "Authentication" 1 says: HMAC-SHA256 over
  // timestamp, method, path and query as sent, and the body's SHA-256.
  async function signatureHeaders(method, url, body, appSecret) {
    const sent = new URL(url, window.location.href);
    const encoder = new TextEncoder();
    const raw = typeof body === 'string' ? encoder.encode(body) : new Uint8Array();
    const bodyHash = hex(await crypto.subtle.digest('SHA-256', raw));
    const timestamp = String(Date.now());
    const toSign = [timestamp, method.toUpperCase(), sent.pathname + sent.search, bodyHash].join('\n');
    const key = await crypto.subtle.importKey('raw', encoder.encode(appSecret),
      { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const signature = hex(await crypto.subtle.sign('HMAC', key, encoder.encode(toSign)));
    return { 'X-Timestamp': timestamp, 'X-Signature': signature };
  }
  window.chatdSignatureHeaders = signatureHeaders;

  async function sign(request) {
    const path = new URL(request.url, window.location.href).pathname;
    if (!path.startsWith('/api/') || path === '/api/openapi.json' || path === '/api/asyncapi.json') {
      return request;
    }
    if (!window.crypto || !window.crypto.subtle) {
      window.alert('Signing needs a secure page (HTTPS or localhost): this request goes unsigned and gets 401.');
      return request;
    }
    if (body_is_form(request.body)) {
      window.alert('Uploads cannot be signed from this page: use `chatd curl` or a client. This one goes unsigned.');
      return request;
    }
    if (secret === null) {
      secret = window.prompt('The app secret (CHAT_APP_SECRET, or $CHAT_DATA_DIR/app_secret). It stays in this page only and is never stored.') || '';
    }
    if (!secret) return request;
    Object.assign(request.headers, await signatureHeaders(request.method, request.url, request.body, secret));
    return request;
  }

  function body_is_form(body) {
    return typeof FormData !== 'undefined' && body instanceof FormData;
  }

  window.ui = SwaggerUIBundle({
    dom_id: '#swagger-ui',
    url: '/api/openapi.json',
    deepLinking: true,
    layout: 'StandaloneLayout',
    showMutatedRequest: true,
    requestInterceptor: sign,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
  });
};
