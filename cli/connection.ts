/**
 * Where Temporal is: the environment names a cluster or Temporal Cloud; otherwise the embedded dev
 * server is used. Environment variables follow the Temporal CLI's names.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from '@temporalio/client';

export interface TemporalTarget {
  address: string;
  namespace: string;
  tls?: ConnectionOptions['tls'];
  apiKey?: string;
}

const readIf = (path: string | undefined) => (path ? readFileSync(path) : undefined);

/** The configured cluster, or undefined when none is set (then the embedded dev server runs). */
export function targetFromEnv(env: NodeJS.ProcessEnv = process.env): TemporalTarget | undefined {
  const address = env.TEMPORAL_ADDRESS;
  if (!address) return undefined;
  const apiKey = env.TEMPORAL_API_KEY || undefined;
  const cert = readIf(env.TEMPORAL_TLS_CLIENT_CERT_PATH);
  const key = readIf(env.TEMPORAL_TLS_CLIENT_KEY_PATH);
  const ca = readIf(env.TEMPORAL_TLS_SERVER_CA_CERT_PATH);
  const wantsTls = env.TEMPORAL_TLS === 'true' || Boolean(cert || ca || apiKey);
  const tls = wantsTls
    ? {
        ...(cert && key ? { clientCertPair: { crt: cert, key } } : {}),
        ...(ca ? { serverRootCACertificate: ca } : {}),
        ...(env.TEMPORAL_TLS_SERVER_NAME ? { serverNameOverride: env.TEMPORAL_TLS_SERVER_NAME } : {}),
      }
    : undefined;
  return { address, namespace: env.TEMPORAL_NAMESPACE || 'default', tls, apiKey };
}
