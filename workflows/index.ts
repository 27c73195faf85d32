export { wmssPipeline } from './wmssPipeline';
export { deliverAlertWorkflow } from './alerts';
