/**
 * Hand-written SVG charts for the run report: line chart (loss curves), histogram, grouped bars
 * (accuracy) and a Gantt chart (step timings). Each returns a complete standalone <svg> document
 * fragment with explicit width/height, so it works inline in HTML and as a file next to report.md.
 */

export interface Series {
  name: string;
  points: { x: number; y: number }[];
  color?: string;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
const FONT = 'font-family="Helvetica, Arial, sans-serif"';

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** "Nice" tick values covering [lo, hi]. */
export function ticks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** A number for tables and captions: integers as they are, others to 4 significant digits. */
export function fmt(v: number): string {
  if (v === 0 || (Number.isInteger(v) && Math.abs(v) < 1e9)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

/** A formatter for tick labels with just enough decimals to tell neighbouring ticks apart. */
export function tickFormatter(values: number[]): (v: number) => string {
  const step = values.length > 1 ? Math.abs(values[1] - values[0]) : Math.abs(values[0] ?? 1) || 1;
  const top = Math.max(...values.map(Math.abs), 0);
  if (top >= 1e6 || (step < 1e-3 && top < 1e-2)) return (v) => (v === 0 ? '0' : v.toExponential(1));
  const decimals = Math.max(
    0,
    Math.ceil(-Math.log10(step) - 1e-9) + (Math.abs(step / 10 ** Math.floor(Math.log10(step)) - 2.5) < 1e-9 ? 1 : 0),
  );
  return (v) => v.toFixed(decimals);
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

const FRAME: Frame = { width: 640, height: 320, left: 64, right: 16, top: 36, bottom: 48 };

function axes(
  f: Frame,
  title: string,
  xLabel: string,
  yLabel: string,
  xs: number[],
  ys: number[],
  sx: (v: number) => number,
  sy: (v: number) => number,
  xFmt = tickFormatter(xs),
): string {
  const yFmt = tickFormatter(ys);
  const x0 = f.left;
  const x1 = f.width - f.right;
  const y0 = f.height - f.bottom;
  const y1 = f.top;
  const parts = [
    `<rect x="0" y="0" width="${f.width}" height="${f.height}" fill="#ffffff"/>`,
    `<text x="${f.width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold" ${FONT}>${escapeXml(title)}</text>`,
    `<line x1="${x0}" y1="${y0}" x2="${x1}" y2="${y0}" stroke="#333"/>`,
    `<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y1}" stroke="#333"/>`,
    `<text x="${(x0 + x1) / 2}" y="${f.height - 10}" text-anchor="middle" font-size="12" ${FONT}>${escapeXml(xLabel)}</text>`,
    `<text x="14" y="${(y0 + y1) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 ${(y0 + y1) / 2})" ${FONT}>${escapeXml(yLabel)}</text>`,
  ];
  for (const v of xs)
    parts.push(
      `<line x1="${sx(v)}" y1="${y0}" x2="${sx(v)}" y2="${y0 + 4}" stroke="#333"/><text x="${sx(v)}" y="${y0 + 16}" text-anchor="middle" font-size="11" ${FONT}>${escapeXml(xFmt(v))}</text>`,
    );
  for (const v of ys)
    parts.push(
      `<line x1="${x0}" y1="${sy(v)}" x2="${x1}" y2="${sy(v)}" stroke="#e5e5e5"/><text x="${x0 - 6}" y="${sy(v) + 4}" text-anchor="end" font-size="11" ${FONT}>${escapeXml(yFmt(v))}</text>`,
    );
  return parts.join('\n');
}

function svgDoc(f: Frame, body: string, label: string, attrs = ''): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" role="img" aria-label="${escapeXml(label)}"${attrs}>\n${body}\n</svg>\n`;
}

function emptyChart(title: string, why: string): string {
  const f = { ...FRAME, height: 120 };
  return svgDoc(
    f,
    `<rect x="0" y="0" width="${f.width}" height="${f.height}" fill="#fafafa" stroke="#ddd"/><text x="${f.width / 2}" y="50" text-anchor="middle" font-size="15" font-weight="bold" ${FONT}>${escapeXml(title)}</text><text x="${f.width / 2}" y="80" text-anchor="middle" font-size="12" fill="#777" ${FONT}>${escapeXml(why)}</text>`,
    title,
    ' data-empty="true"',
  );
}

/** One polyline per series, one point per logged value. */
export function lineChart(title: string, series: Series[], xLabel: string, yLabel: string): string {
  const all = series.flatMap((s) => s.points);
  if (!all.length) return emptyChart(title, 'no data logged');
  const f = FRAME;
  let [xlo, xhi] = [Math.min(...all.map((p) => p.x)), Math.max(...all.map((p) => p.x))];
  let [ylo, yhi] = [Math.min(...all.map((p) => p.y)), Math.max(...all.map((p) => p.y))];
  if (xhi === xlo) [xlo, xhi] = [xlo - 1, xhi + 1];
  const pad = (yhi - ylo) * 0.05 || Math.abs(yhi) * 0.05 || 1;
  [ylo, yhi] = [ylo - pad, yhi + pad];
  const sx = (v: number) => +(f.left + ((v - xlo) / (xhi - xlo)) * (f.width - f.left - f.right)).toFixed(2);
  const sy = (v: number) =>
    +(f.height - f.bottom - ((v - ylo) / (yhi - ylo)) * (f.height - f.top - f.bottom)).toFixed(2);
  const body = [
    axes(
      f,
      title,
      xLabel,
      yLabel,
      ticks(xlo, xhi, 6).filter((v) => Number.isInteger(v) || xhi - xlo < 6),
      ticks(ylo, yhi, 5),
      sx,
      sy,
    ),
  ];
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const pts = s.points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(' ');
    body.push(
      `<polyline data-series="${escapeXml(s.name)}" fill="none" stroke="${color}" stroke-width="2" points="${pts}"/>`,
    );
    if (s.points.length <= 60)
      for (const p of s.points) body.push(`<circle cx="${sx(p.x)}" cy="${sy(p.y)}" r="2.5" fill="${color}"/>`);
    body.push(
      `<rect x="${f.width - f.right - 150}" y="${f.top + 6 + i * 18}" width="12" height="3" fill="${color}"/><text x="${f.width - f.right - 132}" y="${f.top + 11 + i * 18}" font-size="12" ${FONT}>${escapeXml(s.name)}</text>`,
    );
  });
  return svgDoc(f, body.join('\n'), title);
}

export interface Histogram {
  edges: number[];
  counts: number[];
}

export function histogram(values: number[], bins = 40): Histogram {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return { edges: [], counts: [] };
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi === lo) [lo, hi] = [lo - 0.5, hi + 0.5];
  const width = (hi - lo) / bins;
  const counts = new Array<number>(bins).fill(0);
  for (const v of finite) counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
  return { edges: Array.from({ length: bins + 1 }, (_, i) => lo + i * width), counts };
}

/** Bars of a histogram; `marker` draws a vertical line (e.g. ΔH = 0). */
export function histogramChart(
  title: string,
  h: Histogram,
  xLabel: string,
  opts: { color?: string; marker?: number; yLabel?: string } = {},
): string {
  if (!h.counts.length) return emptyChart(title, 'no values');
  const f = FRAME;
  const [xlo, xhi] = [h.edges[0], h.edges[h.edges.length - 1]];
  const yhi = Math.max(...h.counts) * 1.08 || 1;
  const sx = (v: number) => +(f.left + ((v - xlo) / (xhi - xlo)) * (f.width - f.left - f.right)).toFixed(2);
  const sy = (v: number) => +(f.height - f.bottom - (v / yhi) * (f.height - f.top - f.bottom)).toFixed(2);
  const body = [
    axes(
      f,
      title,
      xLabel,
      opts.yLabel ?? 'samples',
      ticks(xlo, xhi, 6),
      ticks(0, yhi, 5).filter(Number.isInteger),
      sx,
      sy,
    ),
  ];
  h.counts.forEach((c, i) => {
    if (c > 0)
      body.push(
        `<rect class="bin" x="${sx(h.edges[i])}" y="${sy(c)}" width="${Math.max(0.5, sx(h.edges[i + 1]) - sx(h.edges[i]) - 0.5).toFixed(2)}" height="${(sy(0) - sy(c)).toFixed(2)}" fill="${opts.color ?? PALETTE[0]}"><title>${fmt(h.edges[i])} – ${fmt(h.edges[i + 1])}: ${c}</title></rect>`,
      );
  });
  if (opts.marker !== undefined && opts.marker >= xlo && opts.marker <= xhi)
    body.push(
      `<line x1="${sx(opts.marker)}" y1="${f.top}" x2="${sx(opts.marker)}" y2="${f.height - f.bottom}" stroke="#333" stroke-dasharray="4 3"/>`,
    );
  const n = h.counts.reduce((a, b) => a + b, 0);
  return svgDoc(f, body.join('\n'), title, ` data-n="${n}" data-bins="${h.counts.length}"`);
}

/** Grouped bars: one group per category, one bar per series (values 0..1, drawn as %). */
export function groupedBars(
  title: string,
  categories: string[],
  series: { name: string; values: (number | undefined)[] }[],
  yLabel: string,
): string {
  if (!categories.length || !series.length) return emptyChart(title, 'no results');
  const f = { ...FRAME, bottom: 56 };
  const yhi =
    Math.max(5, ...series.flatMap((s) => s.values.filter((v): v is number => v !== undefined).map((v) => 100 * v))) *
    1.15;
  const plotW = f.width - f.left - f.right;
  const groupW = plotW / categories.length;
  const barW = Math.min(48, (groupW * 0.8) / series.length);
  const sy = (v: number) => +(f.height - f.bottom - (v / yhi) * (f.height - f.top - f.bottom)).toFixed(2);
  const body = [axes(f, title, '', yLabel, [], ticks(0, yhi, 5), () => 0, sy)];
  categories.forEach((c, ci) => {
    const gx = f.left + ci * groupW + (groupW - barW * series.length) / 2;
    body.push(
      `<text x="${f.left + ci * groupW + groupW / 2}" y="${f.height - f.bottom + 16}" text-anchor="middle" font-size="12" ${FONT}>${escapeXml(c)}</text>`,
    );
    series.forEach((s, si) => {
      if (s.values[ci] === undefined) return;
      const v = 100 * s.values[ci];
      const x = gx + si * barW;
      body.push(
        `<rect class="bar" x="${x.toFixed(2)}" y="${sy(v)}" width="${(barW - 2).toFixed(2)}" height="${(sy(0) - sy(v)).toFixed(2)}" fill="${PALETTE[si % PALETTE.length]}"><title>${escapeXml(s.name)} ${escapeXml(c)}: ${v.toFixed(1)}%</title></rect>`,
      );
      body.push(
        `<text x="${(x + barW / 2 - 1).toFixed(2)}" y="${sy(v) - 4}" text-anchor="middle" font-size="10" ${FONT}>${v.toFixed(1)}</text>`,
      );
    });
  });
  series.forEach((s, i) =>
    body.push(
      `<rect x="${f.left + 8 + i * 170}" y="${f.height - 22}" width="12" height="12" fill="${PALETTE[i % PALETTE.length]}"/><text x="${f.left + 24 + i * 170}" y="${f.height - 12}" font-size="12" ${FONT}>${escapeXml(s.name)}</text>`,
    ),
  );
  return svgDoc(f, body.join('\n'), title);
}

export interface GanttRow {
  label: string;
  start: number;
  end: number;
  note?: string;
}

/** Step timings: one bar per step on a shared time axis (seconds from the first start). */
export function gantt(title: string, rows: GanttRow[]): string {
  if (!rows.length) return emptyChart(title, 'no step manifests');
  const rowH = 24;
  const f = { ...FRAME, width: 760, left: 320, height: FRAME.top + FRAME.bottom + rows.length * rowH };
  const t0 = Math.min(...rows.map((r) => r.start));
  const t1 = Math.max(...rows.map((r) => r.end), t0 + 1000);
  const sx = (ms: number) => +(f.left + ((ms - t0) / (t1 - t0)) * (f.width - f.left - f.right)).toFixed(2);
  const span = (t1 - t0) / 1000;
  const unit = span > 7200 ? 3600 : span > 120 ? 60 : 1;
  const unitName = unit === 3600 ? 'h' : unit === 60 ? 'min' : 's';
  const body = [
    axes(
      f,
      title,
      `time since the first step started (${unitName})`,
      '',
      ticks(0, span / unit, 6).map((v) => t0 + v * unit * 1000),
      [],
      sx,
      () => 0,
      (v) => fmt((v - t0) / 1000 / unit),
    ),
  ];
  rows.forEach((r, i) => {
    const y = f.top + i * rowH + 4;
    body.push(
      `<text x="${f.left - 8}" y="${y + 13}" text-anchor="end" font-size="12" ${FONT}>${escapeXml(r.label)}</text>`,
    );
    body.push(
      `<rect class="step" x="${sx(r.start)}" y="${y}" width="${Math.max(2, sx(r.end) - sx(r.start)).toFixed(2)}" height="${rowH - 8}" fill="${PALETTE[i % PALETTE.length]}"><title>${escapeXml(r.label)}: ${((r.end - r.start) / 1000).toFixed(1)} s</title></rect>`,
    );
    body.push(
      `<text x="${Math.min(sx(r.end) + 4, f.width - 60)}" y="${y + 13}" font-size="11" ${FONT}>${escapeXml(r.note ?? `${((r.end - r.start) / 1000).toFixed(1)} s`)}</text>`,
    );
  });
  return svgDoc(f, body.join('\n'), title);
}
