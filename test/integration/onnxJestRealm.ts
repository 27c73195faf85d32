/**
 * Jest runs a test file in its own JavaScript realm, but onnxruntime-node's native code creates
 * its typed arrays in the main one, so onnxruntime-common's `instanceof Float32Array` checks fail
 * ("A float32 tensor's data must be type of Float32Array"). Imported first by the onnx tests:
 * points the test realm's typed-array globals at the main realm's. Not needed outside jest.
 */
import vm from 'node:vm';

for (const name of [
  'Float32Array',
  'Float64Array',
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'BigInt64Array',
  'BigUint64Array',
]) {
  (globalThis as Record<string, unknown>)[name] = vm.runInThisContext(name);
}
