// Charts as inline SVG, drawn here (no chart library, nothing fetched). Labels are text nodes.
const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 640;
const HEIGHT = 240;
const PAD = { top: 16, right: 16, bottom: 40, left: 56 };

function svg(tag, attrs = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = String(text);
  return element;
}

function frame(title) {
  const root = svg('svg', {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'aria-label': title,
  });
  root.append(svg('title', {}, title));
  return root;
}

/** Four equal steps from zero that cover `value`, each a round number (1, 2, 2.5 or 5 times a
 * power of ten; whole numbers when the values are counts). */
function scale(value, integer) {
  const raw = Math.max(value || 0, integer ? 1 : 0) / 4;
  if (!(raw > 0)) return { max: 1, step: 0.25 };
  const power = 10 ** Math.floor(Math.log10(raw));
  const multiples = integer ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  let step = multiples.find((m) => m * power >= raw - 1e-9) * power;
  if (integer) step = Math.max(1, Math.round(step));
  return { max: step * 4, step };
}

function axes(root, labels, { max, step }, format) {
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  for (let i = 0; i <= 4; i += 1) {
    const y = PAD.top + plotH - (plotH * i) / 4;
    root.append(svg('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: 'grid' }));
    root.append(svg('text', { x: PAD.left - 6, y: y + 4, class: 'tick', 'text-anchor': 'end' }, format(step * i)));
  }
  // At most about ten labels along the bottom, so they stay readable.
  const every = Math.max(1, Math.ceil(labels.length / 10));
  labels.forEach((label, i) => {
    if (i % every !== 0) return;
    const x = PAD.left + (plotW * (i + 0.5)) / labels.length;
    root.append(svg('text', { x, y: HEIGHT - PAD.bottom + 16, class: 'tick', 'text-anchor': 'middle' }, label));
  });
  return { plotW, plotH, max };
}

function legend(root, series) {
  series.forEach((s, i) => {
    const x = PAD.left + i * 130;
    root.append(svg('rect', { x, y: HEIGHT - 14, width: 10, height: 10, class: `series-${s.cls}` }));
    root.append(svg('text', { x: x + 14, y: HEIGHT - 5, class: 'legend' }, s.name));
  });
}

/** Bars per label, one bar per series side by side. */
export function barChart({ title, labels, series, format = (v) => String(Math.round(v)) }) {
  const root = frame(title);
  const { plotW, plotH, max } = axes(root, labels, scale(Math.max(0, ...series.flatMap((s) => s.values.map((v) => v || 0))), true), format);
  const slot = plotW / Math.max(1, labels.length);
  const barW = Math.max(1, (slot * 0.8) / series.length);
  series.forEach((s, si) => {
    s.values.forEach((value, i) => {
      const height = (plotH * (value || 0)) / max;
      const x = PAD.left + slot * i + slot * 0.1 + barW * si;
      const bar = svg('rect', {
        x, y: PAD.top + plotH - height, width: barW, height, class: `bar series-${s.cls}`,
      });
      bar.append(svg('title', {}, `${labels[i]} · ${s.name}: ${format(value || 0)}`));
      root.append(bar);
    });
  });
  legend(root, series);
  return root;
}

/** A line per series; null values leave a gap. */
export function lineChart({ title, labels, series, format = (v) => String(Math.round(v)), max: fixedMax }) {
  const root = frame(title);
  const range = fixedMax
    ? { max: fixedMax, step: fixedMax / 4 }
    : scale(Math.max(0, ...series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined))), false);
  const { plotW, plotH, max } = axes(root, labels, range, format);
  series.forEach((s, si) => {
    let path = '';
    s.values.forEach((value, i) => {
      if (value === null || value === undefined) return;
      const x = PAD.left + (plotW * (i + 0.5)) / labels.length;
      const y = PAD.top + plotH - (plotH * value) / max;
      const previous = i > 0 && s.values[i - 1] !== null && s.values[i - 1] !== undefined;
      path += `${previous ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)} `;
      // Later series get smaller dots, so equal values stay visible one inside the other.
      const dot = svg('circle', { cx: x, cy: y, r: Math.max(2.5, 5.5 - si * 2), class: `dot series-${s.cls}` });
      dot.append(svg('title', {}, `${labels[i]} · ${s.name}: ${format(value)}`));
      root.append(dot);
    });
    if (path) root.insertBefore(svg('path', { d: path, class: `line series-${s.cls}` }), root.children[1] || null);
  });
  legend(root, series);
  return root;
}
