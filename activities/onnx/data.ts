/**
 * The training records and evaluation rows, read as the Python kernels read them
 * (kernels/wmss_kernels/data.py and evaluate.load_rows), for the onnx backend, which runs
 * without Python. Same validation, same errors (InvalidInput naming file, line and field).
 */
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { invalidInput } from '../store/failures';
import { readInputBytes } from '../store/inputFiles';
import { readJsonl } from '../store/jsonl';
import { REPO_ROOT } from '../repoPaths';

export interface TrainingRecord {
  idx: number;
  prompt: string;
  completion: string;
  line: number;
}

/**
 * [line, object] for every non-blank line, streamed by the one JSONL reader (store/jsonl.ts:
 * bad UTF-8 or JSON, an over-long line or an unreadable file is InvalidInput); a non-object too.
 */
async function* jsonObjects(file: string): AsyncGenerator<[number, Record<string, unknown>]> {
  for await (const { line, value } of readJsonl(file)) {
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw invalidInput(file, line, undefined, 'expected a JSON object');
    yield [line, value as Record<string, unknown>];
  }
}

export function gsm8kFinal(answer: string): string {
  const parts = answer.split('####');
  return parts[parts.length - 1].trim().replaceAll(',', '');
}

function gsm8kCompletion(answer: string): string {
  const reasoning = answer.split('####')[0].replace(/<<[^>]*>>/g, '').trim();
  return `<think>${reasoning}</think> <answer>\\boxed{${gsm8kFinal(answer)}}</answer>`;
}

/** Python's str.strip() (whitespace). */
const strip = (s: string) => s.replace(/^\s+|\s+$/gu, '');

/** The training records of a data file, validated as data.py read_records does (same messages). */
export async function readRecords(file: string, format: 'messages' | 'gsm8k'): Promise<TrainingRecord[]> {
  const records: TrainingRecord[] = [];
  const noRecords = () => invalidInput(file, undefined, undefined, 'the data file has no records');
  if (format === 'gsm8k') {
    for await (const [n, obj] of jsonObjects(file)) {
      for (const key of ['question', 'answer']) {
        if (typeof obj[key] !== 'string') throw invalidInput(file, n, key, key in obj ? 'expected a string' : 'missing');
      }
      const answer = obj.answer as string;
      if (!answer.includes('####')) throw invalidInput(file, n, 'answer', "expected a final '#### <answer>' line");
      records.push({ idx: records.length, prompt: strip(obj.question as string), completion: gsm8kCompletion(answer), line: n });
    }
    if (records.length === 0) throw noRecords();
    return records;
  }
  const seen = new Map<number, number>();
  for await (const [n, obj] of jsonObjects(file)) {
    const idx = obj.idx;
    if (idx === undefined || idx === null) throw invalidInput(file, n, 'idx', 'missing (every record needs an integer idx)');
    if (typeof idx !== 'number' || !Number.isInteger(idx)) throw invalidInput(file, n, 'idx', `expected an integer, got ${JSON.stringify(idx).slice(0, 40)}`);
    // step 3 keeps idx in float64 columns: beyond 2^53 two idx could compare equal
    if (idx < 0 || !Number.isSafeInteger(idx)) throw invalidInput(file, n, 'idx', `expected an integer in 0..${Number.MAX_SAFE_INTEGER}, got ${idx}`);
    if (seen.has(idx)) throw invalidInput(file, n, 'idx', `duplicate idx ${idx} (first on line ${seen.get(idx)})`);
    seen.set(idx, n);
    const messages = obj.messages;
    if (!Array.isArray(messages)) throw invalidInput(file, n, 'messages', 'messages' in obj ? 'expected a list' : 'missing');
    const turns: Record<string, string> = {};
    messages.forEach((m: unknown, i) => {
      const msg = m as { role?: unknown; content?: unknown };
      if (!msg || typeof msg !== 'object' || typeof msg.role !== 'string') throw invalidInput(file, n, `messages[${i}]`, "expected an object with a string 'role'");
      if ((msg.role === 'user' || msg.role === 'assistant') && !(msg.role in turns)) {
        if (typeof msg.content !== 'string') throw invalidInput(file, n, `messages[${i}].content`, 'expected a string');
        turns[msg.role] = strip(msg.content);
      }
    });
    for (const role of ['user', 'assistant']) if (!(role in turns)) throw invalidInput(file, n, 'messages', `no ${role} turn`);
    records.push({ idx, prompt: turns.user, completion: turns.assistant, line: n });
  }
  if (records.length === 0) throw noRecords();
  return records;
}

export const BUNDLED: Record<string, string> = { 'bundled:gsm8k': path.join(REPO_ROOT, 'data', 'gsm8k', 'test.jsonl') };

const QUESTION_KEYS = ['question', 'instruction', 'problem', 'input', 'original_text', 'prompt'];
const ANSWER_KEYS = ['answer', 'target', 'label', 'solution', 'output', 'ans'];

export interface EvalDatasetSpec {
  name: string;
  path: string;
  format: 'gsm8k' | 'json' | 'jsonl';
  expectedRows?: number | null;
  limit?: number | null;
}
export interface EvalRow {
  id: number;
  line: number;
  question: string;
  gold: string;
}

function first(row: Record<string, unknown>, keys: string[]): [string | undefined, unknown] {
  for (const key of keys) if (key in row && row[key] !== null && row[key] !== undefined) return [key, row[key]];
  return [undefined, undefined];
}

/** Python's str() of a JSON scalar, for answers given as numbers or booleans. */
function pyStr(v: unknown): string {
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number' && Number.isInteger(v) && !Object.is(v, -0)) return String(v);
  if (typeof v === 'number') return Number.isFinite(v) ? (String(v).includes('e') || String(v).includes('.') ? String(v) : `${v}.0`) : String(v);
  return String(v);
}

/** A `json` eval set: one JSON list (a UTF-8 byte-order mark before it is allowed, as in data.py). */
async function jsonListEntries(file: string): Promise<[number, unknown][]> {
  let bytes: Buffer;
  try {
    bytes = await readInputBytes(file, { what: 'dataset' });
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    throw invalidInput(file, undefined, undefined, `cannot read dataset: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw invalidInput(file, undefined, undefined, `not a valid JSON file: ${(err as Error).message}`);
  }
  if (!Array.isArray(data)) throw invalidInput(file, undefined, undefined, 'expected a JSON list of objects');
  return data.map((row, i) => [i + 1, row]);
}

/** The rows of one eval set, validated as evaluate.load_rows does (same messages). */
export async function loadEvalRows(ds: EvalDatasetSpec): Promise<EvalRow[]> {
  const file = BUNDLED[ds.path] ?? ds.path;
  const entries: AsyncIterable<[number, unknown]> | Iterable<[number, unknown]> = ds.format === 'json' ? await jsonListEntries(file) : jsonObjects(file);
  const rows: EvalRow[] = [];
  for await (const [n, raw] of entries) {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw invalidInput(file, n, undefined, 'expected an object');
    const row = raw as Record<string, unknown>;
    let qKey: string | undefined, question: unknown, aKey: string | undefined, answer: unknown;
    if (ds.format === 'gsm8k') {
      [qKey, question, aKey, answer] = ['question', row.question, 'answer', row.answer];
    } else {
      [qKey, question] = first(row, QUESTION_KEYS);
      [aKey, answer] = first(row, ANSWER_KEYS);
      const rm = row.reward_model as Record<string, unknown> | undefined;
      if ((answer === undefined || answer === null) && rm && typeof rm === 'object' && !Array.isArray(rm)) [aKey, answer] = ['reward_model.ground_truth', rm.ground_truth];
      if (Array.isArray(question)) {
        const user = question.find((m) => m && typeof m === 'object' && (m as { role?: unknown }).role === 'user') as { content?: unknown } | undefined;
        question = user?.content;
      }
    }
    const looked = (keys: string[]) => (ds.format === 'gsm8k' ? keys.slice(0, 1) : keys).join(', ');
    if (typeof question !== 'string') throw invalidInput(file, n, qKey ?? 'question', `no question (looked for ${looked(QUESTION_KEYS)})`);
    if (answer === undefined || answer === null || typeof answer === 'object') throw invalidInput(file, n, aKey ?? 'answer', `no answer (looked for ${looked(ANSWER_KEYS)})`);
    let gold = pyStr(answer);
    if (ds.format === 'gsm8k' || gold.includes('####')) {
      if (!gold.includes('####')) throw invalidInput(file, n, 'answer', "expected a final '#### <answer>' line");
      gold = gsm8kFinal(gold);
    }
    rows.push({ id: rows.length, line: n, question, gold: strip(gold) });
  }
  if (ds.expectedRows != null && rows.length !== ds.expectedRows) {
    throw invalidInput(file, undefined, 'expected_rows', `dataset '${ds.name}' has ${rows.length} rows, expected ${ds.expectedRows}`);
  }
  if (rows.length === 0) throw invalidInput(file, undefined, undefined, `dataset '${ds.name}' has no rows`);
  return ds.limit == null ? rows : rows.slice(0, ds.limit);
}
