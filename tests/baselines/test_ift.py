"""Generative NER: the Alpaca prompt, the answer format, the robust parser, batched greedy decoding and set scoring."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsfa.baselines.ift import (
    GenerativePrediction,
    build_pair,
    build_prompt,
    format_response,
    generate_responses,
    parse_response,
    place_entities,
    prediction_records,
    score_prediction,
)
from lsfa.data.schemes import entity_types
from lsfa.data.types import Sentence
from lsfa.eval.metrics import entity_set

TYPES = ["PER", "ORG", "LOC", "MISC"]
SENTENCE = Sentence(
    ["Peter", "Smith", "of", "Acme", "met", "Peter", "Smith", "in", "New", "York", "."],
    ["B-PER", "I-PER", "O", "B-ORG", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"],
)


# --- prompt and response ------------------------------------------------------------------------------------
def test_prompt_has_the_alpaca_sections_options_and_the_sentence_as_joined_words() -> None:
    prompt = build_prompt(SENTENCE.tokens, TYPES, "lsfa")
    sections = ["### Instruction:\n", "Options: PER, ORG, LOC, MISC\n", "### Input:\n", "### Response:\n"]
    positions = [prompt.index(section) for section in sections]
    assert positions == sorted(positions)
    assert prompt.startswith("Below is an instruction that describes a task")
    assert "\n### Input:\nPeter Smith of Acme met Peter Smith in New York .\n\n### Response:\n" in prompt
    assert prompt.endswith("### Response:\n"), "the response must follow the prompt directly"


def test_response_lists_entities_in_order_once_each_with_a_trailing_separator() -> None:
    prompt, response = build_pair(SENTENCE, TYPES, "lsfa")
    assert response == "Peter Smith:PER;Acme:ORG;New York:LOC;"
    assert prompt == build_prompt(SENTENCE.tokens, TYPES, "lsfa")
    assert build_pair(Sentence(["No", "entity", "."], ["O", "O", "O"]), TYPES)[1] == "None"


def test_the_paper_prompt_is_the_default_with_its_type_names() -> None:
    prompt, response = build_pair(SENTENCE, ["ORG", "MISC", "PER", "LOC"])
    assert prompt == (
        "### Instruction:\nplease extract named entities and their type from the input sentence, all entity types "
        "are in options.\n### Options:\norganization,miscellaneous,person,location\n### Sentence:\n"
        "Peter Smith of Acme met Peter Smith in New York .\n### Response:\n"
    )
    assert response == "Peter Smith:person;Acme:organization;New York:location;"
    assert parse_response(response, TYPES) == ({("Peter Smith", "PER"), ("Acme", "ORG"), ("New York", "LOC")}, 0)
    assert build_prompt(["a"], ["Chemical", "Disease"]).count("chemical,disease") == 1


def test_the_target_response_parses_back_to_the_gold_entity_set() -> None:
    _, response = build_pair(SENTENCE, TYPES)
    assert parse_response(response, TYPES) == (entity_set(SENTENCE.tokens, SENTENCE.tags), 0)


def test_entity_types_come_from_the_label_list_in_order() -> None:
    assert entity_types(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-X-Y"]) == ["PER", "LOC", "X-Y"]


# --- parser ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "entities", "malformed"),
    [
        ("Peter:PER;Paris:LOC;", {("Peter", "PER"), ("Paris", "LOC")}, 0),
        ("Peter:PER;Paris:LOC", {("Peter", "PER"), ("Paris", "LOC")}, 0),  # no trailing separator
        ("  Peter  Smith :  PER ;  Paris:LOC ; ", {("Peter Smith", "PER"), ("Paris", "LOC")}, 0),  # spaces
        ("Peter:PER;Peter:PER;", {("Peter", "PER")}, 0),  # duplicates are one set member
        ("Peter:per;", {("Peter", "PER")}, 0),  # type in another case
        ("Ratio 2:1:MISC;", {("Ratio 2:1", "MISC")}, 0),  # the type follows the last colon
        ("None", set(), 0),
        ("none;", set(), 0),
        ("", set(), 0),
        (None, set(), 0),
        ("   ", set(), 0),
        ("Peter:PERSON;Paris:LOC;", {("Paris", "LOC")}, 1),  # unknown type
        ("Peter;Paris:LOC;", {("Paris", "LOC")}, 1),  # no type at all
        (":PER;Paris:;", set(), 2),  # empty entity, empty type
        ("Peter:PER\nParis:LOC", {("Peter", "PER"), ("Paris", "LOC")}, 0),  # newline as separator
        ("Peter:PER;\n\n### Instruction:\nfoo:bar", {("Peter", "PER")}, 0),  # ran on into a new section
        (";;;", set(), 0),
    ],
)
def test_parser_edge_cases(text, entities, malformed) -> None:
    assert parse_response(text, TYPES, "lsfa") == (entities, malformed)


def test_types_differing_only_in_case_are_matched_exactly() -> None:
    types = ["Gene", "GENE"]
    assert parse_response("a:Gene;b:GENE;c:gene;", types, "lsfa") == ({("a", "Gene"), ("b", "GENE")}, 1)
    assert parse_response("a:Gene;b:GENE;c:gene;", types) == ({("a", "Gene"), ("b", "GENE")}, 1)  # "gene": both


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_raises_and_returns_only_known_types(text: str) -> None:
    entities, malformed = parse_response(text, TYPES)
    assert malformed >= 0
    assert all(
        entity_type in TYPES and surface == " ".join(surface.split()) and surface for surface, entity_type in entities
    )
    pieces = [p for p in text.split("###", 1)[0].replace("\n", ";").split(";") if p.strip()]
    assert len(entities) + malformed <= len(pieces)


surfaces = st.text(alphabet=st.characters(blacklist_characters=";\n#", blacklist_categories=("Cs",)), min_size=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(surfaces, st.sampled_from(TYPES)), max_size=6))
def test_formatted_answers_round_trip_and_garbage_pieces_are_counted(pairs) -> None:
    pairs = [(" ".join(s.split()), t) for s, t in pairs if s.split()]
    text = format_response(pairs)
    assert parse_response(text, TYPES) == (set(pairs), 0)
    entities, malformed = parse_response(text + "garbage without a type;x:NOTATYPE;", TYPES)
    assert entities == set(pairs) and malformed == 2


# --- decoding --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.tiny import tiny_causal_lm_dir

    folder = tiny_causal_lm_dir(Path(tmp_path_factory.mktemp("causal")) / "model")
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(tiny_lm) -> None:
    model, tokenizer = tiny_lm
    prompts = ["Peter", "EU rejects German call to boycott British lamb .", "Naloxone reverses the effect"]
    batched, _ = generate_responses(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    alone = [generate_responses(model, tokenizer, [p], max_new_tokens=6, batch_size=1)[0][0] for p in prompts]
    assert batched == alone
    assert all(isinstance(answer, str) for answer in batched)


@pytest.fixture(scope="module")
def loud_lm(tmp_path_factory):
    """A tiny LM with a large random output head: unlike the tied one, which repeats the prompt's last token
    whatever came before, its answers change when the prompt's earlier tokens are hidden or misplaced."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.tiny import tiny_causal_lm_dir

    folder = tiny_causal_lm_dir(Path(tmp_path_factory.mktemp("loud")) / "model", tied=False)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    torch.manual_seed(1)
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)
    return model, AutoTokenizer.from_pretrained(folder)


def test_a_shared_prompt_prefix_computed_once_gives_the_same_answers(loud_lm) -> None:
    """The instruction and options are the same in every prompt: generating from one cached copy of them (pads
    between that prefix and each row's sentence) must answer exactly as the full prompts do, in odd-sized
    batches of prompts of different lengths (with the prefix masked out, the answers differ)."""
    from lsfa.baselines.ift import _shared_prefix

    model, tokenizer = loud_lm
    sentences = [["Peter"], ["EU", "rejects", "German", "call"], ["Naloxone", "reverses", "the", "effect", "."],
                 ["Paris", "!"], ["A", "b", "c", "d", "e", "f", "g"]]  # fmt: skip
    prompts = [build_prompt(tokens, ["PER", "LOC"]) for tokens in sentences]
    encoded = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    assert len(_shared_prefix(encoded)) >= 8, "the paper's prompt opens with the same instruction every time"
    shared, _ = generate_responses(model, tokenizer, prompts, max_new_tokens=6, batch_size=3, share_prefix=True)
    full, _ = generate_responses(model, tokenizer, prompts, max_new_tokens=6, batch_size=3, share_prefix=False)
    assert shared == full


def test_the_shared_prefix_leaves_every_prompt_a_token_of_its_own() -> None:
    from lsfa.baselines.ift import _shared_prefix

    assert _shared_prefix([list(range(10)), list(range(12))]) == list(range(9))
    assert _shared_prefix([list(range(20)), [0, 1, 2, 99, *range(4, 20)]]) == [], "3 shared tokens: not worth it"
    assert _shared_prefix([]) == [] and _shared_prefix([list(range(30))]) == list(range(29))


def test_generation_stops_at_max_new_tokens_and_counts_cut_answers(tiny_lm) -> None:
    model, tokenizer = tiny_lm
    model.generation_config.eos_token_id = None  # a random model rarely ends by itself; make sure it cannot
    answers, cut = generate_responses(model, tokenizer, ["Peter", "Paris"], max_new_tokens=3, batch_size=2)
    assert cut == 2
    assert all(len(tokenizer(a, add_special_tokens=False)["input_ids"]) <= 3 + 1 for a in answers)


# --- scoring ---------------------------------------------------------------------------------------------
def test_scores_are_set_based_with_malformed_counts_and_records() -> None:
    other = Sentence(["Paris", "!"], ["B-LOC", "O"])
    prediction = GenerativePrediction(
        responses=["Peter Smith:PER;Acme:LOC;junk", "None"],
        entities=[{("Peter Smith", "PER"), ("Acme", "LOC")}, set()],
        malformed=[1, 0],
        seconds=0.5,
    )
    result = score_prediction([SENTENCE, other], prediction)
    # gold: 3 + 1 entities; predicted 2, of which 1 correct
    assert result["set"]["precision"] == pytest.approx(0.5)
    assert result["set"]["recall"] == pytest.approx(0.25)
    assert result["malformed"] == 1 and result["malformed_sentences"] == 1
    assert result["n_sentences"] == 2 and result["ms_per_sentence"] == pytest.approx(250.0)
    assert result["set_per_type"]["PER"]["f1"] == pytest.approx(1.0)
    assert result["set_per_type"]["ORG"]["recall"] == 0.0 and result["set_per_type"]["LOC"]["support"] == 2
    records = prediction_records([SENTENCE, other], prediction)
    assert records[1] == {
        "index": 1, "line": 0, "doc_id": 0, "sentence": "Paris !", "response": "None",
        "predicted": [], "gold": [["Paris", "LOC"]], "malformed": 0,
    }  # fmt: skip


# --- publishing answers as tags ------------------------------------------------------------------------------
def test_answers_are_laid_on_every_occurrence_and_read_back_as_the_same_set() -> None:
    answer = {("Peter Smith", "PER"), ("Acme", "ORG"), ("New York", "LOC")}
    placement = place_entities(SENTENCE.tokens, answer)
    assert placement.tags == SENTENCE.tags
    assert (placement.placed, placement.not_in_sentence, placement.overlapping) == (3, 0, 0)
    assert entity_set(SENTENCE.tokens, placement.tags) == answer


def test_answers_that_cannot_be_laid_on_the_words_are_counted_not_lost() -> None:
    """A pair matching no words, and one hidden under a longer answer, are counted, so a score read back from
    the tags can be told apart from the answers' own set score."""
    answer = {("New York", "LOC"), ("York", "ORG"), ("Paris", "LOC"), ("Peter", "PER")}
    placement = place_entities(SENTENCE.tokens, answer)
    assert placement.tags[8:10] == ["B-LOC", "I-LOC"]
    assert placement.tags[0] == placement.tags[5] == "B-PER" and placement.tags[1] == "O"
    assert (placement.placed, placement.not_in_sentence, placement.overlapping) == (2, 1, 1)
    assert entity_set(SENTENCE.tokens, placement.tags) == {("New York", "LOC"), ("Peter", "PER")}


def test_one_surface_answered_with_two_types_places_one_and_counts_the_other() -> None:
    placement = place_entities(["in", "Paris", "."], {("Paris", "LOC"), ("Paris", "ORG")})
    assert placement.tags == ["O", "B-LOC", "O"] and (placement.placed, placement.overlapping) == (1, 1)
