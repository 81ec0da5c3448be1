/**
 * A stand-in for a `tuneline run` that dies hard: opens a session on the state folder's embedded dev
 * server (TUNELINE_HOME) as `tuneline run` does, says `ready ADDRESS` on stdout, and holds it until
 * killed. A user error (another run holds the server) is printed on stderr with exit code 2.
 */
import { UserError } from '../../cli/config';
import { openSession } from '../../cli/session';

try {
  const session = await openSession({ log: (line) => console.error(line) });
  console.log(`ready ${session.target.address}`);
  setInterval(() => {}, 60_000);
} catch (err) {
  console.error(err instanceof UserError ? err.message : err);
  process.exit(err instanceof UserError ? 2 : 1);
}
