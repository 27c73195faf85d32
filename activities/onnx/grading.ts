/**
 * The numeric part of the kernels' grader (kernels/wmss_kernels/grading.py), in TypeScript for
 * the onnx backend, which runs without Python. Same extraction (last \boxed{}, else the last
 * <answer>…</answer>, else the last number), same numeric comparison, same multiple-choice
 * logic. Where the Python grader would fall back to math-verify (the extracted answer is not
 * numerically equal to the gold), this one reports `mathVerifyNeeded` and counts the row as
 * incorrect: math-verify is a Python library. test/integration/onnx.test.ts checks agreement.
 */

const NUMBER = /-?[0-9][0-9,]*(?:\.[0-9]+)?|-?\.[0-9]+/g;
const ANSWER_TAG = /<answer>([\s\S]*?)<\/answer>/g;
const LETTER_PATTERNS = [/answer\s*(?:is|:)\s*\(?([A-E])\)?(?![A-Za-z])/gi];
// Python's `$` (no MULTILINE) also matches before a final newline.
const CHOICE = /\(([A-E])\)\s*([^()]*?)(?=\s*\([A-E]\)|\n?$)/g;

/** Python's str.strip(chars) (whitespace when chars is omitted). */
function strip(s: string, chars?: string, side: 'both' | 'right' = 'both'): string {
  const test = chars === undefined ? (c: string) => /\s/u.test(c) : (c: string) => chars.includes(c);
  let a = 0;
  let b = s.length;
  if (side === 'both') while (a < b && test(s[a])) a++;
  while (b > a && test(s[b - 1])) b--;
  return s.slice(a, b);
}

/** Content of the last \boxed{...} (nested braces balanced), or null. */
export function lastBoxed(text: string): string | null {
  let start = text.lastIndexOf('\\boxed{');
  while (start !== -1) {
    let depth = 0;
    const i = start + '\\boxed'.length;
    for (let j = i; j < text.length; j++) {
      if (text[j] === '{') depth++;
      else if (text[j] === '}') {
        depth--;
        if (depth === 0) return strip(text.slice(i + 1, j));
      }
    }
    // unbalanced (e.g. cut off by max_new_tokens): try an earlier one
    start = start === 0 ? -1 : text.lastIndexOf('\\boxed{', start - 1);
  }
  return null;
}

export function extractAnswer(response: string): string | null {
  const boxed = lastBoxed(response);
  if (boxed !== null) return boxed;
  const tags = [...response.matchAll(ANSWER_TAG)];
  if (tags.length) return strip(tags[tags.length - 1][1]);
  const numbers = response.match(NUMBER);
  return numbers ? numbers[numbers.length - 1] : null;
}

/** A decimal string as Python's Fraction accepts it (digits with at most one point). */
function decimal(text: string): number | null {
  return /^-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$/.test(text) ? Number(text) : null;
}

/** A number for '1,234', '-3', '18.0', '3/4', '\frac{3}{4}', '$5', '12%'; null otherwise. */
export function toNumber(text: string | null): number | null {
  if (text === null) return null;
  let s = strip(strip(strip(text), '$'));
  s = s.replace(/\\text\{[^}]*\}/g, '');
  s = strip(
    strip(strip(s.replaceAll(',', '').replaceAll('\\!', '').replaceAll('\\%', ''), '%', 'right'), '.', 'right'),
  );
  s = s.replace(/\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}/g, '($1)/($2)');
  const m = /^\(?(-?[0-9.]+)\)?(?:\/\(?(-?[0-9.]+)\)?)?$/.exec(s.replaceAll(' ', ''));
  if (!m) return null;
  const num = decimal(m[1]);
  if (num === null) return null;
  if (m[2] === undefined) return num;
  const den = decimal(m[2]);
  if (den === null || den === 0) return null;
  return num / den;
}

export function numericEqual(pred: string | null, gold: string): boolean {
  const a = toNumber(pred);
  const b = toNumber(gold);
  return a !== null && b !== null && Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));
}

function letterOf(response: string): string | null {
  const boxed = lastBoxed(response);
  if (boxed !== null) {
    const m = /^\(?([A-E])\)?(?:[.:)][^\n]*)?$/.exec(strip(boxed.replaceAll('\\text{', '').replaceAll('}', '')));
    if (m) return m[1];
  }
  for (const pattern of LETTER_PATTERNS) {
    const found = [...response.matchAll(pattern)];
    if (found.length) return found[found.length - 1][1].toUpperCase();
  }
  return null;
}

export interface Grade {
  correct: boolean;
  extracted: string | null;
  /** The Python grader would ask math-verify about this row (counted incorrect here). */
  mathVerifyNeeded: boolean;
}

export function grade(response: string, goldIn: string, question = ''): Grade {
  const gold = strip(goldIn);
  if (/^[A-E]$/.test(gold)) {
    const letter = letterOf(response);
    if (letter !== null) return { correct: letter === gold, extracted: letter, mathVerifyNeeded: false };
    const value = extractAnswer(response);
    const choices = new Map<string, string>();
    for (const m of question.matchAll(CHOICE)) choices.set(m[1], strip(m[2]));
    for (const [key, text] of choices) {
      if (value !== null && (numericEqual(value, text) || value === text))
        return { correct: key === gold, extracted: key, mathVerifyNeeded: false };
    }
    return { correct: false, extracted: value, mathVerifyNeeded: false };
  }
  const extracted = extractAnswer(response);
  if (extracted !== null && numericEqual(extracted, gold)) return { correct: true, extracted, mathVerifyNeeded: false };
  return { correct: false, extracted, mathVerifyNeeded: true };
}
