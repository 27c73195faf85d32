"""Continuous-batching generation for evaluate (step 7): a fixed number of slots over one static
KV cache; a row that finishes frees its slot, and the next waiting prompt takes it at once.

Why: with thinking budgets of 4–8k tokens and answers of very different lengths, a static batch
runs until its longest row ends while most of its rows are done. Here every decode step works on
rows that are still generating.

How:
- The cache holds, per layer, keys and values of shape [slots, kv heads, capacity, head dim].
  Each slot has its own length; a prompt is written at positions 0.. of its slot.
- The model is the transformers model itself: a small cache object (SlotCache) takes the place
  of transformers' Cache (`update` writes each row at its own position), and an attention
  function registered with transformers' AttentionInterface reads, per row, only the blocks of
  the cache that row has filled (FlexAttention with a block mask built from the row lengths), so
  a step costs what the live rows hold, not slots × capacity.
- New prompts are prefilled together (right padding, causal attention over the prompt alone)
  and written into their slots; prompts are taken longest first, so one prefill holds prompts of
  similar length.
- The decode step (all slots, one token each) has fixed shapes: on CUDA it is compiled once and
  captured as a CUDA graph, and the host looks at finished rows only every `chunk` steps (a row
  that ends inside a chunk idles for the rest of it). On CPU it runs eagerly.
- Sampling draws Gumbel noise from a hash of (seed, request, token index, vocabulary id), so a
  request's tokens depend on the seed only, not on the slot or on which prompts share a step.
"""

import math
from collections import deque

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

BLOCK = 128  # kv block of the attention mask; capacity is rounded up to it
ATTENTION = "wmss_slots"


class SlotCache:
    """The part of transformers' Cache API the model calls: update(keys, values, layer) -> the
    keys and values attention should read. Prefill writes rows `fill_slots` at positions
    0..n-1 and attends to the new keys only; a decode step writes row b at `pos[b]`."""

    def __init__(self, config, slots, capacity, device, dtype):
        heads = config.num_key_value_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (slots, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.pos = torch.zeros(slots, dtype=torch.long, device=device)
        self.fill_slots = None
        if device.type == "cuda":  # their addresses never change: the captured graph works on them in place
            for t in self.keys + self.values + [self.pos]:
                torch._dynamo.mark_static_address(t)

    def update(self, keys, values, layer_idx, *args, **kwargs):
        k_cache, v_cache = self.keys[layer_idx], self.values[layer_idx]
        if self.fill_slots is not None:
            n = keys.shape[2]
            k_cache[self.fill_slots, :, :n] = keys
            v_cache[self.fill_slots, :, :n] = values
            return keys, values
        # an index_put, not a scatter: compiled, a scatter into a graph input becomes a copy of the
        # whole cache per step (measured: ~70 ms a step for 0.6B × 64 slots × 8k), index_put stays in place
        rows = torch.arange(keys.shape[0], device=keys.device)
        k_cache[rows, :, self.pos] = keys[:, :, 0]
        v_cache[rows, :, self.pos] = values[:, :, 0]
        return k_cache, v_cache

    def get_seq_length(self, layer_idx=0):
        return 0


class Prefill:
    """Attention mask marker: causal attention over the (right-padded) prompts themselves."""


class Decode:
    """Attention mask marker for a decode step: row b attends to cache positions < lengths[b].
    Compiled: a FlexAttention block mask, so blocks past a row's length are never read. Eager
    (CPU): a dense mask for scaled_dot_product_attention (eager FlexAttention is far slower)."""

    def __init__(self, lengths, capacity, flex):
        slots = lengths.shape[0]
        self.block_mask = self.dense = None
        if not flex:
            self.dense = (torch.arange(capacity, device=lengths.device)[None] < lengths[:, None]).view(slots, 1, 1, -1)
            return
        blocks = capacity // BLOCK
        used = ((lengths + BLOCK - 1) // BLOCK).to(torch.int32).view(slots, 1, 1)
        order = torch.arange(blocks, device=lengths.device, dtype=torch.int32).expand(slots, 1, 1, blocks).contiguous()
        self.block_mask = BlockMask.from_kv_blocks(
            used,
            order,
            BLOCK_SIZE=BLOCK,
            mask_mod=lambda b, h, q, kv: kv < lengths[b],
            seq_lengths=(1, capacity),
            compute_q_blocks=False,
        )


def slot_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """The attention function the model calls while the engine runs it ([b, q, heads, dim] out)."""
    gqa = query.shape[1] != key.shape[1]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if isinstance(attention_mask, Decode) and attention_mask.dense is not None:
        out = sdpa(query, key, value, attn_mask=attention_mask.dense, scale=scaling, enable_gqa=gqa)
    elif isinstance(attention_mask, Decode):
        out = flex_attention(query, key, value, block_mask=attention_mask.block_mask, scale=scaling, enable_gqa=gqa)
    elif isinstance(attention_mask, Prefill):
        out = sdpa(query, key, value, is_causal=True, scale=scaling, enable_gqa=gqa)
    else:
        raise TypeError("slot attention called without the engine's mask")
    return out.transpose(1, 2).contiguous(), None


def _register():
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, slot_attention)


def _mix(x):
    """A 32-bit integer hash (xorshift-multiply rounds) on int64 tensors, overflow-free."""
    m = 0xFFFFFFFF
    x = x & m
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & m
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & m
    return x ^ (x >> 16)


def pick_tokens(logits, keys, steps, temperature, top_p, seed):
    """Next token per row: greedy when temperature is 0, else a sample at `temperature` from the
    smallest set of tokens holding `top_p` of the probability (Gumbel-max with hashed noise)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_p < 1.0:
        sorted_logits, idx = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        outside = probs.cumsum(-1) - probs >= top_p  # the mass before this token already reaches top_p
        logits = logits.scatter(-1, idx, sorted_logits.masked_fill(outside, -math.inf))
    row = _mix(_mix(keys * 0x3C6EF372 + seed) ^ steps)
    noise = _mix(row[:, None] ^ torch.arange(logits.shape[-1], device=logits.device)[None])
    u = ((noise >> 8).float() + 0.5) / 2**24
    return (logits - torch.log(-torch.log(u))).argmax(-1)


class DecodeEngine:
    """Generates many prompts through `slots` rows of one static KV cache; see the module doc.

    capacity: the most tokens (prompt + generated) one row can hold; eos_ids end a row (the eos
    token is kept in the output); temperature 0 is greedy. Free slots are refilled once
    `refill_at` of them are free (default slots/16): each prefill is an eager forward pass, and
    refilling one slot at a time would spend more time in prefills than the idle slots cost."""

    def __init__(
        self,
        model,
        *,
        slots,
        capacity,
        eos_ids,
        temperature=0.0,
        top_p=1.0,
        seed=0,
        compile=None,
        flex=None,
        chunk=8,
        refill_at=None,
    ):
        self.model, self.slots, self.chunk = model, slots, chunk
        self.refill_at = refill_at or max(1, slots // 16)
        self.capacity = -(-capacity // BLOCK) * BLOCK
        self.temperature, self.top_p, self.seed = float(temperature), float(top_p), int(seed)
        self.device = next(model.parameters()).device
        self.compile = self.device.type == "cuda" if compile is None else compile
        self.flex = self.compile if flex is None else flex  # False: a dense mask over the whole cache
        dtype = next(model.parameters()).dtype
        _register()
        self.cache = SlotCache(model.config, slots, self.capacity, self.device, dtype)
        as_long = dict(dtype=torch.long, device=self.device)
        self.eos = torch.tensor(sorted(set(eos_ids)) or [-1], **as_long)
        self.tokens = torch.zeros(slots, **as_long)  # the last token of each row, not yet in the cache
        self.keys = torch.zeros(slots, **as_long)  # the request a row belongs to (sampling noise)
        self.count = torch.zeros(slots, **as_long)  # tokens generated so far
        self.budget = torch.ones(slots, **as_long)  # tokens the row may generate
        self.done = torch.ones(slots, dtype=torch.bool, device=self.device)
        self.out = torch.zeros(slots, self.capacity, **as_long)  # generated tokens per row
        self.eos_set = set(eos_ids)
        self.graph = None
        self.stats = {"steps": 0, "prefills": 0}

    # -- one decode step for all slots: fixed shapes, no host synchronisation --
    def _step(self):
        pos = self.cache.pos
        self.cache.fill_slots = None
        # a finished or free slot attends to one position only: its old keys would otherwise be read
        # every step until the slot is refilled (most of the time at the end of a set)
        mask = Decode(torch.where(self.done, 1, pos + 1), self.capacity, flex=self.flex)
        logits = self.model(
            input_ids=self.tokens[:, None],
            position_ids=pos[:, None],
            past_key_values=self.cache,
            attention_mask={"full_attention": mask},
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        nxt = pick_tokens(logits, self.keys, self.count, self.temperature, self.top_p, self.seed)
        live = ~self.done
        nxt = torch.where(live, nxt, self.tokens)
        self.out[torch.arange(self.slots, device=nxt.device), self.count.clamp(max=self.out.shape[1] - 1)] = nxt
        self.count.add_(live.long())
        pos.add_(live.long())
        self.tokens.copy_(nxt)
        ended = (nxt[:, None] == self.eos[None]).any(-1) | (self.count >= self.budget)
        self.done.logical_or_(live & ended)

    def _decode(self, n):
        self.stats["steps"] += n
        if not self.compile:
            for _ in range(n):
                self._step()
            return
        if self.graph is None:
            self.graph = self._capture()
        for _ in range(n):
            self.graph.replay()

    def _capture(self):
        """Compile the step and capture it as a CUDA graph. The warm-up calls are real decode steps
        of the rows now in the slots (counted in stats); capturing records without running."""
        step = torch.compile(self._step, fullgraph=True, dynamic=False)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        self.stats["steps"] += 3
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph

    @torch.no_grad()
    def _prefill(self, slots, requests):
        """Write the prompts of `requests` into `slots` and set each row's first generated token."""
        self.stats["prefills"] += 1
        width = max(len(r[1]) for r in requests)
        ids = torch.zeros(len(requests), width, dtype=torch.long)
        for i, (_, prompt, _, _) in enumerate(requests):
            ids[i, : len(prompt)] = torch.tensor(prompt)
        rows = torch.tensor(slots, device=self.device)
        lengths = torch.tensor([len(r[1]) for r in requests], device=self.device)
        self.cache.fill_slots = rows
        try:
            hidden = self.model.base_model(
                input_ids=ids.to(self.device),
                past_key_values=self.cache,
                position_ids=torch.arange(width, device=self.device)[None],
                attention_mask={"full_attention": Prefill()},
                use_cache=True,
            ).last_hidden_state
        finally:
            self.cache.fill_slots = None
        last = hidden[torch.arange(len(requests), device=self.device), lengths - 1]
        logits = self.model.get_output_embeddings()(last)
        keys = torch.tensor([r[3] for r in requests], device=self.device)
        first = pick_tokens(logits, keys, torch.zeros_like(keys), self.temperature, self.top_p, self.seed)
        budget = torch.tensor([r[2] for r in requests], device=self.device)
        self.tokens[rows], self.keys[rows], self.budget[rows] = first, keys, budget
        self.cache.pos[rows] = lengths
        self.count[rows] = 1
        self.out[rows, 0] = first
        self.done[rows] = (first[:, None] == self.eos[None]).any(-1) | (budget <= 1)

    @torch.no_grad()
    def generate(self, prompts, max_new_tokens, *, samples=1, keys=None, on_progress=None):
        """[[(generated ids, truncated), ...samples] per prompt]; ids end with the eos token when
        the row stopped on one, truncated means it ran out of max_new_tokens (int or one per prompt).

        keys: one integer per prompt that, with the sample number and the seed, fixes its sampling
        noise (default: the prompt's index). on_progress(prompts done, tokens generated) is called
        after every chunk of steps; a prompt is done when all its samples are (an exception it
        raises stops the generation there)."""
        budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        keys = list(range(len(prompts))) if keys is None else list(keys)
        requests = []  # (index, prompt ids, budget, sampling key)
        for i, prompt in enumerate(prompts):
            if not prompt or budgets[i] < 1:
                raise ValueError(f"prompt {i}: needs at least one token and a positive max_new_tokens")
            if len(prompt) + budgets[i] > self.capacity:
                raise ValueError(
                    f"prompt {i}: {len(prompt)} tokens + {budgets[i]} new exceed the capacity {self.capacity}"
                )
            requests += [(i * samples + j, prompt, budgets[i], keys[i] * samples + j) for j in range(samples)]
        waiting = deque(sorted(requests, key=lambda r: -len(r[1])))
        owner = [None] * self.slots
        results, tokens = [None] * len(requests), 0
        left, prompts_done = [samples] * len(prompts), 0  # samples of each prompt still generating
        with _attention(self.model):
            while waiting or any(o is not None for o in owner):
                free = [s for s in range(self.slots) if owner[s] is None]
                if waiting and free and (len(free) >= min(self.refill_at, len(waiting)) or len(free) == self.slots):
                    batch = [waiting.popleft() for _ in range(min(len(free), len(waiting)))]
                    self._prefill(free[: len(batch)], batch)
                    for s, r in zip(free, batch):
                        owner[s] = r
                self._decode(self.chunk)
                done, count = self.done.tolist(), self.count.tolist()
                for s, r in enumerate(owner):
                    if r is None or not done[s]:
                        continue
                    ids = self.out[s, : count[s]].tolist()
                    results[r[0]] = (ids, ids[-1] not in self.eos_set)
                    tokens += len(ids)
                    owner[s] = None
                    left[r[0] // samples] -= 1
                    prompts_done += left[r[0] // samples] == 0
                if on_progress is not None:
                    on_progress(prompts_done, tokens)
        return [results[i * samples : (i + 1) * samples] for i in range(len(prompts))]


def fitting_slots(model, wanted, capacity, share=0.85):
    """At most `wanted` slots, fewer when their KV cache would not fit in `share` of the free
    memory of the model's CUDA device (CPU: `wanted`)."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return wanted
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_slot = (
        2
        * cfg.num_hidden_layers
        * cfg.num_key_value_heads
        * head_dim
        * -(-capacity // BLOCK)
        * BLOCK
        * next(model.parameters()).element_size()
    )
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(wanted, int(free * share) // per_slot))


class _attention:
    """Runs the model with the engine's attention function; puts the model's own back after."""

    def __init__(self, model):
        self.config = model.config

    def __enter__(self):
        self.saved = self.config._attn_implementation
        self.config._attn_implementation = ATTENTION

    def __exit__(self, *exc):
        self.config._attn_implementation = self.saved
