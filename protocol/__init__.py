"""Torch-free shared layer: the bytes every party must agree on.

Job spec schema and canonical hash, EIP-712 types, OpenZeppelin-compatible Merkle trees,
digests, the chain client and contract ABIs. Nothing here imports torch or a role
package; see docs/protocol.md for the byte-level definitions.
"""


class ProtocolError(Exception):
    """Base class of every error raised by the protocol package."""
