// Talking to chatd: the JSON API under /admin/api (the cookie authenticates; writes carry the
// CSRF token), the sign-in under /admin/session, and the live events over Socket.IO.
import { io } from './vendor/socket.io.esm.min.js';

let csrfToken = '';

export class AppError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new AppError(0, 'NETWORK', `chatd could not be reached (${error.message})`);
  }
  let json = null;
  try {
    json = await response.json();
  } catch {
    // Not JSON: reported below with the HTTP status.
  }
  if (!response.ok || !json || json.status !== 'success') {
    throw new AppError(
      response.status,
      (json && json.error_code) || `HTTP_${response.status}`,
      (json && json.message) || response.statusText || 'request failed',
    );
  }
  return json.data !== undefined ? json.data : json;
}

/** Fired on `window` when the API answers 401: the session has ended (expired, or signed out
 * elsewhere), and the page should ask for a sign-in again. */
export const SIGNED_OUT_EVENT = 'chatd-signed-out';

/** A call to the chat API: `api('GET', '/chat/conversations?page=1')`. */
export async function api(method, path, body) {
  try {
    return await request(method, `/admin/api${path}`, body);
  } catch (error) {
    if (error.status === 401) window.dispatchEvent(new CustomEvent(SIGNED_OUT_EVENT));
    throw error;
  }
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export async function whoAmI() {
  const me = await request('GET', '/admin/session');
  csrfToken = me.csrf_token;
  return me;
}

export async function signIn(token) {
  const me = await request('POST', '/admin/session', { token });
  csrfToken = me.csrf_token;
  return me;
}

export async function signOut() {
  await request('DELETE', '/admin/session');
  csrfToken = '';
}

/**
 * The live feed: one Socket.IO connection (authenticated by the cookie), shared by the views.
 * `on(event, handler)` returns the function that removes the handler again.
 */
export function connectLive(onState) {
  const socket = io({ path: '/admin/socket.io/', transports: ['websocket', 'polling'] });
  socket.on('connect', () => onState('live'));
  socket.on('disconnect', () => onState('offline'));
  socket.on('connect_error', () => onState('offline'));
  return {
    socket,
    on(event, handler) {
      socket.on(event, handler);
      return () => socket.off(event, handler);
    },
    /** Emits with an acknowledgement; resolves with the ack's data or rejects with AppError. */
    request(event, data) {
      return new Promise((resolve, reject) => {
        socket.timeout(10000).emit(event, data, (timeout, answer) => {
          if (timeout) reject(new AppError(0, 'TIMEOUT', `${event} was not answered`));
          else if (answer && answer.status === 'success') resolve(answer.data);
          else reject(new AppError(0, (answer && answer.error_code) || 'ERROR', (answer && answer.message) || 'refused'));
        });
      });
    },
    emit(event, data) {
      socket.emit(event, data);
    },
    close() {
      socket.disconnect();
    },
  };
}
