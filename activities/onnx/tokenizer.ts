/**
 * Tokenisation and chat-template rendering in Node for the onnx backend, from the files of a
 * Hugging Face model directory (tokenizer.json, tokenizer_config.json, generation_config.json,
 * chat_template.jinja): @huggingface/tokenizers for the tokenizer, @huggingface/jinja for the
 * template. Mirrors what the Python kernels do with transformers (kernels/wmss_kernels/chat.py):
 * no special tokens added, pad = eos when the tokenizer has none, eos ids = generation config's
 * plus the tokenizer's.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { ApplicationFailure } from '@temporalio/common';
import { invalidInput } from '../store/failures';
import { readInputTextSync } from '../store/inputFiles';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTokenizer {
  dir: string;
  encode(text: string): number[];
  decode(ids: number[], skipSpecialTokens?: boolean): string;
  /** The chat template rendered to text (transformers' apply_chat_template(tokenize=False)). */
  renderChat(messages: ChatMessage[], addGenerationPrompt: boolean, extra?: Record<string, unknown>): string;
  hasChatTemplate: boolean;
  eosToken: string;
  eosTokenId: number;
  padTokenId: number;
  /** Token ids that end generation (generation_config.json's eos_token_id, then the tokenizer's eos). */
  eosTokenIds: number[];
}

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readInputTextSync(file);
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    throw invalidInput(file, undefined, undefined, `cannot read: ${(err as Error).message}`);
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('expected a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw invalidInput(file, undefined, undefined, `not a valid JSON object: ${(err as Error).message}`);
  }
}

/** A token given as "text" or as {"content": "text", ...} (older tokenizer_config.json files). */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string')
    return (value as { content: string }).content;
  return undefined;
}

function chatTemplateOf(dir: string, config: Record<string, unknown>): string | undefined {
  const jinja = path.join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) return readInputTextSync(jinja);
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    // named templates: transformers uses the one called "default"
    const named = t.find((x) => x && typeof x === 'object' && (x as { name?: unknown }).name === 'default') as
      { template?: unknown } | undefined;
    if (named && typeof named.template === 'string') return named.template;
  }
  return undefined;
}

export function loadChatTokenizer(dir: string): ChatTokenizer {
  const tokenizerFile = path.join(dir, 'tokenizer.json');
  const configFile = path.join(dir, 'tokenizer_config.json');
  if (!existsSync(tokenizerFile))
    throw invalidInput(
      tokenizerFile,
      undefined,
      undefined,
      'missing: the onnx backend needs a fast tokenizer (tokenizer.json)',
    );
  const tokenizerJson = readJson(tokenizerFile);
  const config = existsSync(configFile) ? readJson(configFile) : {};
  const specialMapFile = path.join(dir, 'special_tokens_map.json');
  const specialMap = existsSync(specialMapFile) ? readJson(specialMapFile) : {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, config);
  } catch (err) {
    throw invalidInput(tokenizerFile, undefined, undefined, `unsupported tokenizer: ${(err as Error).message}`);
  }

  const eosToken = tokenText(config.eos_token) ?? tokenText(specialMap.eos_token);
  if (eosToken === undefined) throw invalidInput(configFile, undefined, 'eos_token', 'the tokenizer has no eos token');
  const idOf = (token: string, field: string): number => {
    const id = tokenizer.token_to_id(token);
    if (id === undefined)
      throw invalidInput(configFile, undefined, field, `token ${JSON.stringify(token)} is not in the vocabulary`);
    return id;
  };
  const eosTokenId = idOf(eosToken, 'eos_token');
  const padToken = tokenText(config.pad_token) ?? tokenText(specialMap.pad_token);
  const padTokenId = padToken === undefined ? eosTokenId : idOf(padToken, 'pad_token');

  const eosTokenIds: number[] = [];
  const genFile = path.join(dir, 'generation_config.json');
  if (existsSync(genFile)) {
    const eos = readJson(genFile).eos_token_id;
    for (const id of Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos]) {
      if (typeof id !== 'number' || !Number.isInteger(id))
        throw invalidInput(genFile, undefined, 'eos_token_id', 'expected an integer or a list of integers');
      eosTokenIds.push(id);
    }
  }
  if (!eosTokenIds.includes(eosTokenId)) eosTokenIds.push(eosTokenId);

  const source = chatTemplateOf(dir, config);
  let template: Template | undefined;
  if (source !== undefined) {
    try {
      template = new Template(source);
    } catch (err) {
      throw invalidInput(
        configFile,
        undefined,
        'chat_template',
        `cannot parse the chat template: ${(err as Error).message}`,
      );
    }
  }
  // The variables transformers passes to every template besides the caller's.
  const specials: Record<string, unknown> = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
    const text = tokenText(config[key]) ?? tokenText(specialMap[key]);
    if (text !== undefined) specials[key] = text;
  }
  if (specials.pad_token === undefined) specials.pad_token = eosToken;

  return {
    dir,
    hasChatTemplate: template !== undefined,
    eosToken,
    eosTokenId,
    padTokenId,
    eosTokenIds,
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }).ids,
    decode: (ids, skipSpecialTokens = true) =>
      tokenizer.decode(ids, {
        skip_special_tokens: skipSpecialTokens,
        clean_up_tokenization_spaces: config.clean_up_tokenization_spaces === true,
      }),
    renderChat(messages, addGenerationPrompt, extra = {}) {
      if (!template) {
        // the original's fallback for a tokenizer without a template (chat.eval_prompt)
        return messages.map((m) => `${m.role}: ${m.content}`).join('\n') + (addGenerationPrompt ? '\nassistant:' : '');
      }
      return template.render({ ...specials, ...extra, messages, add_generation_prompt: addGenerationPrompt });
    },
  };
}
