/**
 * Replays recorded histories of real pipeline runs against the current workflow code. A change to
 * wmssPipeline that would break runs in flight (a non-deterministic change) fails here; make such
 * changes behind `patched()` (README, "Changing the workflow"), then record a new history with
 * `node dist/scripts/record-history.js <workflow-id> <name>`.
 * The replayer runs in a child process (scripts/replay-histories.ts) on the compiled code, which
 * `make test` builds first.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const dir = path.join(__dirname, '..', 'fixtures', 'histories');
const histories = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => path.join(dir, f));
const replayer = path.join(__dirname, '..', '..', 'dist', 'scripts', 'replay-histories.js');
const replay = (files: string[]) => spawnSync(process.execPath, [replayer, ...files], { encoding: 'utf8' });

jest.setTimeout(120_000);

type RecordedEvent = { workflowTaskCompletedEventAttributes?: { deploymentVersion?: { buildId?: string } } };

/** The Worker Deployment build ids whose workers wrote a history's workflow tasks; [] when unversioned. */
function recordedVersions(file: string): string[] {
  const events: RecordedEvent[] = JSON.parse(readFileSync(file, 'utf8')).events ?? [];
  const ids = events.map((e) => e.workflowTaskCompletedEventAttributes?.deploymentVersion?.buildId);
  return [...new Set(ids.filter((id): id is string => Boolean(id)))];
}

test('every recorded history replays on the current workflow code', () => {
  expect(histories.length).toBeGreaterThan(0);
  const out = replay(histories);
  expect(out.stderr).toBe('');
  expect(out.status).toBe(0);
});

// Each worker version whose runs were recorded (test/integration/workerVersioning.test.ts records one
// with WMSS_RECORD_HISTORY=1), and the unversioned runs from before versioning, replays on its own:
// new workflow code must replay the runs that every deployed version may still have open.
const versionOf = (file: string) => recordedVersions(file)[0] ?? 'unversioned';
const versions = [...new Set(histories.map(versionOf))].sort();

test('the histories hold runs of unversioned and of versioned workers', () => {
  expect(versions).toContain('unversioned');
  expect(versions.filter((v) => v !== 'unversioned').length).toBeGreaterThan(0);
});

test.each(versions)('the runs recorded on worker version %s replay', (version) => {
  const out = replay(histories.filter((f) => versionOf(f) === version));
  expect(out.stderr).toBe('');
  expect(out.status).toBe(0);
});

test('the replayer notices a history the code would not produce', () => {
  // Swap the activity of the first scheduled step: the workflow would schedule another one.
  const history = JSON.parse(readFileSync(histories[0], 'utf8'));
  const scheduled = history.events.find(
    (e: { activityTaskScheduledEventAttributes?: unknown }) => e.activityTaskScheduledEventAttributes,
  );
  scheduled.activityTaskScheduledEventAttributes.activityType.name = 'notAStep';
  const tampered = path.join(mkdtempSync(path.join(os.tmpdir(), 'wmss-replay-')), 'tampered.json');
  writeFileSync(tampered, JSON.stringify(history));
  const out = replay([tampered]);
  expect(out.status).toBe(1);
  expect(out.stderr).toMatch(/NON-DETERMINISM/);
  expect(out.stderr).toMatch(/[Nn]ondetermin|notAStep/);
});
