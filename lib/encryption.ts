/**
 * Payload encryption: an AES-256-GCM payload codec, so that what Temporal stores (workflow inputs
 * and results, activity inputs and results, heartbeats, memo) holds no dataset text, answers or
 * secrets in clear. Turned on by `TUNELINE_ENCRYPTION_KEYS`, the path of a key file:
 *
 *   { "current": "k2", "keys": { "k1": "<32 bytes, base64>", "k2": "<32 bytes, base64>" } }
 *
 * Payloads are encrypted with the current key and name it (`encryption-key-id`), so after a rotation
 * (`tuneline keys rotate`) old histories still decrypt with the older keys. Search attributes are
 * never encrypted by Temporal; tuneline puts only names and hashes in them.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { DataConverter, Payload, PayloadCodec } from '@temporalio/common';
import { z } from 'zod';

export const KEYS_ENV = 'TUNELINE_ENCRYPTION_KEYS';
export const ENCRYPTED_ENCODING = 'binary/encrypted';
const KEY_ID = 'encryption-key-id';

export const KeyFile = z.strictObject({
  current: z.string().min(1),
  keys: z.record(
    z.string(),
    z.string().refine((k) => Buffer.from(k, 'base64').length === 32, 'a key is 32 bytes, base64-encoded'),
  ),
});
export type KeyFile = z.infer<typeof KeyFile>;

export class EncryptionKeyError extends Error {}

/**
 * The error to show for one the SDK raised on an encrypted payload it could not read (a client with
 * no key file: `Unknown encoding: binary/encrypted`), or undefined for any other error.
 */
export function keyErrorOf(err: unknown): EncryptionKeyError | undefined {
  if (err instanceof EncryptionKeyError) return err;
  const message = err instanceof Error ? err.message : '';
  if (message.includes(ENCRYPTED_ENCODING))
    return new EncryptionKeyError(`this history is encrypted; set ${KEYS_ENV} to the key file its workers used`);
  return undefined;
}

/** A key file, checked: its current key must be one of its keys. */
export function readKeyFile(path: string): KeyFile {
  if (!existsSync(path))
    throw new EncryptionKeyError(`${KEYS_ENV}=${path}: no such file; create one with tuneline keys rotate --file ${path}`);
  const parsed = KeyFile.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!parsed.success)
    throw new EncryptionKeyError(
      `${path} is not a key file: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  if (!parsed.data.keys[parsed.data.current])
    throw new EncryptionKeyError(`${path}: the current key "${parsed.data.current}" is not among its keys`);
  return parsed.data;
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

/** A payload as JSON (base64 bytes): what a codec endpoint takes and gives, and what the codec seals. */
interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

const fromJson = (p: JsonPayload): Payload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
  data: Buffer.from(p.data ?? '', 'base64'),
});
const toJson = (p: Payload): JsonPayload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, b64(v)])),
  data: b64(p.data ?? new Uint8Array()),
});

export class AesGcmCodec implements PayloadCodec {
  private readonly keys: Map<string, Buffer>;

  constructor(private readonly file: KeyFile) {
    this.keys = new Map(Object.entries(file.keys).map(([id, key]) => [id, Buffer.from(key, 'base64')]));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const keyId = this.file.current;
    const key = this.keys.get(keyId)!;
    return payloads.map((payload) => {
      const plain = Buffer.from(JSON.stringify(toJson(payload)));
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return { metadata: { encoding: Buffer.from(ENCRYPTED_ENCODING), [KEY_ID]: Buffer.from(keyId) }, data: sealed };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (Buffer.from(payload.metadata?.encoding ?? []).toString() !== ENCRYPTED_ENCODING) return payload;
      const keyId = Buffer.from(payload.metadata?.[KEY_ID] ?? []).toString();
      const key = this.keys.get(keyId);
      if (!key)
        throw new EncryptionKeyError(
          `a payload is encrypted with key "${keyId}", which the key file does not hold; set ${KEYS_ENV} to a key file that has it`,
        );
      const sealed = Buffer.from(payload.data ?? []);
      let plain: Buffer;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
        decipher.setAuthTag(sealed.subarray(sealed.length - 16));
        plain = Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]);
      } catch {
        throw new EncryptionKeyError(
          `a payload encrypted with key "${keyId}" does not authenticate: it was changed, or the key is not the one that sealed it`,
        );
      }
      return fromJson(JSON.parse(plain.toString()) as JsonPayload);
    });
  }
}

/**
 * The data converter every client, worker and replay of this process uses: the default one, with
 * the encryption codec when `TUNELINE_ENCRYPTION_KEYS` names a key file.
 */
export function dataConverterFromEnv(env: NodeJS.ProcessEnv = process.env): DataConverter {
  const path = env[KEYS_ENV];
  return path ? { payloadCodecs: [new AesGcmCodec(readKeyFile(path))] } : {};
}

/** A new key file, or the given one with a new key made current (the old keys stay, for old histories). */
export function rotateKeys(previous: KeyFile | null, now = new Date()): KeyFile {
  const id = `k${now.toISOString().replace(/[-:]/g, '').replace(/\..+/, '')}`;
  const keyId = previous?.keys[id] ? `${id}-${randomBytes(2).toString('hex')}` : id;
  return { current: keyId, keys: { ...(previous?.keys ?? {}), [keyId]: randomBytes(32).toString('base64') } };
}

/**
 * A codec endpoint (`POST /encode`, `POST /decode`, `{payloads: [...]}` both ways) for the Temporal
 * Web UI (`--ui-codec-endpoint`, or its Codec Server setting) and `temporal --codec-endpoint`: whoever
 * can reach it reads the payloads in clear, so it listens on 127.0.0.1 unless told otherwise.
 */
export function codecServer(codec: PayloadCodec, allowedOrigins: string[]): Server {
  return createServer((req, res) => {
    const origin = req.headers.origin;
    if (origin && allowedOrigins.includes(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
      res.setHeader('Access-Control-Allow-Credentials', 'true');
    }
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'OPTIONS') return void res.writeHead(204).end();
    const route = req.url?.split('?')[0];
    if (req.method !== 'POST' || (route !== '/encode' && route !== '/decode'))
      return reply(404, { error: 'POST /encode or POST /decode with {"payloads": [...]}' });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let payloads: Payload[];
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { payloads?: JsonPayload[] };
        if (!Array.isArray(body.payloads)) throw new Error('no "payloads" array');
        payloads = body.payloads.map(fromJson);
      } catch (err) {
        return reply(400, { error: `the body must be JSON {"payloads": [...]}: ${err instanceof Error ? err.message : String(err)}` });
      }
      (route === '/encode' ? codec.encode(payloads) : codec.decode(payloads)).then(
        (out) => reply(200, { payloads: out.map(toJson) }),
        (err: unknown) => reply(err instanceof EncryptionKeyError ? 422 : 500, { error: err instanceof Error ? err.message : String(err) }),
      );
    });
  });
}
