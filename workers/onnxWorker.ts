/**
 * Entry point: `node dist/workers/onnxWorker.js [--threads N] [--onnx-queue wmss-onnx] [--address host:7233] [flags]`,
 * the same as `wmss worker onnx [flags]` (workers/startOnnxWorker.ts).
 */
import { runWorkerEntryPoint } from './workerCommand';

runWorkerEntryPoint('onnx');
