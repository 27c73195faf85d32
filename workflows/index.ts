export { wmssPipeline } from './wmssPipeline';
export { wmssSweep } from './wmssSweep';
