/**
 * Where things are in a JSON text: line:column of syntax errors, of every key (so schema errors
 * can point at the line a user must edit) and of repeated keys. JSON.parse keeps the last of two
 * equal keys without a word, so `"epochs": 1, … "epochs": 3` would silently run 3 epochs: the
 * scan below refuses that instead. It runs only on text JSON.parse accepted, so it can be small.
 */

export interface SourcePos {
  line: number;
  col: number;
}

export class JsonSourceError extends Error {
  constructor(
    message: string,
    public readonly pos: SourcePos,
  ) {
    super(message);
  }
}

/** 1-based line and column of a character offset (columns count UTF-16 units, as editors mostly do). */
export function positionAt(text: string, offset: number): SourcePos {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === '\n') {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, col: offset - lineStart + 1 };
}

/**
 * JSON.parse with line:column in its errors. V8 reports "at position N" (sometimes already with a
 * line and column); the offset is what we trust, since it is there for every message.
 */
export function parseJsonWithPositions(text: string): { value: unknown; keys: Map<string, SourcePos> } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const at = /at position (\d+)/.exec(message);
    const offset = at ? Number(at[1]) : text.length;
    const reason = message.replace(/\s*in JSON at position \d+.*$/s, '').replace(/\s*\(line \d+ column \d+\)/, '');
    throw new JsonSourceError(
      `invalid JSON: ${reason}${at ? '' : ' (at the end of the file)'}`,
      positionAt(text, Math.min(offset, text.length)),
    );
  }
  return { value, keys: scanKeys(text) };
}

/** Dotted key paths (`sft.epochs`, `eval.datasets.0.name`) with the position of each key; throws on a repeated key. */
function scanKeys(text: string): Map<string, SourcePos> {
  const keys = new Map<string, SourcePos>();
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i])) i++;
  };
  const str = (): string => {
    const start = i;
    i++; // opening quote
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string[]): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        const keyAt = i;
        const key = str();
        const dotted = [...path, key].join('.');
        if (seen.has(key))
          throw new JsonSourceError(
            `duplicate key "${dotted}" (first at ${fmt(keys.get(dotted))}); JSON keeps only the last one, so one of them would be ignored`,
            positionAt(text, keyAt),
          );
        seen.add(key);
        keys.set(dotted, positionAt(text, keyAt));
        ws();
        i++; // ':'
        value([...path, key]);
        ws();
        if (text[i++] === '}') return;
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let n = 0; ; n++) {
        ws();
        keys.set([...path, String(n)].join('.'), positionAt(text, i));
        value([...path, String(n)]);
        ws();
        if (text[i++] === ']') return;
      }
    }
    if (c === '"') {
      str();
      return;
    }
    // number, true, false, null
    while (i < text.length && !',]} \t\r\n'.includes(text[i])) i++;
  };
  value([]);
  return keys;
}

const fmt = (p?: SourcePos) => (p ? `${p.line}:${p.col}` : '?');
