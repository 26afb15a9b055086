"""Test factories: tiny random-initialised models from configs, an offline byte-level tokenizer, small corpora,
and Plotly's array encoding."""

import numpy as np
import torch


def plotly_array(v) -> np.ndarray:
    """An array from a figure's JSON: a list, or {"dtype", "bdata": base64[, "shape"]} as Plotly writes NumPy."""
    import base64

    if not isinstance(v, dict):
        return np.asarray(v)
    a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return a.reshape([int(n) for n in str(v["shape"]).split(",")]) if "shape" in v else a


def tiny_config(arch: str):
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig

    if arch == "llama":
        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=300, max_position_embeddings=256)
    if arch == "gemma3":
        return Gemma3TextConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                                num_key_value_heads=1, head_dim=16, vocab_size=300, max_position_embeddings=256,
                                sliding_window=8, layer_types=["sliding_attention", "sliding_attention",
                                                               "full_attention"], final_logit_softcapping=30.0)
    if arch == "gpt2":
        return GPT2Config(n_embd=64, n_layer=3, n_head=4, vocab_size=300, n_positions=256, bos_token_id=0,
                          eos_token_id=0)
    raise ValueError(arch)


def tiny_model(arch: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation="eager")
    return model.eval().requires_grad_(False)


TINY_TEXT = """The cat sat on the mat. The dog chased the cat around the garden, and the bird watched from a tree.
Paris is the capital of France. Rome is the capital of Italy. Berlin is the capital of Germany.
In 1905 the physicist published four papers. Numbers like 12, 345 and 6789 appear in tables and lists.
def add(a, b):\n    return a + b\n# a function that adds two numbers <b>bold</b> <script>alert(1)</script>
"""


def tiny_tokenizer(vocab_size: int = 300):
    """A byte-level BPE trained here, offline, with a BOS token that the tokenizer adds by default."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<bos>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TINY_TEXT] * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>")


def write_corpus(path, n_docs: int = 12, seed: int = 0) -> str:
    """A .txt corpus of documents (blank-line separated) of varied lengths built from TINY_TEXT's sentences."""
    rng = np.random.default_rng(seed)
    sents = [s.strip() + "." for s in TINY_TEXT.replace("\n", " ").split(".") if s.strip()]
    docs = [" ".join(rng.choice(sents, size=int(rng.integers(1, 25)))) for _ in range(n_docs)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return str(path)
