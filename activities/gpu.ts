/**
 * The gpu task queue's activities: the one list its workers register and its workflow proxies are
 * typed from (`workflows/activities.ts`). Whatever runs a model through the engine or generates with
 * one: training, exports (the embedder's too), generation and perplexity (one at a time per GPU, or
 * per CPU machine).
 */
import { checkForgetting } from './evaluation/forgetting';
import { generateAnswers } from './evaluation/answers';
import { exportBaseModel, exportModel } from './export';
import { exportEmbedder } from './grounding';
import { trainModel } from './train';

export const gpuActivities = { trainModel, exportModel, exportBaseModel, exportEmbedder, generateAnswers, checkForgetting };
