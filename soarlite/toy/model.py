"""The toy world's tokenizer, its tiny Llama, the pretraining loop and a sampler.

Everything is the project's own code on top of `tokenizers` and transformers' LlamaForCausalLM, so the built folder
loads like any Hugging Face model (AutoTokenizer / AutoModelForCausalLM) in the rest of the toolkit.
"""

from __future__ import annotations

import math
import time

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"
# Single tokens for the format's fixed strings: shorter sequences, and a tag can never be half-written.
FORMAT_TOKENS = ["<question>", "</question>", "<answer>", "</answer>", "\\boxed{"]


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes) with one token per digit: a number's tokens are its digits, so the model
    sees the same digit in the same place of every number, and the vocabulary stays a few hundred tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        # " 12" -> " 1", "2": a digit keeps the space before it, so numbers cost no extra space token
        pre_tokenizers.Split(Regex(r" ?\d"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False) for t in FORMAT_TOKENS])
    # Like Llama's tokenizers: encoding a prompt starts it with <bos>, as every pretraining sequence starts.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left",
        model_max_length=512, clean_up_tokenization_spaces=False,
    )


def make_model(tok: PreTrainedTokenizerFast, *, hidden: int, layers: int, heads: int, ffn: int,
               max_positions: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, head_dim=hidden // heads,
        max_position_embeddings=max_positions, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        initializer_range=0.02, torch_dtype="float32",
    )
    return LlamaForCausalLM(config)


def encode(tok: PreTrainedTokenizerFast, texts: list[str]) -> list[list[int]]:
    """<bos> text <eos> for each text (the post-processor adds <bos>)."""
    return [ids + [tok.eos_token_id] for ids in tok(texts)["input_ids"]]


def pretrain(model: LlamaForCausalLM, seqs: list[list[int]], *, steps: int, batch: int, lr: float, seed: int,
             pad_id: int, log_every: int = 0) -> list[float]:
    """Plain next-token training on the world's text, all tokens counted (the questions in student prompts are
    world text too). AdamW, 5% linear warm-up, cosine decay to a tenth. Returns the loss per step."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    warm = max(1, steps // 20)

    def lr_at(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses, t0 = [], time.time()
    for s in range(steps):
        idx = torch.randint(len(seqs), (batch,), generator=gen).tolist()
        rows = [seqs[i] for i in idx]
        width = max(map(len, rows))
        ids = torch.full((batch, width), pad_id)
        for r, row in enumerate(rows):  # right padding: positions of real tokens start at 0, as at inference
            ids[r, : len(row)] = torch.tensor(row)
        mask = ids != pad_id
        labels = ids.masked_fill(~mask, -100)
        loss = model(input_ids=ids, attention_mask=mask.long(), labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (s % log_every == 0 or s == steps - 1):
            print(f"  step {s:5d}  loss {loss.item():.4f}  {time.time() - t0:6.1f}s", flush=True)
    model.eval()
    return losses


@torch.no_grad()
def sample(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, prompts: list[str], *, max_new_tokens: int,
           seed: int, temperature: float = 1.0, batch: int = 512) -> list[str]:
    """One completion per prompt; temperature 0 is greedy. Pure ancestral sampling (no top-k/top-p), as the
    paper's temperature-1 sampling is. Deterministic by seed for a given thread count."""
    out: list[str] = []
    for i in range(0, len(prompts), batch):
        enc = tok(prompts[i: i + batch], return_tensors="pt", padding=True)
        kw = dict(do_sample=False) if temperature == 0 else dict(do_sample=True, temperature=temperature, top_k=0,
                                                                 top_p=1.0)
        torch.manual_seed(seed + i)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, **kw)
        out += tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out
