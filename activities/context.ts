/**
 * What every activity derives from its StepContext: the artifact store, the base model as the engine
 * must see it, and config errors as non-retryable failures. No activity is defined here.
 */
import { resolve } from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { ErrorTypes } from '../schemas/errors';
import type { StepContext } from '../schemas/manifests';
import { ArtifactStore } from './artifacts';

export function storeFor(context: Pick<StepContext, 'config' | 'configDir'>): ArtifactStore {
  return new ArtifactStore(resolve(context.configDir, context.config.storage.artifacts));
}

/**
 * `model.base` as the engine must see it: a local folder written relative to the YAML file becomes
 * absolute (the engine runs in the project folder); `default` and hub ids pass through.
 */
export function baseModelFor(context: Pick<StepContext, 'config' | 'configDir'>): string {
  const { base } = context.config.model;
  return /^[./~]/.test(base) ? resolve(context.configDir, base.replace(/^~(?=\/|$)/, process.env.HOME ?? '~')) : base;
}

/** A problem the user must fix: the run fails at once with this message, without retries. */
export function configError(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorTypes.config);
}
