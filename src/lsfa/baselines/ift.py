"""Generative NER (the instruction-tuned "IFT" baseline): prompt, robust answer parser, greedy decoding, scoring.

The reference paper compares its token classifiers with the same decoder fine-tuned to *write* the entities:
an Alpaca-style prompt (an instruction, the entity types as options, the input sentence) whose response
lists ``entity:type;entity:type;`` (``None`` when the sentence has no entity). Such output has no word
positions, so it is scored as the paper scores it: each sentence becomes the set of (surface text, type)
pairs and :func:`lsfa.eval.metrics.set_prf` compares the sets with the gold ones from
:func:`lsfa.eval.metrics.entity_set` (surface = words joined by one space, as here).

A generated answer is free text and may be anything, so :func:`parse_response` never raises: pieces it
cannot read (no ``type`` part, an empty entity, a type that is not an option) are counted as malformed and
reported with the scores, because a baseline that silently drops half its output would look better or
worse than it is for a reason nobody sees.

Training (LoRA, loss on response tokens only) lives in :mod:`lsfa.baselines.ift_train`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lsfa.data.types import Sentence
from lsfa.eval.metrics import entity_set, set_prf
from lsfa.eval.spans import get_spans

NO_ENTITY = "None"
"""The response of a sentence without entities (an empty response would teach the model to stop at once)."""

PIECE_SEPARATOR = ";"
TYPE_SEPARATOR = ":"
SECTION_MARK = "###"
"""Alpaca section headers start with this; a model that runs on into a new section has finished its answer."""

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)
INSTRUCTION = (
    "Find the named entities in the input sentence and give the type of each, chosen from the options. "
    "Answer as entity:type; for every entity, in the order they appear, or None if there is no entity."
)
PROMPT_TEMPLATE = (
    "{preamble}\n\n### Instruction:\n{instruction}\nOptions: {options}\n\n### Input:\n{sentence}\n\n### Response:\n"
)
PAPER_INSTRUCTION = (
    "please extract named entities and their type from the input sentence, all entity types are in options."
)
PAPER_TEMPLATE = "### Instruction:\n{instruction}\n### Options:\n{options}\n### Sentence:\n{sentence}\n### Response:\n"
"""The reference paper's prompt (its Appendix B); types are lower-case full words, answers ``entity:type;``."""
PAPER_TYPE_NAMES = {"ORG": "organization", "MISC": "miscellaneous", "PER": "person", "LOC": "location"}
"""How the paper names CoNLL-2003's types; other types (BC5CDR's Chemical, Disease) are lower-cased."""
PROMPTS = ("paper", "lsfa")
"""``paper``: the reference paper's prompt (default); ``lsfa``: lsfa's earlier Alpaca-style prompt."""


def type_name(entity_type: str, prompt: str = "paper") -> str:
    """What the prompt and the answers call a label type (``ORG`` -> ``organization`` in the paper's prompt)."""
    if prompt == "paper":
        return PAPER_TYPE_NAMES.get(entity_type, entity_type.lower())
    return entity_type


Entity = tuple[str, str]


def sentence_text(tokens: Sequence[str]) -> str:
    """The input sentence as the model reads it: words joined by one space (the surface ``entity_set`` uses)."""
    return " ".join(tokens)


def build_prompt(tokens: Sequence[str], types: Sequence[str], prompt: str = "paper") -> str:
    """The prompt for one sentence, ending where the response begins: the paper's (``paper``) or lsfa's
    Alpaca-style one (``lsfa``)."""
    if prompt == "paper":
        options = ",".join(type_name(t, prompt) for t in types)
        return PAPER_TEMPLATE.format(instruction=PAPER_INSTRUCTION, options=options, sentence=sentence_text(tokens))
    if prompt != "lsfa":
        raise ValueError(f"unknown prompt {prompt!r}; use one of {', '.join(PROMPTS)}")
    return PROMPT_TEMPLATE.format(
        preamble=ALPACA_PREAMBLE,
        instruction=INSTRUCTION,
        options=", ".join(types),
        sentence=sentence_text(tokens),
    )


def ordered_entities(sentence: Sentence) -> list[Entity]:
    """The gold (surface, type) pairs in order of appearance, each once (the target is scored as a set)."""
    spans = get_spans(sentence.tags, "IOB2", "strict")
    pairs = (((sentence_text(sentence.tokens[span.start : span.end])), span.type) for span in spans)
    return list(dict.fromkeys(pairs))


def format_response(entities: Sequence[Entity], prompt: str = "paper") -> str:
    """``entity:type;entity:type;`` or ``None``: the text the model learns to write (types as the prompt names
    them)."""
    if not entities:
        return NO_ENTITY
    pieces = (f"{text}{TYPE_SEPARATOR}{type_name(t, prompt)}{PIECE_SEPARATOR}" for text, t in entities)
    return "".join(pieces)


def build_pair(sentence: Sentence, types: Sequence[str], prompt: str = "paper") -> tuple[str, str]:
    """(prompt, response) for one gold sentence."""
    return build_prompt(sentence.tokens, types, prompt), format_response(ordered_entities(sentence), prompt)


def parse_response(text: str | None, types: Sequence[str], prompt: str = "paper") -> tuple[set[Entity], int]:
    """The (entity, type) set of a generated answer and the number of malformed pieces; never raises.

    Tolerated: a missing trailing ``;``, spaces around pieces and inside the entity (collapsed to one, as
    words are joined), ``None`` or empty answers, duplicates (a set), a type in another letter case, text
    after an Alpaca ``###`` header, newlines between pieces. An entity may contain ``:`` (``Ratio 2:1:MISC``)
    because the type is what follows the *last* colon. Malformed (counted, dropped): a piece without a
    colon, with an empty entity, or whose type is not one of ``types``.
    """
    if not text:
        return set(), 0
    answer = str(text).split(SECTION_MARK, 1)[0]
    canonical = _type_lookup(types)
    if prompt == "paper":  # answers name types as the prompt does; they score as the label types
        names: dict[str, list[str]] = {}
        for entity_type in types:
            names.setdefault(type_name(entity_type, prompt).casefold(), []).append(entity_type)
        canonical.update({name: found[0] for name, found in names.items() if len(found) == 1})  # unambiguous only
    entities: set[Entity] = set()
    malformed = 0
    for piece in answer.replace("\n", PIECE_SEPARATOR).split(PIECE_SEPARATOR):
        piece = piece.strip()
        if not piece or piece.casefold() == NO_ENTITY.casefold():
            continue
        surface, colon, raw_type = piece.rpartition(TYPE_SEPARATOR)
        surface = " ".join(surface.split())
        entity_type = _match_type(raw_type.strip(), canonical)
        if not colon or not surface or entity_type is None:
            malformed += 1
            continue
        entities.add((surface, entity_type))
    return entities, malformed


def _type_lookup(types: Sequence[str]) -> dict[str, str]:
    """Exact names first, then case-folded names (unless two types fold to the same text)."""
    lookup = {entity_type: entity_type for entity_type in types}
    folded: dict[str, list[str]] = {}
    for entity_type in types:
        folded.setdefault(entity_type.casefold(), []).append(entity_type)
    for key, names in folded.items():
        if len(names) == 1:
            lookup.setdefault(key, names[0])
    return lookup


def _match_type(raw: str, lookup: dict[str, str]) -> str | None:
    return lookup.get(raw) or lookup.get(raw.casefold())


# --- decoding --------------------------------------------------------------------------------------------
def generate_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 128,
    batch_size: int = 16,
    precision: str = "fp32",
    share_prefix: bool = True,
) -> tuple[list[str], int]:
    """Greedy answers for ``prompts`` (batched, shortest first, left-padded) and how many hit the limit.

    Left padding keeps every prompt's last token at the end of the row, where generation continues;
    the attention mask hides the pads. A response that used all ``max_new_tokens`` without an end token
    was cut, which is counted so a too small limit shows in the metrics instead of as lost recall.

    ``share_prefix``: the prompts' common leading tokens (the instruction and the options, about half of every
    paper prompt) are computed once, and each batch starts from a copy of their key/value cache; the pads then
    sit between that prefix and each row's own part, hidden by the mask, with positions counted over real
    tokens only. Greedy answers are those of the full prompts (a test compares them).
    """
    import torch
    from transformers import GenerationConfig

    from lsfa.inference.predictor import autocast_context  # lazy: torch, as above; prompts and parsing need none

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    settings = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        use_cache=True,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    encoded = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    shared = _shared_prefix(encoded) if share_prefix else []
    order = sorted(range(len(prompts)), key=lambda index: len(encoded[index]))
    answers: list[str] = [""] * len(prompts)
    cut = 0
    model.eval()
    with torch.no_grad(), autocast_context(device, precision):
        prefix_cache = (
            model(input_ids=torch.tensor([shared], device=device), use_cache=True).past_key_values if shared else None
        )
        if not hasattr(prefix_cache, "batch_repeat_interleave"):  # a cache that cannot be copied per row
            shared, prefix_cache = [], None
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            input_ids, attention_mask = _left_pad([encoded[index][len(shared) :] for index in batch], pad_id, device)
            extra = {}
            if shared:
                prefix = torch.tensor([shared] * len(batch), device=device)
                input_ids = torch.cat([prefix, input_ids], dim=1)
                attention_mask = torch.cat([torch.ones_like(prefix), attention_mask], dim=1)
                extra["past_key_values"] = copy.deepcopy(prefix_cache)
                extra["past_key_values"].batch_repeat_interleave(len(batch))
            output = model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=settings, **extra
            )
            new_tokens = output[:, input_ids.shape[1] :]
            for index, row in zip(batch, new_tokens.tolist(), strict=True):
                answer_ids, ended = _until_end(row, tokenizer.eos_token_id)
                answers[index] = tokenizer.decode(answer_ids, skip_special_tokens=True)
                cut += int(not ended and len(row) >= max_new_tokens)
    return answers, cut


def _shared_prefix(encoded: Sequence[Sequence[int]], minimum: int = 8) -> list[int]:
    """The token ids every prompt starts with, leaving each at least one token of its own (generation needs
    one uncached input token), or nothing when fewer than ``minimum`` are shared (not worth a cache copy)."""
    if not encoded:
        return []
    shortest = min(len(ids) for ids in encoded) - 1
    first = encoded[0]
    length = 0
    while length < shortest and all(ids[length] == first[length] for ids in encoded):
        length += 1
    return list(first[:length]) if length >= minimum else []


def _until_end(ids: list[int], eos_id: int | None) -> tuple[list[int], bool]:
    """The generated ids before the first end token (what follows is padding) and whether it was found."""
    if eos_id is not None and eos_id in ids:
        return ids[: ids.index(eos_id)], True
    return ids, False


def _left_pad(rows: list[list[int]], pad_id: int, device):
    import torch

    width = max(len(row) for row in rows)
    ids = [[pad_id] * (width - len(row)) + row for row in rows]
    mask = [[0] * (width - len(row)) + [1] * len(row) for row in rows]
    return torch.tensor(ids, device=device), torch.tensor(mask, device=device)


# --- predicting and scoring ------------------------------------------------------------------------------
@dataclass
class GenerativePrediction:
    """One split's generated answers, what was parsed from them, and how long generation took."""

    responses: list[str]
    entities: list[set[Entity]]
    malformed: list[int]
    seconds: float
    cut_responses: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def predict_entities(
    model,
    tokenizer,
    sentences: Sequence[Sentence],
    types: Sequence[str],
    max_new_tokens: int = 128,
    batch_size: int = 16,
    precision: str = "fp32",
    prompt: str = "paper",
) -> GenerativePrediction:
    """Prompt, generate greedily and parse, one (possibly empty) entity set per sentence."""
    prompts = [build_prompt(sentence.tokens, types, prompt) for sentence in sentences]
    start = time.perf_counter()
    responses, cut = generate_responses(model, tokenizer, prompts, max_new_tokens, batch_size, precision)
    seconds = time.perf_counter() - start
    parsed = [parse_response(response, types, prompt) for response in responses]
    return GenerativePrediction(
        responses=responses,
        entities=[entities for entities, _ in parsed],
        malformed=[count for _, count in parsed],
        seconds=seconds,
        cut_responses=cut,
    )


def gold_sets(sentences: Sequence[Sentence]) -> list[set[Entity]]:
    """Per-sentence gold (surface, type) sets, exactly as the token taggers' set scores use them."""
    return [entity_set(sentence.tokens, sentence.tags) for sentence in sentences]


def score_prediction(sentences: Sequence[Sentence], prediction: GenerativePrediction) -> dict[str, Any]:
    """Set-based P/R/F1 (micro and per type), malformed counts and timing, in the keys of an lsfa split result."""
    gold = gold_sets(sentences)
    predicted = prediction.entities
    types = sorted({t for pairs in gold for _, t in pairs} | {t for pairs in predicted for _, t in pairs})
    per_type = {}
    for entity_type in types:
        gold_of_type = [{p for p in pairs if p[1] == entity_type} for pairs in gold]
        pred_of_type = [{p for p in pairs if p[1] == entity_type} for pairs in predicted]
        per_type[entity_type] = {**set_prf(gold_of_type, pred_of_type), "support": sum(map(len, gold_of_type))}
    n_sentences = len(sentences)
    return {
        "set": {**set_prf(gold, predicted), "support": sum(map(len, gold))},
        "set_per_type": per_type,
        "malformed": sum(prediction.malformed),
        "malformed_sentences": sum(1 for count in prediction.malformed if count),
        "cut_responses": prediction.cut_responses,
        "n_sentences": n_sentences,
        "n_gold_entities": sum(map(len, gold)),
        "n_predicted_entities": sum(map(len, predicted)),
        "inference_seconds": prediction.seconds,
        "ms_per_sentence": 1000 * prediction.seconds / max(n_sentences, 1),
    }


def prediction_records(sentences: Sequence[Sentence], prediction: GenerativePrediction) -> list[dict[str, Any]]:
    """One JSON-able record per sentence for ``predictions/<split>.jsonl`` (raw answer, parsed and gold sets)."""
    records = []
    gold = gold_sets(sentences)
    for index, sentence in enumerate(sentences):
        records.append(
            {
                "index": index,
                "line": sentence.line,
                "doc_id": sentence.doc_id,
                "sentence": sentence_text(sentence.tokens),
                "response": prediction.responses[index],
                "predicted": sorted(map(list, prediction.entities[index])),
                "gold": sorted(map(list, gold[index])),
                "malformed": prediction.malformed[index],
            }
        )
    return records


# --- publishing answers without words --------------------------------------------------------------------
@dataclass
class Placement:
    """How a sentence's (surface, type) answer set was laid onto its words as IOB2 tags.

    ``placed`` pairs have at least one occurrence in the tags; ``not_in_sentence`` pairs match no run of the
    sentence's words (always false positives in set scoring); ``overlapping`` pairs occur, but every
    occurrence overlaps a longer (or earlier) placed one, so the tags cannot show them.
    """

    tags: list[str]
    placed: int
    not_in_sentence: int
    overlapping: int


def place_entities(tokens: Sequence[str], entities: Iterable[Entity]) -> Placement:
    """Tags marking every occurrence of every answered entity in ``tokens``, longest first, none overlapping.

    A generative answer names entities without positions; published as tags (one per word, no words: the
    corpus text is not republished) it can be read back with ``lsfa evaluate`` like a tagger's predictions.
    Its set of (surface, type) pairs is the answer's set minus the pairs counted as not placed, so the
    counts say exactly how far a score from the tags may differ from the set-based score of the answers.
    """
    tags = ["O"] * len(tokens)
    occurrences = []  # (-length, start, surface, type): longest first, then leftmost
    pairs = sorted(set(entities))
    for surface, entity_type in pairs:
        length = len(surface.split(" "))
        for start in range(len(tokens) - length + 1):
            if sentence_text(tokens[start : start + length]) == surface:
                occurrences.append((-length, start, surface, entity_type))
    placed: set[Entity] = set()
    for negative_length, start, surface, entity_type in sorted(occurrences):
        end = start - negative_length
        if all(tag == "O" for tag in tags[start:end]):
            tags[start:end] = [f"B-{entity_type}"] + [f"I-{entity_type}"] * (end - start - 1)
            placed.add((surface, entity_type))
    found = {(surface, entity_type) for _, _, surface, entity_type in occurrences}
    return Placement(
        tags=tags,
        placed=len(placed),
        not_in_sentence=len(pairs) - len(found),
        overlapping=len(found - placed),
    )
