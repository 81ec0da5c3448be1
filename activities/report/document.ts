/**
 * A report as a list of blocks, rendered two ways from the same content: Markdown (images as
 * files beside it) and one self-contained HTML file (styles inline, images as data URIs), so the
 * two never disagree and the HTML can be mailed or archived on its own.
 */

export type Cell = string | number | null;

export type Block =
  | { kind: 'heading'; level: 1 | 2 | 3; text: string }
  /** Text with `code` spans and **bold** runs; nothing else is interpreted. */
  | { kind: 'paragraph'; text: string }
  | { kind: 'list'; items: string[] }
  /** `numeric` columns are right-aligned. */
  | { kind: 'table'; header: string[]; rows: Cell[][]; numeric?: boolean[] }
  | { kind: 'image'; alt: string; file: string; mime: string; data: Uint8Array };

/** Numbers as people read them in a table: integers with thousands separators, others to `digits` decimals, null as a dash. */
export function formatCell(value: Cell, digits = 3): string {
  if (value === null) return '-';
  if (typeof value === 'string') return value;
  return Number.isInteger(value) ? value.toLocaleString('en-US') : value.toFixed(digits);
}

/** Headings of a block list moved down, to nest one report inside another. */
export function nested(blocks: Block[], by: 1 | 2): Block[] {
  return blocks.map((b) => (b.kind === 'heading' ? { ...b, level: Math.min(3, b.level + by) as 1 | 2 | 3 } : b));
}

/** A table as aligned plain text for a terminal: the first column left-aligned, numeric columns right-aligned. */
export function renderTextTable(table: Extract<Block, { kind: 'table' }>, indent = '  '): string {
  const lines = [table.header, ...table.rows.map((row) => row.map((c) => formatCell(c)))];
  const widths = table.header.map((_, n) => Math.max(...lines.map((line) => line[n]!.length)));
  return lines
    .map(
      (line) =>
        indent +
        line
          .map((cell, n) => (table.numeric?.[n] ? cell.padStart(widths[n]!) : cell.padEnd(widths[n]!)))
          .join('  ')
          .trimEnd(),
    )
    .join('\n');
}

const markdownCell = (text: string) => text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');

export function renderMarkdown(blocks: Block[]): string {
  const out: string[] = [];
  for (const block of blocks) {
    if (block.kind === 'heading') out.push(`${'#'.repeat(block.level)} ${block.text}`);
    else if (block.kind === 'paragraph') out.push(block.text);
    else if (block.kind === 'list') out.push(block.items.map((item) => `- ${item}`).join('\n'));
    else if (block.kind === 'image') out.push(`![${block.alt}](${block.file})`);
    else {
      const align = block.header.map((_, n) => (block.numeric?.[n] ? '---:' : '---'));
      const line = (cells: string[]) => `| ${cells.map(markdownCell).join(' | ')} |`;
      out.push([line(block.header), line(align), ...block.rows.map((row) => line(row.map((c) => formatCell(c))))].join('\n'));
    }
    out.push('');
  }
  return out.join('\n');
}

const escapeHtml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Escapes, then turns `code` and **bold** into elements. */
function inlineHtml(text: string): string {
  return escapeHtml(text)
    .replace(/`([^`]+)`/g, '<code>$1</code>')
    .replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>');
}

const STYLE = `
body { font: 15px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }
h1, h2, h3 { line-height: 1.2; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: 14px; }
th, td { border: 1px solid #d0d0d5; padding: .3rem .55rem; vertical-align: top; text-align: left; }
th { background: #f3f3f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f3f3f6; padding: 0 .2rem; border-radius: 3px; } img { max-width: 100%; }
`;

export function renderHtml(title: string, blocks: Block[]): string {
  const body = blocks.map((block) => {
    if (block.kind === 'heading') return `<h${block.level}>${inlineHtml(block.text)}</h${block.level}>`;
    if (block.kind === 'paragraph') return `<p>${inlineHtml(block.text)}</p>`;
    if (block.kind === 'list') return `<ul>${block.items.map((item) => `<li>${inlineHtml(item)}</li>`).join('')}</ul>`;
    if (block.kind === 'image') {
      const src = `data:${block.mime};base64,${Buffer.from(block.data).toString('base64')}`;
      return `<figure><img alt="${escapeHtml(block.alt)}" src="${src}"></figure>`;
    }
    const head = `<tr>${block.header.map((h) => `<th>${inlineHtml(h)}</th>`).join('')}</tr>`;
    const rows = block.rows.map(
      (row) => `<tr>${row.map((c, n) => `<td${block.numeric?.[n] ? ' class="num"' : ''}>${inlineHtml(formatCell(c))}</td>`).join('')}</tr>`,
    );
    return `<table><thead>${head}</thead><tbody>${rows.join('')}</tbody></table>`;
  });
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style></head><body>`,
    ...body,
    '</body></html>',
    '',
  ].join('\n');
}
