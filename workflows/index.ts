export { wmssPipeline } from './wmssPipeline';
