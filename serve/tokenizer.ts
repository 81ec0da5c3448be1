/**
 * The exported model's tokenizer and prompt, rebuilt in JavaScript exactly as the engine builds them.
 *
 * `engine/prompts.py` renders a prompt from `prompt_format.json`: the model's chat template (with the
 * optional system prompt and the generation prompt) or the plain format (question, then a separator
 * special token), and tokenizes it without adding special tokens. We do the same with
 * `@huggingface/jinja` and `@huggingface/tokenizers`, so the served model sees the very prompt ids it
 * was trained and parity-checked on.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

/** `prompt_format.json`, as `engine/prompts.py` (PromptFormat) writes it. */
export interface PromptFormat {
  kind: 'chat_template' | 'plain';
  systemPrompt: string | null;
  separator: string | null;
  endOfTurn: string | null;
}

export interface PromptTokenizer {
  /** Prompt token ids for one question, ready to be fed to the model. */
  encodePrompt(question: string): number[];
  /** Text of generated ids, special tokens left out. */
  decode(ids: number[]): string;
  /** Tokens that end an answer (eos and the end-of-turn token); generation stops at any of them. */
  eosIds: number[];
  /** Id used for left padding in a batch; masked out, so any id would do. */
  padId: number;
  promptFormat: PromptFormat;
}

type JsonObject = Record<string, unknown>;

function readJson(file: string): JsonObject {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as JsonObject;
  } catch (error) {
    throw new Error(`${file}: cannot read the exported model's file (${(error as Error).message}); re-run the export`);
  }
}

/** A special token in tokenizer_config.json is a string or, from some writers, `{ content: "..." }`. */
function tokenText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as JsonObject).content === 'string') {
    return (value as JsonObject).content as string;
  }
  return null;
}

/** The ids that end generation: export.json's manifest first, generation_config.json otherwise. */
function readEosIds(exportDir: string): number[] {
  const manifestFile = path.join(exportDir, 'export.json');
  if (existsSync(manifestFile)) {
    const ids = readJson(manifestFile).eosTokenIds;
    if (Array.isArray(ids) && ids.length > 0) return ids.map(Number);
  }
  const eos = readJson(path.join(exportDir, 'generation_config.json')).eos_token_id;
  const ids = Array.isArray(eos) ? eos.map(Number) : typeof eos === 'number' ? [eos] : [];
  if (ids.length === 0) throw new Error(`${exportDir}: no eos token ids in export.json or generation_config.json`);
  return ids;
}

/** Chat template source: chat_template.jinja (transformers 5) or the copy in tokenizer_config.json. */
function readChatTemplate(exportDir: string, tokenizerConfig: JsonObject): string {
  const file = path.join(exportDir, 'chat_template.jinja');
  if (existsSync(file)) return readFileSync(file, 'utf8');
  if (typeof tokenizerConfig.chat_template === 'string') return tokenizerConfig.chat_template;
  throw new Error(`${exportDir}: prompt_format.json asks for a chat template, but there is none; re-run the export`);
}

/** Messages as engine/prompts.py chat_messages builds them for a prompt (no answer). */
function chatMessages(systemPrompt: string | null, question: string): Array<{ role: string; content: string }> {
  const messages = systemPrompt ? [{ role: 'system', content: systemPrompt }] : [];
  messages.push({ role: 'user', content: question });
  return messages;
}

export function loadPromptTokenizer(exportDir: string): PromptTokenizer {
  const tokenizerJson = readJson(path.join(exportDir, 'tokenizer.json'));
  const tokenizerConfig = readJson(path.join(exportDir, 'tokenizer_config.json'));
  const promptFormat = readJson(path.join(exportDir, 'prompt_format.json')) as unknown as PromptFormat;
  const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  const eosIds = readEosIds(exportDir);

  // transformers passes the tokenizer's special tokens to the template (bos_token, eos_token, ...).
  const specialTokens: Record<string, string> = {};
  for (const [key, value] of Object.entries(tokenizerConfig)) {
    const text = key.endsWith('_token') ? tokenText(value) : null;
    if (text !== null) specialTokens[key] = text;
  }

  let renderPrompt: (question: string) => string;
  if (promptFormat.kind === 'chat_template') {
    const template = new Template(readChatTemplate(exportDir, tokenizerConfig));
    renderPrompt = (question) =>
      template.render({
        ...specialTokens,
        messages: chatMessages(promptFormat.systemPrompt, question),
        add_generation_prompt: true,
      });
  } else if (promptFormat.kind === 'plain') {
    const separator = promptFormat.separator ?? '';
    const system = promptFormat.systemPrompt ? `${promptFormat.systemPrompt}\n\n` : '';
    renderPrompt = (question) => `${system}${question}${separator}`;
  } else {
    throw new Error(`${exportDir}/prompt_format.json: unknown kind ${JSON.stringify(promptFormat.kind)}`);
  }

  const generationConfigFile = path.join(exportDir, 'generation_config.json');
  const configuredPad = existsSync(generationConfigFile) ? readJson(generationConfigFile).pad_token_id : undefined;
  const padText = tokenText(tokenizerConfig.pad_token);
  const padFromConfig = padText === null ? undefined : tokenizer.token_to_id(padText);
  const padId = typeof configuredPad === 'number' ? configuredPad : (padFromConfig ?? eosIds[0]!);

  return {
    encodePrompt: (question) => tokenizer.encode(renderPrompt(question), { add_special_tokens: false }).ids,
    decode: (ids) => tokenizer.decode(ids, { skip_special_tokens: true }),
    eosIds,
    padId,
    promptFormat,
  };
}
