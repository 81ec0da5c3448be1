import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AesGcmCodec,
  ENCRYPTED_ENCODING,
  EncryptionKeyError,
  codecServer,
  dataConverterFromEnv,
  readKeyFile,
  rotateKeys,
} from '../../lib/encryption';
import { tempDir } from '../integration/harness';

const secret = { question: 'How do I pair the Nimbus Buds?', answer: 'Hold the case button for 3 seconds.' };
const payload = () => defaultPayloadConverter.toPayload(secret);
const first = rotateKeys(null, new Date('2026-01-01T00:00:00Z'));
const second = rotateKeys(first, new Date('2026-06-01T00:00:00Z'));

describe('the payload encryption codec', () => {
  it('seals each payload with the current key, naming it, and opens it again', async () => {
    const codec = new AesGcmCodec(first);
    const [sealed] = await codec.encode([payload()]);
    expect(Buffer.from(sealed!.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(sealed!.metadata!['encryption-key-id']!).toString()).toBe(first.current);
    const bytes = Buffer.from(sealed!.data!).toString('latin1');
    expect(bytes).not.toContain('Nimbus');
    expect(bytes).not.toContain('json/plain');
    const [opened] = await codec.decode([sealed!]);
    expect(defaultPayloadConverter.fromPayload(opened!)).toEqual(secret);
    // The same payload twice is sealed differently (a fresh IV each time).
    const [again] = await codec.encode([payload()]);
    expect(Buffer.from(again!.data!)).not.toEqual(Buffer.from(sealed!.data!));
  });

  it('after a rotation, seals with the new key and still opens what the old one sealed', async () => {
    expect(Object.keys(second.keys)).toEqual([first.current, second.current]);
    const [old] = await new AesGcmCodec(first).encode([payload()]);
    const rotated = new AesGcmCodec(second);
    expect(defaultPayloadConverter.fromPayload((await rotated.decode([old!]))[0]!)).toEqual(secret);
    const [fresh] = await rotated.encode([payload()]);
    expect(Buffer.from(fresh!.metadata!['encryption-key-id']!).toString()).toBe(second.current);
  });

  it('refuses a payload sealed with a key it lacks, or changed after sealing, naming why', async () => {
    const [sealed] = await new AesGcmCodec(second).encode([payload()]);
    await expect(new AesGcmCodec(first).decode([sealed!])).rejects.toThrow(
      new EncryptionKeyError(
        `a payload is encrypted with key "${second.current}", which the key file does not hold; set TUNELINE_ENCRYPTION_KEYS to a key file that has it`,
      ),
    );
    const tampered = Buffer.from(sealed!.data!);
    tampered[20] = tampered[20]! ^ 1;
    await expect(new AesGcmCodec(second).decode([{ ...sealed!, data: tampered }])).rejects.toThrow(/does not authenticate/);
  });

  it('passes unencrypted payloads through, so histories from before encryption stay readable', async () => {
    const plain = payload();
    expect(await new AesGcmCodec(first).decode([plain])).toEqual([plain]);
  });

  it('reads a key file from the environment, and says what is wrong with a bad one', () => {
    const dir = tempDir();
    const good = join(dir, 'keys.json');
    writeFileSync(good, JSON.stringify(first));
    expect(dataConverterFromEnv({ TUNELINE_ENCRYPTION_KEYS: good }).payloadCodecs).toHaveLength(1);
    expect(dataConverterFromEnv({})).toEqual({});
    expect(() => readKeyFile(join(dir, 'none.json'))).toThrow(/no such file; create one with tuneline keys rotate --file/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ current: 'k9', keys: { k1: 'c2hvcnQ=' } }));
    expect(() => readKeyFile(bad)).toThrow(/keys\.k1: a key is 32 bytes, base64-encoded/);
    writeFileSync(bad, JSON.stringify({ current: 'k9', keys: first.keys }));
    expect(() => readKeyFile(bad)).toThrow('the current key "k9" is not among its keys');
  });
});

describe('the codec endpoint', () => {
  const server = codecServer(new AesGcmCodec(second), ['http://127.0.0.1:8233']);
  const ready = new Promise<string>((up) =>
    server.listen(0, '127.0.0.1', () => up(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
  afterAll(() => server.close());

  const post = async (path: string, body: unknown, origin = 'http://127.0.0.1:8233') =>
    fetch(`${await ready}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Origin: origin },
      body: JSON.stringify(body),
    });
  const json = (p: Payload) => ({
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(p.data ?? []).toString('base64'),
  });

  it('decodes what the workers encoded, for the Web UI origin it allows', async () => {
    const [sealed] = await new AesGcmCodec(first).encode([payload()]);
    const res = await post('/decode', { payloads: [json(sealed!)] });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:8233');
    const body = (await res.json()) as { payloads: Array<{ data: string }> };
    expect(JSON.parse(Buffer.from(body.payloads[0]!.data, 'base64').toString())).toEqual(secret);
    const encoded = (await (await post('/encode', { payloads: [json(payload())] })).json()) as {
      payloads: Array<{ metadata: { encoding: string } }>;
    };
    expect(Buffer.from(encoded.payloads[0]!.metadata.encoding, 'base64').toString()).toBe(ENCRYPTED_ENCODING);
  });

  it('answers a bad request with its status and a readable reason', async () => {
    expect(
      (await post('/decode', { payloads: [json(payload())] }, 'http://elsewhere.example')).headers.get('access-control-allow-origin'),
    ).toBeNull();
    const bad = await post('/decode', { nothing: true });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toContain('no "payloads" array');
    expect((await post('/elsewhere', {})).status).toBe(404);
    const [foreign] = await new AesGcmCodec(rotateKeys(null, new Date(0))).encode([payload()]);
    const unknown = await post('/decode', { payloads: [json(foreign!)] });
    expect(unknown.status).toBe(422);
    expect(((await unknown.json()) as { error: string }).error).toContain('which the key file does not hold');
  });
});
