/** Entry point: `node dist/workers/control.js` (or `wmss worker control`). */
import { startWorkerFromArgs } from './start';

void startWorkerFromArgs('control', process.argv.slice(2));
