/**
 * Reviewer tokens, in the chat server's SQLite file (`storage.feedback`): `tuneline review invite`
 * makes a token for a named reviewer, the review page sends it, and the server votes under that
 * name. Only a token's sha256 is kept, so the file does not hold a usable token; a revoked
 * reviewer's tokens stop working at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { openDatabase } from './feedback';

export interface Reviewer {
  name: string;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
}

const digest = (token: string) => createHash('sha256').update(token).digest('hex');

export class ReviewerStore {
  private readonly db: Database.Database;

  constructor(readonly file: string) {
    this.db = openDatabase(
      file,
      `CREATE TABLE IF NOT EXISTS reviewer_tokens (
         token_sha256 TEXT PRIMARY KEY, reviewer TEXT NOT NULL, created_at TEXT NOT NULL,
         created_by TEXT NOT NULL, revoked_at TEXT);`,
    );
  }

  /** A new token for `name` (a reviewer may hold several, e.g. one per device); shown once, never stored. */
  invite(name: string, by: string): string {
    const token = `rvw_${randomBytes(24).toString('base64url')}`;
    this.db
      .prepare('INSERT INTO reviewer_tokens (token_sha256, reviewer, created_at, created_by) VALUES (?, ?, ?, ?)')
      .run(digest(token), name, new Date().toISOString(), by);
    return token;
  }

  /** The reviewer a token belongs to; null for an unknown or revoked token. */
  reviewerOf(token: string): string | null {
    const row = this.db.prepare('SELECT reviewer FROM reviewer_tokens WHERE token_sha256 = ? AND revoked_at IS NULL').get(digest(token)) as
      { reviewer: string } | undefined;
    return row?.reviewer ?? null;
  }

  /** Revokes every token of `name`; how many were live. */
  revoke(name: string): number {
    return this.db
      .prepare('UPDATE reviewer_tokens SET revoked_at = ? WHERE reviewer = ? AND revoked_at IS NULL')
      .run(new Date().toISOString(), name).changes;
  }

  /** Every token's reviewer, oldest first (the tokens themselves are not kept). */
  list(): Reviewer[] {
    return this.db
      .prepare(
        'SELECT reviewer AS name, created_at AS createdAt, created_by AS createdBy, revoked_at AS revokedAt FROM reviewer_tokens ORDER BY created_at',
      )
      .all() as Reviewer[];
  }

  close(): void {
    this.db.close();
  }
}
