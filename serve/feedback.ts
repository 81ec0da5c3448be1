/**
 * Feedback on served answers, in SQLite (better-sqlite3): every answer the chat server gives, with the
 * model that gave it and the conversation it answered, and every rating of it (up or down, an optional
 * comment, an optional corrected answer). `exportFeedback` turns rated answers into dataset rows a
 * retraining run can read: a corrected answer is the target, an answer rated up is kept as it was,
 * an answer rated down without a correction is flagged (`rejected`) so it is never a target.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { z } from 'zod';
import type { ChatMessage } from './prompts';

export const Rating = z.strictObject({
  completion_id: z.string().min(1),
  rating: z.enum(['up', 'down']),
  comment: z.string().max(4000).optional(),
  correction: z.string().min(1).max(8000).optional().describe('What the answer should have been.'),
});
export type Rating = z.infer<typeof Rating>;

export interface AnswerRecord {
  id: string;
  model: string;
  messages: ChatMessage[];
  answer: string;
  knownPairs: string[];
}

/** One dataset row per rated answer (its latest rating), with the question it answered. */
export interface FeedbackRow {
  id: string;
  question: string;
  /** The target: the correction, else the model's answer when rated up; empty when rejected. */
  answer: string;
  rating: 'up' | 'down';
  rejected: boolean;
  modelAnswer: string;
  comment: string;
  model: string;
  /** The earlier turns of the conversation, as JSON. */
  conversation: string;
  ratedAt: string;
}

/** The chat server's SQLite file (answers, ratings, reviewer tokens), its folder made, with `schema` applied. */
export function openDatabase(file: string, schema: string): Database.Database {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  // Readers (tuneline feedback export, review invite) and the server write to it at once.
  db.pragma('journal_mode = WAL');
  db.exec(schema);
  return db;
}

export class FeedbackStore {
  private readonly db: Database.Database;

  constructor(readonly file: string) {
    this.db = openDatabase(
      file,
      `
      CREATE TABLE IF NOT EXISTS answers (
        id TEXT PRIMARY KEY, model TEXT NOT NULL, messages TEXT NOT NULL, answer TEXT NOT NULL,
        known_pairs TEXT NOT NULL, created_at TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS ratings (
        id INTEGER PRIMARY KEY AUTOINCREMENT, answer_id TEXT NOT NULL REFERENCES answers(id),
        rating TEXT NOT NULL CHECK (rating IN ('up', 'down')), comment TEXT, correction TEXT,
        client TEXT, created_at TEXT NOT NULL);
    `,
    );
  }

  recordAnswer(answer: AnswerRecord): void {
    this.db
      .prepare('INSERT INTO answers (id, model, messages, answer, known_pairs, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(
        answer.id,
        answer.model,
        JSON.stringify(answer.messages),
        answer.answer,
        JSON.stringify(answer.knownPairs),
        new Date().toISOString(),
      );
  }

  /** Stores a rating; false when no answer has that id. */
  rate(rating: Rating, client: string): number | null {
    if (!this.db.prepare('SELECT 1 FROM answers WHERE id = ?').get(rating.completion_id)) return null;
    const result = this.db
      .prepare('INSERT INTO ratings (answer_id, rating, comment, correction, client, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(rating.completion_id, rating.rating, rating.comment ?? null, rating.correction ?? null, client, new Date().toISOString());
    return Number(result.lastInsertRowid);
  }

  ratings(): Array<{ answer_id: string; rating: string; comment: string | null; correction: string | null; client: string }> {
    return this.db.prepare('SELECT answer_id, rating, comment, correction, client FROM ratings ORDER BY id').all() as never;
  }

  /** Every rated answer as a dataset row (its latest rating counts), oldest first; `since` an ISO time. */
  exportRows(since?: string): FeedbackRow[] {
    const rows = this.db
      .prepare(
        `SELECT a.id, a.model, a.messages, a.answer, r.rating, r.comment, r.correction, r.created_at
         FROM ratings r JOIN answers a ON a.id = r.answer_id
         WHERE r.id IN (SELECT MAX(id) FROM ratings GROUP BY answer_id) AND r.created_at >= ?
         ORDER BY r.id`,
      )
      .all(since ?? '') as Array<{
      id: string;
      model: string;
      messages: string;
      answer: string;
      rating: 'up' | 'down';
      comment: string | null;
      correction: string | null;
      created_at: string;
    }>;
    return rows.map((r) => {
      const messages = JSON.parse(r.messages) as ChatMessage[];
      const question = messages.at(-1)!.content;
      const target = r.correction ?? (r.rating === 'up' ? r.answer : '');
      return {
        id: r.id,
        question,
        answer: target,
        rating: r.rating,
        rejected: r.rating === 'down' && !r.correction,
        modelAnswer: r.answer,
        comment: r.comment ?? '',
        model: r.model,
        conversation: JSON.stringify(messages.slice(0, -1)),
        ratedAt: r.created_at,
      };
    });
  }

  close(): void {
    this.db.close();
  }
}
