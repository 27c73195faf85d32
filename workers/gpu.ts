/** Entry point: `node dist/workers/gpu.js --gpus 0,1 [flags]`, the same as `wmss worker gpu --gpus 0,1 [flags]`. */
import { runWorkerEntryPoint } from './workerCommand';

runWorkerEntryPoint('gpu');
