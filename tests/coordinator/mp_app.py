"""App factory for the multi-process test and the benchmark: `uvicorn --factory
tests.coordinator.mp_app:create`. Settings come from CROWDTRAIN_COORD_* variables; the
test-only static gateway is filled from the JSON file named by CROWDTRAIN_TEST_GATEWAY
({"stakes": {address: amount}, "jobs": [ChainJob fields...]}); results are judged by the
StructuralIntake. Never used outside tests and bench/.
"""
from __future__ import annotations

import json
import os

from fastapi import FastAPI

from coordinator.chain import ChainJob, TestOnlyStaticGateway
from coordinator.core.config import Settings
from coordinator.intake import StructuralIntake
from coordinator.main import create_app


def create() -> FastAPI:
    with open(os.environ["CROWDTRAIN_TEST_GATEWAY"]) as f:
        cfg = json.load(f)
    gw = TestOnlyStaticGateway(min_stake=100, stakes=dict(cfg["stakes"]),
                               jobs={j["job_id"]: ChainJob(**j) for j in cfg["jobs"]})
    return create_app(Settings(), gateway=gw, intake=StructuralIntake())
