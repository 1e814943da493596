"""No input produces a 500: every operation in the OpenAPI document gets generated path
parameters and bodies (random JSON, and valid bodies with one field replaced), signed by a
staked worker so the requests get past authentication into the handlers."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.coordinator.helpers import Env, spec_of

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**300), max_value=2**300) | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
PARAM = st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), st.just("1"), st.just("7"),
                  st.text(alphabet="0123456789abcdefxX-_%.", min_size=1, max_size=70),
                  st.just("0x" + "ab" * 32), st.just("ab" * 16))


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'c.sqlite3'}"


def operations(env: Env) -> list[tuple[str, str]]:
    spec = env.client.get("/openapi.json").json()
    # GET /events is an endless stream (covered by test_multiprocess.py against a real server)
    return [(m.upper(), path) for path, ops in spec["paths"].items() for m in ops
            if m in ("get", "post", "put", "head") and path != "/events"]


def valid_bodies(env: Env, grant: dict[str, Any]) -> list[dict[str, Any]]:
    res = env.result_for(grant, env.accounts[0], spec_of(), upload=False)
    return [res.body, {"job_id": 7, "spec": spec_of().model_dump(mode="json")}]


@pytest.mark.slow
def test_no_input_gives_a_500(env: Env) -> None:
    env.register(7)
    grant = env.claim(env.accounts[0]).json()
    ops = operations(env)
    assert len(ops) >= 12
    bodies = valid_bodies(env, grant)
    env.ctx.limiter.limit = 10**9

    @settings(max_examples=400, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(op=st.sampled_from(ops), params=st.lists(PARAM, min_size=3, max_size=3),
           body=st.one_of(JSON, st.sampled_from(bodies).flatmap(
               lambda b: st.tuples(st.sampled_from(sorted(b)), JSON).map(lambda kv: {**b, kv[0]: kv[1]}))),
           raw=st.booleans())
    def run(op: tuple[str, str], params: list[str], body: Any, raw: bool) -> None:
        method, template = op
        names = re.findall(r"{(\w+)}", template)
        path = template
        for name, value in zip(names, params):
            path = path.replace("{" + name + "}", value)
        content = json.dumps(body).encode() if not raw else json.dumps(body)[:-1].encode()
        if method in ("GET", "HEAD"):
            r = env.client.request(method, path)
        else:
            r = env.call(env.accounts[0], method, path, content=content, headers={"content-type": "application/json"})
        assert r.status_code < 500, (method, path, content[:200], r.status_code, r.text[:500])

    run()
