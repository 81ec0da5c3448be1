/** Who this process runs as, for the records that say who started a run or moved a model. */
import { userInfo } from 'node:os';

export function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown'; // no passwd entry (some containers)
  }
}
