/**
 * The cpu task queue's activities: the one list its workers register and its workflow proxies are
 * typed from (`workflows/activities.ts`). Light work: config checks, data steps, the retrieval
 * baseline, scoring, the run and sweep manifests and their reports.
 */
import {
  cleanData,
  dedupData,
  ingestData,
  prepareFeedbackFiles,
  prepareKnowledgeFiles,
  prepareSource,
  splitData,
  writeDataReport,
} from './data-stage';
import { prepareEvaluationSet } from './evaluation/eval-set';
import { buildRetrievalIndex, retrieveKnownPairs } from './grounding';
import { retrieveAnswers } from './evaluation/retrieval';
import { scoreAnswers } from './evaluation/score';
import { writeRunReport } from './report/run-report';
import { applyTrainingOverrides, validatePipelineConfig } from './run-config';
import { checkUnchanged, promoteModel } from './registry';
import { drawReviewSample } from './review';
import { recordRun } from './run-record';
import { recordSweep } from './sweep-record';

export const cpuActivities = {
  validatePipelineConfig,
  applyTrainingOverrides,
  prepareSource,
  ingestData,
  cleanData,
  dedupData,
  splitData,
  prepareFeedbackFiles,
  prepareKnowledgeFiles,
  writeDataReport,
  buildRetrievalIndex,
  retrieveKnownPairs,
  prepareEvaluationSet,
  retrieveAnswers,
  scoreAnswers,
  recordRun,
  writeRunReport,
  recordSweep,
  promoteModel,
  checkUnchanged,
  drawReviewSample,
};
