/**
 * A grouped bar chart as SVG text: the metric comparison image of the evaluation report. Written
 * by hand (a few rectangles and labels) so the report needs no plotting runtime.
 */

export interface BarSeries {
  name: string;
  /** One value per group, in [0, max]; null draws no bar. */
  values: (number | null)[];
}

const COLORS = ['#2f6fdf', '#e07b39', '#5aa469', '#9467bd'];
const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

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
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
  ];
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
