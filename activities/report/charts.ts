/**
 * Charts as SVG text: the grouped bars of the evaluation report, the lines of the sweep report. Written
 * by hand (a few rectangles and labels) so the report needs no plotting runtime.
 */

export interface BarSeries {
  name: string;
  /** One value per group, in [0, max]; null draws no bar. */
  values: (number | null)[];
}

const COLORS = ['#2f6fdf', '#e07b39', '#5aa469', '#9467bd'];
/** For charts with more series than the bar chart's four. */
const COLORS_WIDE = [...COLORS, '#c44e52', '#8c564b', '#17becf', '#7f7f7f', '#bcbd22', '#e377c2'];
const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The opening of every chart: the canvas, a white background, the title. */
const svgOpen = (width: number, height: number, title: string): string[] => [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
  `<rect width="${width}" height="${height}" fill="white"/>`,
  `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
];

export function groupedBarChartSvg(options: { title: string; groups: string[]; series: BarSeries[]; max: number }): string {
  const { title, groups, series, max } = options;
  const width = 640;
  const height = 320;
  const plot = { left: 48, right: 16, top: 40, bottom: 56 };
  const plotWidth = width - plot.left - plot.right;
  const plotHeight = height - plot.top - plot.bottom;
  const groupWidth = plotWidth / Math.max(1, groups.length);
  const barWidth = (groupWidth * 0.75) / Math.max(1, series.length);
  const y = (value: number) => plot.top + plotHeight * (1 - Math.min(Math.max(value / max, 0), 1));
  const parts = svgOpen(width, height, title);
  for (let tick = 0; tick <= 4; tick++) {
    const value = (max * tick) / 4;
    parts.push(
      `<line x1="${plot.left}" x2="${width - plot.right}" y1="${y(value)}" y2="${y(value)}" stroke="#e3e3e8"/>`,
      `<text x="${plot.left - 6}" y="${y(value) + 4}" text-anchor="end" fill="#555">${Number(value.toFixed(2))}</text>`,
    );
  }
  groups.forEach((group, g) => {
    const groupLeft = plot.left + g * groupWidth + groupWidth * 0.125;
    series.forEach((s, n) => {
      const value = s.values[g];
      if (value === null || value === undefined) return;
      const x = groupLeft + n * barWidth;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y(value).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(plot.top + plotHeight - y(value)).toFixed(1)}" fill="${COLORS[n % COLORS.length]}"><title>${escapeXml(`${s.name} ${group}: ${value.toFixed(3)}`)}</title></rect>`,
      );
    });
    parts.push(
      `<text x="${(plot.left + (g + 0.5) * groupWidth).toFixed(1)}" y="${plot.top + plotHeight + 18}" text-anchor="middle">${escapeXml(group)}</text>`,
    );
  });
  series.forEach((s, n) => {
    const x = plot.left + n * 130;
    parts.push(
      `<rect x="${x}" y="${height - 22}" width="12" height="12" fill="${COLORS[n % COLORS.length]}"/>`,
      `<text x="${x + 18}" y="${height - 12}">${escapeXml(s.name)}</text>`,
    );
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}

export interface LineSeries {
  name: string;
  points: Array<{ x: number; y: number }>;
  /** Drawn dashed, e.g. a trial that successive halving stopped. */
  dashed?: boolean;
}

/**
 * Lines over a numeric x axis (one per series, points marked), with optional dashed vertical
 * markers (rungs) and horizontal reference lines (a value that has no x, e.g. full fine-tuning on a
 * chart over LoRA rank). `xTicks` places the x labels; `logX` spaces them by powers of two.
 */
export function lineChartSvg(options: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  xTicks: number[];
  logX?: boolean;
  verticals?: Array<{ x: number; label: string }>;
  references?: Array<{ y: number; label: string }>;
}): string {
  const { title, xLabel, yLabel, series, xTicks, verticals = [], references = [] } = options;
  const width = 640;
  const legendRows = Math.ceil((series.length + references.length) / 3);
  const height = 300 + legendRows * 18;
  const plot = { left: 56, right: 16, top: 40, bottom: 52 + legendRows * 18 };
  const scaleX = (x: number) => (options.logX ? Math.log2(x) : x);
  const xs = [...xTicks, ...series.flatMap((s) => s.points.map((p) => p.x)), ...verticals.map((v) => v.x)].map(scaleX);
  const ys = [...series.flatMap((s) => s.points.map((p) => p.y)), ...references.map((r) => r.y)];
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs)];
  const pad = (Math.max(...ys) - Math.min(...ys)) * 0.08 || Math.abs(ys[0] ?? 1) * 0.05 || 1;
  const [yMin, yMax] = [Math.min(...ys) - pad, Math.max(...ys) + pad];
  const px = (x: number) => plot.left + ((scaleX(x) - xMin) / (xMax - xMin || 1)) * (width - plot.left - plot.right);
  const py = (y: number) => plot.top + (1 - (y - yMin) / (yMax - yMin)) * (height - plot.top - plot.bottom);
  const bottom = height - plot.bottom;
  const color = (n: number) => COLORS_WIDE[n % COLORS_WIDE.length]!;
  const parts = [
    ...svgOpen(width, height, title),
    `<text x="${(plot.left + width - plot.right) / 2}" y="${bottom + 34}" text-anchor="middle" fill="#555">${escapeXml(xLabel)}</text>`,
    `<text transform="translate(14 ${(plot.top + bottom) / 2}) rotate(-90)" text-anchor="middle" fill="#555">${escapeXml(yLabel)}</text>`,
  ];
  for (let tick = 0; tick <= 4; tick++) {
    const value = yMin + ((yMax - yMin) * tick) / 4;
    parts.push(
      `<line x1="${plot.left}" x2="${width - plot.right}" y1="${py(value).toFixed(1)}" y2="${py(value).toFixed(1)}" stroke="#e3e3e8"/>`,
      `<text x="${plot.left - 6}" y="${(py(value) + 4).toFixed(1)}" text-anchor="end" fill="#555">${Number(value.toPrecision(3))}</text>`,
    );
  }
  for (const x of xTicks) parts.push(`<text x="${px(x).toFixed(1)}" y="${bottom + 16}" text-anchor="middle" fill="#555">${x}</text>`);
  for (const v of verticals) {
    parts.push(
      `<line x1="${px(v.x).toFixed(1)}" x2="${px(v.x).toFixed(1)}" y1="${plot.top}" y2="${bottom}" stroke="#888" stroke-dasharray="4 3"/>`,
      `<text x="${(px(v.x) + 3).toFixed(1)}" y="${plot.top + 10}" fill="#555" font-size="11">${escapeXml(v.label)}</text>`,
    );
  }
  const legend: Array<{ name: string; color: string; dashed: boolean }> = [];
  references.forEach((r, n) => {
    const c = color(series.length + n);
    parts.push(
      `<line x1="${plot.left}" x2="${width - plot.right}" y1="${py(r.y).toFixed(1)}" y2="${py(r.y).toFixed(1)}" stroke="${c}" stroke-width="2" stroke-dasharray="8 4"><title>${escapeXml(`${r.label}: ${r.y.toFixed(4)}`)}</title></line>`,
    );
    legend.push({ name: r.label, color: c, dashed: true });
  });
  series.forEach((s, n) => {
    const c = color(n);
    const points = [...s.points].sort((a, b) => a.x - b.x);
    if (points.length > 1)
      parts.push(
        `<polyline fill="none" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''} points="${points.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ')}"/>`,
      );
    for (const p of points)
      parts.push(
        `<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3.5" fill="${c}"><title>${escapeXml(`${s.name} at ${p.x}: ${p.y.toFixed(4)}`)}</title></circle>`,
      );
    legend.push({ name: s.name, color: c, dashed: s.dashed ?? false });
  });
  legend.forEach((item, n) => {
    const x = plot.left + (n % 3) * 195;
    const y = bottom + 50 + Math.floor(n / 3) * 18;
    parts.push(
      `<line x1="${x}" x2="${x + 16}" y1="${y - 4}" y2="${y - 4}" stroke="${item.color}" stroke-width="2"${item.dashed ? ' stroke-dasharray="4 2"' : ''}/>`,
      `<text x="${x + 22}" y="${y}">${escapeXml(item.name)}</text>`,
    );
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}
