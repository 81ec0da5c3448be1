/**
 * The gpu task queue's activities: the one list its workers register and its workflow proxies are
 * typed from (`workflows/activities.ts`). Whatever runs the model: training, export, generation and
 * perplexity (one at a time per GPU, or per CPU machine).
 */
import { checkForgetting } from './evaluation/forgetting';
import { generateAnswers } from './evaluation/answers';
import { exportBaseModel, exportModel } from './export';
import { trainModel } from './train';

export const gpuActivities = { trainModel, exportModel, exportBaseModel, generateAnswers, checkForgetting };
