"""What Temporal's environment configuration names: a server, a namespace, or nothing.

``TEMPORAL_ADDRESS``, ``TEMPORAL_PROFILE``, ``TEMPORAL_CONFIG_FILE`` and the default
config file, read through :mod:`temporalio.envconfig`. Both the connection
(:mod:`sagakit.course.client`) and the learner's namespace (:mod:`sagakit.course.learner`)
ask here.
"""

from __future__ import annotations

from temporalio.envconfig import ClientConfigProfile

from sagakit._errors import ConfigurationError

__all__ = ["configured_profile"]


def configured_profile() -> ClientConfigProfile | None:
    """Return the Temporal envconfig profile that names a server, or ``None``.

    Reads ``TEMPORAL_ADDRESS``, ``TEMPORAL_PROFILE``, ``TEMPORAL_CONFIG_FILE``
    and the default config file through :mod:`temporalio.envconfig`.

    Raises:
        ConfigurationError: the configuration cannot be read (for example a
            ``TEMPORAL_PROFILE`` that the file does not define).
    """
    try:
        profile = ClientConfigProfile.load()
    except Exception as err:  # the bridge raises its own ConfigError type
        raise ConfigurationError(
            f"Temporal's client configuration could not be read: {err}. Check "
            "TEMPORAL_PROFILE and TEMPORAL_CONFIG_FILE, or unset them to use the "
            "local dev server."
        ) from err
    return profile if profile.address else None
