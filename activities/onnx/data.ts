/**
 * The training records and evaluation rows, read as the Python kernels read them
 * (kernels/wmss_kernels/data.py and evaluate.load_rows), for the onnx backend, which runs
 * without Python. Same validation, same errors (InvalidInput naming file, line and field).
 */
import { ApplicationFailure } from '@temporalio/common';
import { invalidInput } from '../store/failures';
import { readInputBytes } from '../store/inputFiles';
import { readJsonl } from '../store/jsonl';
import { sha256File } from '../store/digest';

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
    if (!value || typeof value !== 'object' || Array.isArray(value))
      throw invalidInput(file, line, undefined, 'expected a JSON object');
    yield [line, value as Record<string, unknown>];
  }
}

export function gsm8kFinal(answer: string): string {
  const parts = answer.split('####');
  return parts[parts.length - 1].trim().replaceAll(',', '');
}

function gsm8kCompletion(answer: string): string {
  const reasoning = answer
    .split('####')[0]
    .replace(/<<[^>]*>>/g, '')
    .trim();
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
        if (typeof obj[key] !== 'string')
          throw invalidInput(file, n, key, key in obj ? 'expected a string' : 'missing');
      }
      const answer = obj.answer as string;
      if (!answer.includes('####')) throw invalidInput(file, n, 'answer', "expected a final '#### <answer>' line");
      records.push({
        idx: records.length,
        prompt: strip(obj.question as string),
        completion: gsm8kCompletion(answer),
        line: n,
      });
    }
    if (records.length === 0) throw noRecords();
    return records;
  }
  const seen = new Map<number, number>();
  for await (const [n, obj] of jsonObjects(file)) {
    const idx = obj.idx;
    if (idx === undefined || idx === null)
      throw invalidInput(file, n, 'idx', 'missing (every record needs an integer idx)');
    if (typeof idx !== 'number' || !Number.isInteger(idx))
      throw invalidInput(file, n, 'idx', `expected an integer, got ${JSON.stringify(idx).slice(0, 40)}`);
    // step 3 keeps idx in float64 columns: beyond 2^53 two idx could compare equal
    if (idx < 0 || !Number.isSafeInteger(idx))
      throw invalidInput(file, n, 'idx', `expected an integer in 0..${Number.MAX_SAFE_INTEGER}, got ${idx}`);
    if (seen.has(idx)) throw invalidInput(file, n, 'idx', `duplicate idx ${idx} (first on line ${seen.get(idx)})`);
    seen.set(idx, n);
    const messages = obj.messages;
    if (!Array.isArray(messages))
      throw invalidInput(file, n, 'messages', 'messages' in obj ? 'expected a list' : 'missing');
    const turns: Record<string, string> = {};
    messages.forEach((m: unknown, i) => {
      const msg = m as { role?: unknown; content?: unknown };
      if (!msg || typeof msg !== 'object' || typeof msg.role !== 'string')
        throw invalidInput(file, n, `messages[${i}]`, "expected an object with a string 'role'");
      if ((msg.role === 'user' || msg.role === 'assistant') && !(msg.role in turns)) {
        if (typeof msg.content !== 'string') throw invalidInput(file, n, `messages[${i}].content`, 'expected a string');
        turns[msg.role] = strip(msg.content);
      }
    });
    for (const role of ['user', 'assistant'])
      if (!(role in turns)) throw invalidInput(file, n, 'messages', `no ${role} turn`);
    records.push({ idx, prompt: turns.user, completion: turns.assistant, line: n });
  }
  if (records.length === 0) throw noRecords();
  return records;
}

const QUESTION_KEYS = ['question', 'instruction', 'problem', 'input', 'original_text', 'prompt'];
const ANSWER_KEYS = ['answer', 'target', 'label', 'solution', 'output', 'ans'];

export interface EvalDatasetSpec {
  name: string;
  path: string;
  format: 'gsm8k' | 'json' | 'jsonl';
  expectedRows?: number | null;
  limit?: number | null;
  /** A bundled set's digest: other content is refused. */
  sha256?: string | null;
}
export interface EvalRow {
  /** The row's position in the file (0-based), as the kernel's `position`. */
  id: number;
  line: number;
  question: string;
  gold: string;
}

/** [key, value] of the first key whose value is not null and not a blank string. */
function present(row: Record<string, unknown>, keys: string[]): [string | undefined, unknown] {
  for (const key of keys) {
    const v = row[key];
    if (v !== null && v !== undefined && !(typeof v === 'string' && strip(v) === '')) return [key, v];
  }
  return [undefined, undefined];
}

/** Python's str() of a JSON scalar, for answers given as numbers or booleans. */
function pyStr(v: unknown): string {
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number' && Number.isInteger(v) && !Object.is(v, -0)) return String(v);
  if (typeof v === 'number')
    return Number.isFinite(v) ? (String(v).includes('e') || String(v).includes('.') ? String(v) : `${v}.0`) : String(v);
  return String(v);
}

const jsonType = (v: unknown) =>
  Array.isArray(v)
    ? 'a list'
    : v && typeof v === 'object'
      ? 'an object'
      : typeof v === 'boolean'
        ? 'a boolean'
        : typeof v;

/** A `json` eval set: one JSON list (a UTF-8 byte-order mark before it is allowed, as in data.py). */
async function jsonListEntries(file: string): Promise<[number, unknown][]> {
  let bytes: Buffer;
  try {
    bytes = await readInputBytes(file, { what: 'dataset' });
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    throw invalidInput(
      file,
      undefined,
      undefined,
      `cannot read dataset: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
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

/** What is wrong with one row; loadEvalRows turns it into InvalidInput naming file, row and field. */
class RowProblem extends Error {
  constructor(
    readonly field: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** [question, gold] of one row, with the kernel's rules and messages (eval_data._question_and_answer). */
function questionAndAnswer(row: Record<string, unknown>, format: EvalDatasetSpec['format']): [string, string] {
  const fail = (field: string | undefined, message: string) => new RowProblem(field, message);
  if (format === 'gsm8k') {
    for (const key of ['question', 'answer'])
      if (typeof row[key] !== 'string')
        throw fail(key, `no ${key} (looked for ${key}${key in row ? ', not a string' : ''})`);
    if (!(row.answer as string).includes('####')) throw fail('answer', "expected a final '#### <answer>' line");
    return [row.question as string, gsm8kFinal(row.answer as string)];
  }
  let reward: unknown = row.reward_model;
  if (typeof reward === 'string') {
    try {
      reward = JSON.parse(reward);
    } catch {
      reward = undefined;
    }
  }
  const rm =
    reward && typeof reward === 'object' && !Array.isArray(reward) ? (reward as Record<string, unknown>) : undefined;
  const [qKey, firstQuestion] =
    rm && row.prompt !== null && row.prompt !== undefined ? ['prompt', row.prompt] : present(row, QUESTION_KEYS);
  let question = firstQuestion;
  let [aKey, answer]: [string | undefined, unknown] = rm
    ? ['reward_model.ground_truth', rm.ground_truth]
    : [undefined, undefined];
  if (answer === null || answer === undefined) [aKey, answer] = present(row, ANSWER_KEYS);
  if (question === undefined) throw fail('question', `no question (looked for ${QUESTION_KEYS.join(', ')})`);
  if (answer === undefined) throw fail('answer', `no answer (looked for ${ANSWER_KEYS.join(', ')})`);
  if (Array.isArray(question)) {
    const users = question
      .filter((m) => m && typeof m === 'object' && ((m as { role?: unknown }).role ?? 'user') === 'user')
      .map((m) => (m as { content?: unknown }).content);
    if (users.length !== 1 || typeof users[0] !== 'string')
      throw fail('prompt', `no question: the chat prompt needs exactly one user turn with text, has ${users.length}`);
    question = users[0];
  }
  if (typeof question !== 'string') throw fail(qKey, `no question: expected a string, got ${jsonType(question)}`);
  if (answer && typeof answer === 'object')
    throw fail(aKey, `no answer: expected a string or number, got ${jsonType(answer)}`);
  let gold = pyStr(answer);
  if (gold.includes('####')) gold = gsm8kFinal(gold);
  return [question, gold];
}

/** The rows of one eval set, validated as the kernel's eval_data.load_rows does (same messages). */
export async function loadEvalRows(ds: EvalDatasetSpec): Promise<EvalRow[]> {
  const file = ds.path;
  if (ds.sha256) {
    const actual = await sha256File(file).catch(() => undefined);
    if (actual !== undefined && actual !== ds.sha256)
      throw invalidInput(
        file,
        undefined,
        'sha256',
        `dataset '${ds.name}' has SHA-256 ${actual}, the bundled set is ${ds.sha256}: the file was changed`,
      );
  }
  const entries: AsyncIterable<[number, unknown]> | Iterable<[number, unknown]> =
    ds.format === 'json' ? await jsonListEntries(file) : jsonObjects(file);
  const rows: EvalRow[] = [];
  for await (const [n, raw] of entries) {
    let question: string, gold: string;
    try {
      if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new RowProblem(undefined, 'expected an object');
      [question, gold] = questionAndAnswer(raw as Record<string, unknown>, ds.format).map(strip) as [string, string];
      for (const [what, text] of [
        ['question', question],
        ['answer', gold],
      ])
        if (!text) throw new RowProblem(what, `empty ${what}`);
    } catch (err) {
      if (!(err instanceof RowProblem)) throw err;
      // "line" of a JSON list is the row's number: say so
      throw invalidInput(
        file,
        n,
        err.field,
        ds.format === 'json' ? `${err.message} (row ${n} of the JSON list)` : err.message,
      );
    }
    rows.push({ id: rows.length, line: n, question, gold });
  }
  if (rows.length === 0) throw invalidInput(file, undefined, undefined, `dataset '${ds.name}' has no rows`);
  if (ds.expectedRows != null && rows.length !== ds.expectedRows) {
    throw invalidInput(
      file,
      undefined,
      'expected_rows',
      `dataset '${ds.name}' has ${rows.length} rows, expected ${ds.expectedRows}`,
    );
  }
  return ds.limit == null ? rows : rows.slice(0, ds.limit);
}
