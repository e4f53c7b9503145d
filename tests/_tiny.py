"""A random tiny Llama with a character-level tokenizer, made on the spot: for engine and loop tests that need a real
model but not a trained one. (The toy world's pretrained model is the `toy_world` fixture.)"""

from __future__ import annotations

from pathlib import Path

CHARS = list("0123456789+-*/=()[]{}<>\\^_.,:;!?'\" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n")


def make_tiny_model(out: Path, seed: int = 0, layers: int = 2, hidden: int = 64) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()  # characters join without spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=2, head_dim=hidden // 2, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


ALL_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_cfg(device: str, **model):
    """A default Config with small LoRA adapters on every linear layer, for engine tests on `device`."""
    from soarlite.config import Config

    cfg = Config()
    cfg.device = device
    cfg.model.lora_rank = 4
    cfg.model.lora_alpha = 8
    cfg.model.target_modules = list(ALL_MODULES)
    for k, v in model.items():
        setattr(cfg.model, k, v)
    return cfg
