// Building the page. Every piece of data becomes a text node: nothing a client sent is ever
// parsed as markup: the manager never assigns HTML strings to the page.

/** An element with attributes (strings, or event listeners for on* keys) and children
 * (elements, or anything else as text). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      element.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(key, '');
    } else {
      element.setAttribute(key, shown(String(value)));
    }
  }
  append(element, children);
  return element;
}

/** Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069). */
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;

/** Text as the page shows it: without bidirectional controls, which would reorder it (a file
 * `invoice\u202Efdp.exe` reads "invoiceexe.pdf") or whatever follows it on the page. The server
 * removes them from what it accepts now; this covers what was recorded before. */
export function shown(text) {
  return text.replace(BIDI_CONTROLS, '');
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(shown(String(child))));
  }
}

/** Replaces an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** "3 s", "5 min", "2 h 10 min", "3 d". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (seconds > 0 && seconds < 10 && seconds !== s) return `${seconds.toFixed(1)} s`;
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const rest = s % 60;
    return `${Math.floor(s / 60)} min${rest ? ` ${rest} s` : ''}`;
  }
  if (s < 86400) {
    const m = Math.floor((s % 3600) / 60);
    return `${Math.floor(s / 3600)} h${m ? ` ${m} min` : ''}`;
  }
  return `${Math.floor(s / 86400)} d`;
}

/** A wire timestamp (RFC 3339 UTC) as local date and time. */
export function when(timestamp) {
  if (!timestamp) return '–';
  const date = new Date(timestamp);
  if (Number.isNaN(date.getTime())) return timestamp;
  return date.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
}

/** Seconds since a wire timestamp. */
export function secondsSince(timestamp) {
  const then = new Date(timestamp).getTime();
  return Number.isNaN(then) ? null : (Date.now() - then) / 1000;
}

/** A same-origin path for a link the server made (file_url names the public host, which may
 * not be the one this page was loaded from; the download route is the same on every host). */
export function localLink(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return parsed.pathname + parsed.search;
  } catch {
    return null;
  }
}

export function badge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}

/** A message line for errors shown in a view. */
export function problem(error) {
  const code = error && error.code ? `${error.code}: ` : '';
  return h('p', { class: 'problem', role: 'alert' }, code + (error && error.message ? error.message : String(error)));
}
