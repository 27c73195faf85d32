/** Entry point: `node dist/workers/control.js [flags]`, the same as `wmss worker control [flags]`. */
import { runWorkerEntryPoint } from './workerCommand';

runWorkerEntryPoint('control');
