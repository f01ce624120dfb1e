"""The integration tests' own stack: the user's stack, moved aside.

Its state lives in ``<state_dir>/test-stack`` (lake, Kafka log, Redis data, Dagster home, secrets,
logs) and its services listen on the user's ports plus ``PORT_SHIFT``; only the JVM artifacts setup
downloaded are shared. The cluster profile's test stack (``LAKEHOUSE_PROFILE=cluster``, `make
test-cluster`) is another: ``<state_dir>/test-stack-cluster``, ports plus twice the shift. The
integration session (``tests/integration/conftest.py``) runs with ``env(user)`` in its environment,
so every process it starts points there too.

    python -m lakehouse.stack.test_stack down|status    # `make test-down`: stop what a session left
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lakehouse.settings import ENV_PREFIX, PROFILE_DEFAULTS, Settings, get_settings, restore_env, swap_env

#: The test stack listens on the user's ports plus this (9092 -> 19092, 3000 -> 13000, ...): below
#: Linux's ephemeral range (32768+), so no client's outgoing connection holds one by chance.
PORT_SHIFT = 10_000
#: Settings that would point the tests somewhere else than their own stack: left unset for them.
UNSET = ("lake_root", "checkpoint_root", "kafka_bootstrap_servers", "s3_endpoint")


def state_dir(user: Settings) -> Path:
    """The test stack's state: one per profile (a cluster's Kafka storage and Dagster's are not a local one's)."""
    return user.state_dir / ("test-stack" if user.profile == "local" else f"test-stack-{user.profile}")


def port_shift(user: Settings) -> int:
    """PORT_SHIFT for the local profile's test stack, twice that for the cluster's: both may run at once."""
    return PORT_SHIFT if user.profile == "local" else 2 * PORT_SHIFT


def env(user: Settings) -> dict[str, str]:
    """The LAKEHOUSE_* variables of the test stack of USER's settings."""
    out = {"STATE_DIR": str(state_dir(user)), "JVM_ROOT": str(user.jvm_dir)}
    for name in Settings.model_fields:
        if name.endswith("_port"):
            port = getattr(user, name) + port_shift(user)
            if port > 65535:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={getattr(user, name)}: no room for the test stack's")
            out[name.upper()] = str(port)
    return {f"{ENV_PREFIX}{k}": v for k, v in out.items()}


def apply(user: Settings) -> dict[str, str | None]:
    """Point this process (and its children) at the test stack; returns what ``settings.restore_env`` puts back."""
    saved = swap_env(env(user), unset=[f"{ENV_PREFIX}{name.upper()}" for name in UNSET])
    s = get_settings()
    profile = PROFILE_DEFAULTS.get(s.profile, {})  # the cluster profile's own lake: the test stack's store's
    left = [f"{ENV_PREFIX}{name.upper()}" for name in UNSET if getattr(s, name) not in (None, profile.get(name))]
    if left:  # set in a .env file, which the environment cannot unset
        restore_env(saved)
        raise ValueError(f"{', '.join(left)} set in .env: the integration tests run on a stack of their own")
    return saved


def main(argv: list[str]) -> int:
    """`lakehouse ARGV` on the test stack (the CLI of this interpreter's environment)."""
    apply(get_settings())
    cli = Path(sys.executable).with_name("lakehouse")
    os.execv(cli, [str(cli), *argv])  # noqa: S606 (the project's own CLI, beside this interpreter)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
