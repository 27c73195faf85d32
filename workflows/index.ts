export { wmssPipeline } from './wmssPipeline';
export { deliverAlertWorkflow } from './alerts';
export { wmssSweep } from './wmssSweep';
