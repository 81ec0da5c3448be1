/**
 * `tuneline keys rotate | codec-server`: the payload encryption keys (lib/encryption.ts) and the
 * codec endpoint that lets the Temporal Web UI show encrypted payloads to someone holding them.
 */
import { chmodSync, existsSync, renameSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { AesGcmCodec, KEYS_ENV, codecServer, readKeyFile, rotateKeys } from '../../lib/encryption';
import { UserError } from '../config';

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('Payload encryption keys: histories at rest hold no data in clear.');

  keys
    .command('rotate')
    .description(
      `Create a key file, or add a new current key to one (older keys stay, to decrypt older histories). Set ${KEYS_ENV} to its path.`,
    )
    .requiredOption('--file <path>', 'the key file; keep it out of version control and readable only by the workers and auditors')
    .action((opts: { file: string }) => {
      const previous = existsSync(opts.file) ? readKeyFile(opts.file) : null;
      const next = rotateKeys(previous);
      const tmp = `${opts.file}.tmp`;
      writeFileSync(tmp, JSON.stringify(next, null, 2) + '\n', { mode: 0o600 });
      chmodSync(tmp, 0o600);
      renameSync(tmp, opts.file);
      console.log(
        `${opts.file}: new payloads are encrypted with key ${next.current}` +
          (previous ? `; ${Object.keys(previous.keys).length} older key(s) kept for older histories.` : '.') +
          ` Every worker and client needs ${KEYS_ENV}=${opts.file} (restart the workers to pick the new key up).`,
      );
    });

  keys
    .command('codec-server')
    .description('Serve /encode and /decode for the Temporal Web UI (its codec endpoint setting) and `temporal --codec-endpoint`.')
    .option('--port <n>', 'port', '8888')
    .option('--host <address>', 'address to listen on; whoever reaches it reads payloads in clear', '127.0.0.1')
    .option('--origin <url...>', 'Web UI origins allowed to call it', ['http://127.0.0.1:8233', 'http://localhost:8233'])
    .action(async (opts: { port: string; host: string; origin: string[] }) => {
      const file = process.env[KEYS_ENV];
      if (!file) throw new UserError(`${KEYS_ENV} is not set: point it at the key file the workers use`);
      const server = codecServer(new AesGcmCodec(readKeyFile(file)), opts.origin);
      await new Promise<void>((listening) => server.listen(Number(opts.port), opts.host, listening));
      console.log(`Codec endpoint http://${opts.host}:${opts.port} (origins ${opts.origin.join(', ')}); Ctrl-C stops it.`);
      await new Promise((stop) => process.once('SIGINT', stop).once('SIGTERM', stop));
      server.close();
    });
}
