/**
 * The devices a GPU worker owns: `--gpus cpu` or `--gpus 0,1`. Every kernel the worker starts
 * sees exactly these devices through CUDA_VISIBLE_DEVICES.
 */
export type DeviceSet = { kind: 'cpu' } | { kind: 'cuda'; ids: number[] };

export function parseDeviceSet(spec: string): DeviceSet {
  const text = spec.trim().toLowerCase();
  if (text === 'cpu') return { kind: 'cpu' };
  const ids = text.split(',').map((part) => part.trim());
  if (ids.length === 0 || ids.some((id) => !/^\d+$/.test(id))) {
    throw new Error(`--gpus must be "cpu" or a comma-separated list of device numbers like 0,1 (got "${spec}")`);
  }
  const numbers = ids.map(Number);
  if (new Set(numbers).size !== numbers.length) throw new Error(`--gpus lists a device twice: "${spec}"`);
  return { kind: 'cuda', ids: numbers };
}

/** Environment for kernels started by a worker owning `devices`. */
export function kernelEnv(devices: DeviceSet): Record<string, string> {
  return devices.kind === 'cpu'
    ? { CUDA_VISIBLE_DEVICES: '', WMSS_DEVICE: 'cpu' }
    : { CUDA_VISIBLE_DEVICES: devices.ids.join(','), WMSS_DEVICE: 'cuda' };
}

export function describeDeviceSet(devices: DeviceSet): string {
  return devices.kind === 'cpu' ? 'cpu' : `cuda:${devices.ids.join(',')}`;
}
