"""The verifier's durable state: `<data_dir>/state-<chainId>-<account>.json` (mode 0600).

    {"format": "crowdtrain-verifier-state/1", "chain_id": 31337, "market": "0x..",
     "account": "0x..", "cursor": 123,                       # last block whose events were handled
     "rounds": [[job, round], ...],                          # committed rounds still to audit
     "audits": {"<job>/<round>/<unit>": {...}},              # what each audit found
     "votes": {"<arbiter dispute id>": {"choice": 2, "salt": "0x..", "commit_tx": .., ...}}}

A vote's salt is written here (fsynced) *before* the commit transaction is sent: a verifier
that crashes after committing can still reveal after a restart, and one that crashes
before sending simply commits again. The salt is secret until the reveal, hence 0600.
Writes go to a temporary file that replaces the old one atomically.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier import StateFileError

FORMAT = "crowdtrain-verifier-state/1"


@dataclass
class VerifierState:
    path: Path
    chain_id: int
    market: str
    account: str
    cursor: int = -1
    rounds: list[list[int]] = field(default_factory=list)
    audits: dict[str, dict[str, Any]] = field(default_factory=dict)
    votes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, data_dir: Path, *, chain_id: int, market: str, account: str) -> "VerifierState":
        """Load the state for (chain, account), or a fresh one; refuses a file for another market."""
        path = Path(data_dir) / f"state-{chain_id}-{account.lower()}.json"
        if not path.is_file():
            return cls(path, chain_id, market, account)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise StateFileError(f"verifier state {path} is unreadable ({e}); move it away to start afresh "
                                 "(pending reveals in it would be lost)") from None
        if d.get("format") != FORMAT or d.get("market", "").lower() != market.lower():
            raise StateFileError(f"verifier state {path} belongs to market {d.get('market')}, not {market}; "
                                 "use another --data-dir per deployment")
        return cls(path, chain_id, market, account, int(d["cursor"]), [list(x) for x in d.get("rounds", [])],
                   dict(d.get("audits", {})), dict(d.get("votes", {})))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"format": FORMAT, "chain_id": self.chain_id, "market": self.market,
                           "account": self.account, "cursor": self.cursor, "rounds": self.rounds,
                           "audits": self.audits, "votes": self.votes}, indent=1, sort_keys=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # -- helpers -----------------------------------------------------------------------
    @staticmethod
    def unit_key(job_id: int, round: int, unit: int) -> str:
        return f"{job_id}/{round}/{unit}"

    def queue_round(self, job_id: int, round: int) -> None:
        if [job_id, round] not in self.rounds:
            self.rounds.append([job_id, round])

    def vote(self, arbiter_dispute_id: int) -> dict[str, Any] | None:
        return self.votes.get(str(arbiter_dispute_id))

    def open_votes(self) -> list[tuple[int, dict[str, Any]]]:
        """Votes committed (or about to be) and not yet revealed or given up."""
        return [(int(k), v) for k, v in self.votes.items() if not v.get("revealed_tx") and not v.get("closed")]
