/** Entry point: `node dist/workers/control.js` (or `wmss worker control`). */
import { startWorkerFromArgs } from './start';
import { installWorkerLogging } from './hostChecks';

// as `wmss worker`: the SDK's bundler report and expected warnings stay out of the output
installWorkerLogging(false);

void startWorkerFromArgs('control', process.argv.slice(2));
