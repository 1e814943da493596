"""The verifier's agent: watch committed rounds, replay sampled segments, challenge faults,
serve on juries (commit-reveal), collect payouts.

Layers: verifier -> training -> protocol (never the worker or the coordinator package).
See docs/verifier.md.
"""


class VerifierError(Exception):
    """Base class of every error raised by the verifier package."""


class StateFileError(VerifierError, ValueError):
    """The verifier's state file is unreadable or from another account/chain."""


class AuditInputError(VerifierError, ValueError):
    """A committed unit's data cannot be obtained or does not match what was committed."""
