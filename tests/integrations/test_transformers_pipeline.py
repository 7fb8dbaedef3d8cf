"""A saved full-weights tagger is a plain transformers folder: in a fresh process without lsfa,
``pipeline("token-classification", aggregation_strategy="first")`` finds the entities ``Tagger`` finds, and an
LS-FA folder is bidirectional (its config says ``is_causal: false``), so a right-hand word moves left logits."""

from __future__ import annotations

import json
import subprocess
import sys

from lsfa.inference.tagger import Tagger

TEXTS = ["the dog said Bob Carter sat on the mat", "Bill and Cole Carter sat in Berlin", "the cat sat"]
SCRIPT = """
import json, sys, torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
rule, random_ = sys.argv[1], sys.argv[2]
ner = pipeline("token-classification", model=AutoModelForTokenClassification.from_pretrained(rule),
               tokenizer=AutoTokenizer.from_pretrained(rule), aggregation_strategy="first")
found = [[[e["word"].strip(), e["entity_group"]] for e in ner(text)] for text in json.loads(sys.argv[3])]
model, tokenizer = AutoModelForTokenClassification.from_pretrained(random_), AutoTokenizer.from_pretrained(random_)
def first(text):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits[0, :2]
moved = float((first("Peter visited Brussels") - first("Peter visited London")).abs().max())
print(json.dumps({"found": found, "moved": moved, "lsfa_imported": any(m.startswith("lsfa") for m in sys.modules)}))
"""


def test_plain_transformers_pipeline_matches_the_tagger(tiny_taggers) -> None:
    args = [sys.executable, "-c", SCRIPT, str(tiny_taggers["rule"]), str(tiny_taggers["random"]), json.dumps(TEXTS)]
    result = json.loads(
        subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    )
    tagger = Tagger.load(tiny_taggers["rule"], precision="fp32", decoding="argmax")
    expected = [[[entity.text, entity.label] for entity in tagger(text)] for text in TEXTS]
    assert result["found"] == expected and not result["lsfa_imported"]
    assert result["moved"] > 1e-3  # bidirectional without any lsfa call (a causal model moves by 0 here)


def test_a_layer_subset_tagger_refuses_plain_loading_but_loads_with_lsfa(tmp_path) -> None:
    import pytest
    from transformers import AutoModelForTokenClassification

    from lsfa.models.attention import AttentionSpec, get_attention
    from lsfa.models.classifier import build_token_classifier, load_tokenizer
    from lsfa.models.saving import TaggerMeta, save_tagger
    from tests.tiny import tiny_decoder_dir

    base = tiny_decoder_dir(tmp_path / "base", "llama")
    model = build_token_classifier(base, ["O", "B-PER", "I-PER"], "1")
    meta = TaggerMeta(base_model=str(base), model_type="llama", labels=["O", "B-PER", "I-PER"], attention="1",
                      weights="full")  # fmt: skip
    folder = save_tagger(model, load_tokenizer(base), tmp_path / "subset", meta)
    with pytest.raises(ValueError, match=r"lsfa-layer-subset"):
        AutoModelForTokenClassification.from_pretrained(folder)  # would otherwise run bidirectional everywhere
    tagger = Tagger.load(folder, precision="fp32")
    assert get_attention(tagger.model) == AttentionSpec("layers", (1,))
