"""Tiny, offline stand-ins for real tokenizers and models, built in milliseconds.

Unit tests must not download anything, so they train miniature tokenizers of the three families that
matter for alignment (byte-level BPE as in GPT-2/SmolLM2/Qwen, SentencePiece-style Metaspace as in
Llama 2/Gemma, WordPiece as in BERT) and save randomly initialised models built from configs.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

CORPUS = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn visited Brussels on 1996-08-22 with the European Commission .",
    "Naloxone reverses the antihypertensive effect of clonidine .",
    "Guillain-Barré syndrome was reported after selegiline - induced hypotension in São Paulo .",
    "The quick brown fox jumps over the lazy dog , said Dr. Smith of Acme Corp. in New York City .",
    "Zürich , naïve café , résumé — 東京 and emoji 🙂 are odd Unicode .",
] * 3


def _fast(tokenizer: Tokenizer, **special) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


def byte_bpe_tokenizer(
    with_bos: bool = True, vocab_size: int = 300, texts: list[str] | None = None
) -> PreTrainedTokenizerFast:
    """GPT-2 / SmolLM2 style: byte-level BPE, the leading space lives inside the next token.

    ``texts`` (default :data:`CORPUS`) is what the merges are learnt from: tests of long fixed prompts pass
    the prompt too, so it is a few dozen tokens instead of hundreds of single bytes.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|pad|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts or CORPUS, trainer)
    if with_bos:
        bos = tok.token_to_id("<|endoftext|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return _fast(tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|pad|>")


def metaspace_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """Llama 2 / Gemma style: SentencePiece-like Metaspace pre-tokenizer ("▁word") with a BOS."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", "<pad>"])
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return _fast(tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def wordpiece_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """BERT style: uncased WordPiece with [CLS] ... [SEP]."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return _fast(tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def tiny_decoder_dir(path: Path, model_type: str = "llama", num_layers: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised tiny decoder plus a byte-level BPE tokenizer as a model folder."""
    import torch
    from transformers import AutoConfig, AutoModel

    tokenizer = byte_bpe_tokenizer()
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        head_dim=8,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_encoder_dir(path: Path, seed: int = 0) -> Path:
    """Save a randomly initialised tiny BERT plus a WordPiece tokenizer as a model folder."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_causal_lm(tied: bool = True, seed: int = 0):
    """A tiny llama causal LM in memory (``lm_head`` tied to the embeddings unless ``tied=False``), in eval
    mode, and its byte-level BPE tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_bpe_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tokenizer


def tiny_causal_lm_dir(
    path: Path, num_layers: int = 2, seed: int = 0, tied: bool = True, texts: list[str] | None = None
) -> Path:
    """A tiny llama *with* its language-model head (tied to the embeddings, as SmolLM2's), for generative tests.

    ``tied=False`` saves the backbone only, like a catalogue folder whose head was dropped: loading it as a
    causal LM leaves ``lm_head`` random, which the generative baseline must refuse. ``texts``: see
    :func:`byte_bpe_tokenizer`.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    tokenizer = byte_bpe_tokenizer(vocab_size=600 if texts else 300, texts=texts)
    config = AutoConfig.for_model(
        "llama",
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        head_dim=8,
        tie_word_embeddings=tied,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config) if tied else AutoModel.from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
