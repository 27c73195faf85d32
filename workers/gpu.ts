/** Entry point: `node dist/workers/gpu.js --gpus 0,1` (or `wmss worker gpu --gpus 0,1`). */
import { startWorkerFromArgs } from './start';

void startWorkerFromArgs('gpu', process.argv.slice(2));
