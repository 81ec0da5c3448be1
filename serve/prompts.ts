/**
 * What a prompt is, and how the plain format renders one; the JavaScript side of `engine/prompts.py`.
 *
 * A prompt is a single question (one user turn, as the evaluation asks) or a conversation (as the chat
 * server keeps it). Both become a list of messages; when the conversation brings no system message, the
 * export's system prompt (`prompt_format.json`) goes first, as for a single question.
 *
 * Chat-template models render the messages with their own template (serve/tokenizer.ts). The plain format
 * (models without a chat template, e.g. the GPT-2 family) renders a conversation as training lays out an
 * example, once per exchange:
 *
 *     [system + "\n\n"]  (question + separator + answer + endOfTurn)*  question + separator
 *
 * so a single question renders exactly as training rendered its prompts: `[system\n\n]question<|answer|>`.
 * Earlier exchanges end with `endOfTurn` (the eos text), as every training example did.
 *
 * The seq2seq format (encoder-decoder models) has no separator token and no end-of-turn text inside the
 * encoder's input: a single question is `[system\n\n]question`, as training rendered it (serve/tokenizer.ts
 * adds the tokenizer's special tokens), and earlier exchanges come before it as lines of text, the question
 * and its answer each on a line and a blank line after the answer:
 *
 *     [system + "\n\n"]  (question + "\n" + answer + "\n\n")*  question
 */
import type { PromptFormat } from '../schemas/engine';

/** One turn of a conversation, as chat templates take them. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** A single question (one user turn) or a conversation that ends with the user's turn. */
export type Prompt = string | ChatMessage[];

const ROLES = new Set(['system', 'user', 'assistant']);

/** Every problem of a conversation, so the caller can fix them all at once; none for a good one. */
function conversationProblems(messages: unknown[], alternating: boolean): string[] {
  if (messages.length === 0) return ['conversation: has no messages; send at least one user message'];
  const problems: string[] = [];
  messages.forEach((message, n) => {
    const { role, content } = (message ?? {}) as Partial<ChatMessage>;
    if (typeof role !== 'string' || !ROLES.has(role)) {
      problems.push(`conversation message ${n + 1}: role ${JSON.stringify(role)}; must be system, user or assistant`);
    } else if (role === 'system' && n > 0) {
      problems.push(`conversation message ${n + 1}: a system message may only come first`);
    }
    if (typeof content !== 'string') problems.push(`conversation message ${n + 1}: content must be a string`);
  });
  const turns = messages.filter((message) => (message as ChatMessage | null)?.role !== 'system') as ChatMessage[];
  if (turns.length === 0) problems.push('conversation: has only a system message; add a user message');
  else if (turns[turns.length - 1]!.role !== 'user')
    problems.push('conversation: must end with a user message, which the answer replies to');
  if (alternating && turns.some((turn, n) => turn.role !== (n % 2 === 0 ? 'user' : 'assistant'))) {
    problems.push('conversation: this model (plain prompt format) needs user and assistant messages taking turns, starting with the user');
  }
  return problems;
}

/**
 * The messages a prompt stands for, checked: a string is one user turn; the export's system prompt goes
 * first when there is no system message. `alternating`: user and assistant must take turns (plain format).
 */
export function promptMessages(prompt: Prompt, systemPrompt: string | null, alternating = false): ChatMessage[] {
  const given: ChatMessage[] = typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt;
  if (!Array.isArray(given)) throw new Error('prompt: must be a question (a string) or a conversation (a list of messages)');
  const problems = conversationProblems(given, alternating);
  if (problems.length > 0) throw new Error(problems.join('\n'));
  // As engine/prompts.py chat_messages: an empty system prompt means none.
  const hasSystem = given[0]!.role === 'system';
  return !hasSystem && systemPrompt ? [{ role: 'system', content: systemPrompt }, ...given] : [...given];
}

/** The plain or seq2seq format's prompt text for a question or a conversation (see the layouts at the top). */
export function renderPlainPrompt(format: PromptFormat, prompt: Prompt): string {
  const messages = promptMessages(prompt, format.systemPrompt, true);
  const system = messages[0]!.role === 'system' ? messages.shift()!.content : '';
  let text = system ? `${system}\n\n` : '';
  if (format.kind === 'seq2seq') {
    const ending = (message: ChatMessage, n: number) => (n === messages.length - 1 ? '' : message.role === 'user' ? '\n' : '\n\n');
    return text + messages.map((message, n) => message.content + ending(message, n)).join('');
  }
  const separator = format.separator ?? '';
  const endOfTurn = format.endOfTurn ?? '';
  for (const message of messages) {
    text += message.role === 'user' ? `${message.content}${separator}` : `${message.content}${endOfTurn}`;
  }
  return text;
}
