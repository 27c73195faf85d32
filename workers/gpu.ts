/** Entry point: `node dist/workers/gpu.js --gpus 0,1` (or `wmss worker gpu --gpus 0,1`). */
import { startWorkerFromArgs } from './start';
import { installWorkerLogging } from './hostChecks';

// as `wmss worker`: the SDK's bundler report and expected warnings stay out of the output
installWorkerLogging(false);

void startWorkerFromArgs('gpu', process.argv.slice(2));
