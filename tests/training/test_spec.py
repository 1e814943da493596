"""Job spec parsing, validation errors and the canonical hash (docs/protocol.md)."""
from __future__ import annotations

import json

import pytest

from protocol.hashing import sha256
from protocol.spec import JobSpec, SpecError, parse_spec, spec_from_json

BASE = """
dataset = "0x{h}"
inner_steps = 20
units_per_round = 2
rounds = 3
batch_size = 4
seq_len = 16
seed = 7
[model]
kind = "mlp"
[payment]
reward_per_unit = 5
"""


def spec_text(**edits: str) -> str:
    text = BASE.format(h="ab" * 32)
    for old, new in edits.items():
        text = text.replace(old, new)
    return text


def test_defaults_filled_and_derived_values() -> None:
    s = parse_spec(spec_text())
    assert s.max_units == 6 and s.budget == 30 and s.num_segments == 2
    assert s.outer_optimizer.lr == 0.7 and s.outer_optimizer.momentum == 0.9 and s.outer_optimizer.nesterov
    assert s.precision == "fp32" and s.verification.mode == "exact"


def test_canonical_bytes_and_hash() -> None:
    s = parse_spec(spec_text())
    raw = s.canonical_bytes()
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    assert s.spec_hash() == sha256(raw) and len(s.spec_hash()) == 32
    assert spec_from_json(raw) == s and spec_from_json(raw).spec_hash() == s.spec_hash()
    # key order, explicit defaults and hex case do not change the hash
    same = parse_spec(spec_text(**{"seed = 7": "seed = 7\nprecision = \"fp32\"", "0xab": "0xAB"}))
    assert same.spec_hash() == s.spec_hash()
    other = parse_spec(spec_text(**{"seed = 7": "seed = 8"}))
    assert other.spec_hash() != s.spec_hash()


def test_big_reward_travels_as_decimal_string() -> None:
    s = parse_spec(spec_text(**{"reward_per_unit = 5": 'reward_per_unit = "123456789012345678901234567890"'}))
    assert s.payment.reward_per_unit == 123456789012345678901234567890
    assert b'"reward_per_unit":"123456789012345678901234567890"' in s.canonical_bytes()


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        ({"seed = 7": "seed = 7\ncolour = 1"}, "colour: unknown key"),
        ({"seed = 7\n": ""}, "seed: required field is missing"),
        ({'kind = "mlp"': 'kind = "gpt"\nn_head = 3'}, "divisible by n_head"),
        ({'kind = "mlp"': 'kind = "gpt"\nblock_size = 8'}, "seq_len (16) must be <= model.block_size (8)"),
        ({"seed = 7": 'seed = 7\nprecision = "bf16"'}, "needs device = 'cuda'"),
        ({"seed = 7": "seed = 7\n[verification]\nsnapshot_interval = 3"}, "must divide inner_steps"),
        ({"seed = 7": "seed = 7\n[verification]\nsegments = 5"}, "segments (5) must be <="),
        ({"seed = 7": 'seed = 7\n[verification]\nmode = "tolerance"'}, "crowdtrain calibrate"),
        ({"0xab": "0xzz"}, "dataset"),
        ({"reward_per_unit = 5": "reward_per_unit = 1.5"}, "not a float"),
        ({"seed = 7": "seed = ["}, "not valid TOML"),
    ],
)
def test_errors_name_the_field(edit: dict[str, str], needle: str) -> None:
    with pytest.raises(SpecError) as ei:
        parse_spec(spec_text(**edit))
    assert needle in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_frozen() -> None:
    s = parse_spec(spec_text())
    with pytest.raises(Exception):
        s.seed = 3  # type: ignore[misc]
    assert isinstance(s, JobSpec)
