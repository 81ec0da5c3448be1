/**
 * The S3 client, configured the way the AWS CLI is: endpoint, region and credentials come from the
 * standard environment variables and profiles (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_REGION,
 * AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE), read by the SDK's default chains.
 */
import { S3Client } from '@aws-sdk/client-s3';

export function configuredEndpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
}

/**
 * Buckets are addressed as `endpoint/bucket/key` when an endpoint is configured (MinIO, SeaweedFS and
 * most self-hosted stores need it; R2 accepts it), as `bucket.endpoint/key` on AWS itself.
 */
export function s3ClientFromEnvironment(): S3Client {
  return new S3Client({ forcePathStyle: configuredEndpoint() !== undefined });
}
