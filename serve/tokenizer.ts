/**
 * The exported model's tokenizer and prompt, rebuilt in JavaScript exactly as the engine builds them.
 *
 * `engine/prompts.py` renders a prompt from `prompt_format.json`: the model's chat template (with the
 * optional system prompt and the generation prompt) or the plain format (question, then a separator
 * special token), and tokenizes it without adding special tokens. The seq2seq format (encoder-decoder
 * models: T5, BART) is the plain text without a separator, tokenized WITH the tokenizer's special tokens
 * (T5 appends `</s>`, BART wraps `<s> ... </s>`), as the encoder was trained on. We do the same with
 * `@huggingface/jinja` and `@huggingface/tokenizers`, so the served model sees the very prompt ids it
 * was trained and parity-checked on. A conversation goes through the same chat template as
 * transformers' `apply_chat_template(messages, add_generation_prompt=True)` renders it; the plain
 * format's multi-turn layout is in serve/prompts.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import type { ExportManifest, PromptFormat } from '../schemas/engine';
import { readExportJson, readExportManifest, readPromptFormat, type JsonObject } from './export-files';
import { promptMessages, renderPlainPrompt, type Prompt } from './prompts';

export type { ChatMessage, Prompt } from './prompts';

/**
 * What `clean_up_tokenization_spaces` rewrites after decoding (@huggingface/tokenizers and transformers:
 * " ." becomes ".", " n't" becomes "n't", ...). Text ending in the start of one may still change when the
 * next token comes, so a stream holds such an ending back.
 */
const CLEANUP_PATTERNS = [' .', ' ?', ' !', ' ,', " ' ", " n't", " 'm", " 's", " 've", " 're"];

export interface PromptTokenizer {
  /** Prompt token ids for a question or a conversation, ready to be fed to the model. */
  encodePrompt(prompt: Prompt): number[];
  /** Text of generated ids, special tokens left out; '' for none. */
  decode(ids: number[]): string;
  /** Endings of decoded text that the next token may still rewrite (see CLEANUP_PATTERNS); none without cleanup. */
  unsettledEndings: string[];
  /** Tokens that end an answer (eos and the end-of-turn token); generation stops at any of them. */
  eosIds: number[];
  /** Id used for padding in a batch (masked out), and fed to the rows of a batch that have finished. */
  padId: number;
  promptFormat: PromptFormat;
}

/** A special token in tokenizer_config.json is a string or, from some writers, `{ content: "..." }`. */
function tokenText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as JsonObject).content === 'string') {
    return (value as JsonObject).content as string;
  }
  return null;
}

/** Chat template source: chat_template.jinja (transformers 5) or the copy in tokenizer_config.json. */
function readChatTemplate(exportDir: string, tokenizerConfig: JsonObject): string {
  const file = path.join(exportDir, 'chat_template.jinja');
  if (existsSync(file)) return readFileSync(file, 'utf8');
  if (typeof tokenizerConfig.chat_template === 'string') return tokenizerConfig.chat_template;
  throw new Error(`${exportDir}: prompt_format.json asks for a chat template, but there is none; re-run the export`);
}

/** `manifest`: export.json, when the caller has already read it. */
export function loadPromptTokenizer(exportDir: string, manifest: ExportManifest = readExportManifest(exportDir)): PromptTokenizer {
  const tokenizerConfig = readExportJson(exportDir, 'tokenizer_config.json');
  const promptFormat = readPromptFormat(exportDir);
  const tokenizer = new Tokenizer(readExportJson(exportDir, 'tokenizer.json'), tokenizerConfig);
  const eosIds = manifest.eosTokenIds;

  // transformers passes the tokenizer's special tokens to the template (bos_token, eos_token, ...).
  const specialTokens: Record<string, string> = {};
  for (const [key, value] of Object.entries(tokenizerConfig)) {
    const text = key.endsWith('_token') ? tokenText(value) : null;
    if (text !== null) specialTokens[key] = text;
  }

  let renderPrompt: (prompt: Prompt) => string;
  if (promptFormat.kind === 'chat_template') {
    const template = new Template(readChatTemplate(exportDir, tokenizerConfig));
    renderPrompt = (prompt) =>
      template.render({
        ...specialTokens,
        messages: promptMessages(prompt, promptFormat.systemPrompt),
        add_generation_prompt: true,
      });
  } else {
    // plain and seq2seq: seq2seq has no separator, so its text is the plain text without one.
    renderPrompt = (prompt) => renderPlainPrompt(promptFormat, prompt);
  }
  // Only the encoder of a seq2seq model was trained on prompts with the tokenizer's special tokens.
  const addSpecialTokens = promptFormat.kind === 'seq2seq';

  const generationConfigFile = path.join(exportDir, 'generation_config.json');
  const configuredPad = existsSync(generationConfigFile) ? readExportJson(exportDir, 'generation_config.json').pad_token_id : undefined;
  const padText = tokenText(tokenizerConfig.pad_token);
  const padFromConfig = padText === null ? undefined : tokenizer.token_to_id(padText);
  const padId = typeof configuredPad === 'number' ? configuredPad : (padFromConfig ?? eosIds[0]!);
  // The library's own default (true when the config does not say), passed explicitly so that
  // unsettledEndings describes the very decode below.
  const cleanup = tokenizerConfig.clean_up_tokenization_spaces !== false;

  return {
    encodePrompt: (prompt) => tokenizer.encode(renderPrompt(prompt), { add_special_tokens: addSpecialTokens }).ids,
    // The library throws on an empty list; an answer that is only an eos token has no text.
    decode: (ids) => (ids.length === 0 ? '' : tokenizer.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: cleanup })),
    unsettledEndings: cleanup ? CLEANUP_PATTERNS : [],
    eosIds,
    padId,
    promptFormat,
  };
}
