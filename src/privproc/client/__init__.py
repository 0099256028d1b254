"""The Private Processing client SDK.

Start from :meth:`privproc.client.sdk.PrivateProcessingClient.from_trust_file` (or its
async variant), with :func:`default_trust_file` for the trust file of the default
per-user state directory (:mod:`privproc.paths`). Errors: :mod:`privproc.client.errors`;
safe terminal output: :func:`privproc.client.display.printable`. Importing this package
loads neither the SDK nor its network libraries.
"""

from privproc.paths import default_state_dir, default_trust_file

__all__ = ["default_state_dir", "default_trust_file"]
