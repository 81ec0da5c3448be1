/** The workflow bundle's entry: every workflow type the workers register. */
export { dataStage } from './data-stage';
export { finetunePipeline } from './pipeline';
export { trial } from './trial';
export { sweep } from './sweep';
