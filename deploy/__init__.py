"""Contract deployment to any RPC URL (deploy.deploy) and local chain bring-up (deploy.localchain)."""


class DeployError(Exception):
    """Base class of every error raised by the deploy package."""
