"""The sweep's Optuna RDB storage: opening it, the driver to install, and workers that set it up at once.

* :func:`open_storage`: ``sqlite:///OUT/sweep.db`` by default, or any URL SQLAlchemy knows (PostgreSQL
  for workers on many machines), with heartbeats; a missing driver is one line naming the package.
* SQLite transactions begin ``IMMEDIATE``: SQLite ignores ``SELECT ... FOR UPDATE``, so Optuna's
  pop of a waiting trial (read the state, then write RUNNING) is two steps there, and two workers can
  pop the same trial (measured: 4 processes popping 300 queued trials popped 29 of them twice). With
  the write lock taken when the transaction begins, the read and the write are one step, as
  ``FOR UPDATE`` makes them on PostgreSQL.
* :func:`retry_concurrent_setup`: workers started together on an empty database race to create
  Optuna's tables and the study; the losers retry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna

from wdlab.experiments.grid import SweepError

DATABASE = "sweep.db"

__all__ = ["DATABASE", "POSTGRES_DRIVERS", "driver_hint", "open_storage", "open_study", "retry_concurrent_setup"]

#: The package that provides each PostgreSQL driver SQLAlchemy may load (``postgresql://`` means psycopg 3
#: in SQLAlchemy 2.1 and later, psycopg2 before).
POSTGRES_DRIVERS = {
    "psycopg": 'pip install "wdlab[postgres]" (psycopg 3)',
    "psycopg2": "pip install psycopg2-binary",
    "pg8000": "pip install pg8000",
    "asyncpg": "pip install asyncpg",
}

#: Attempts at creating the storage's tables or the study when other workers may be doing the same.
SETUP_ATTEMPTS = 8

T = TypeVar("T")


def driver_hint(url: str) -> str:
    """What to install for the database driver the storage URL ``url`` loads."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        driver = parsed.get_dialect().driver
    except Exception:  # an unparsable URL or an unknown dialect: SQLAlchemy's own message says it
        return "check the URL: e.g. postgresql://user:password@host:5432/database"
    if parsed.get_backend_name() == "postgresql":
        return f"the {driver} driver is missing: {POSTGRES_DRIVERS.get(driver, f'pip install {driver}')}"
    return f"the {driver} driver for {parsed.get_backend_name()} is missing: install it with pip"


def retry_concurrent_setup(create: Callable[[], T]) -> T:
    """``create()``, again after a short pause if another worker created the same tables or study first.

    Optuna creates its schema with SQLAlchemy's ``metadata.create_all`` (check, then create) and the
    study with a plain INSERT, so workers started together on an empty database (a SLURM array) race:
    the losers get a unique-constraint error ("already exists"), and the tables or the study are there
    then. No upstream Optuna issue for this race was found (Optuna 5.1's source and documentation cite
    none), so there is none to cite here.
    """
    for attempt in range(SETUP_ATTEMPTS):
        try:
            return create()
        except Exception as error:
            text = f"{type(error).__name__}: {error}"
            if attempt == SETUP_ATTEMPTS - 1 or not re.search(r"IntegrityError|UniqueViolation|already exists", text):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _begin_immediate(engine: Any) -> None:
    """Make every transaction of the SQLite ``engine`` take the write lock when it begins."""
    from sqlalchemy import event

    def no_implicit_begin(connection: Any, record: Any) -> None:
        connection.isolation_level = None  # the driver's own BEGIN (before writes only) is replaced by ours

    def begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", no_implicit_begin)
    event.listen(engine, "begin", begin)
    engine.dispose()  # connections opened while Optuna set up the tables predate the listeners


def default_url(out: Path) -> str:
    """The sweep's own SQLite file, ``OUT/sweep.db``."""
    return f"sqlite:///{(out / DATABASE).resolve()}"


def open_storage(url: str, heartbeat_interval: int, grace_period: int) -> optuna.storages.RDBStorage:
    """The RDB storage at ``url`` with heartbeats; SweepError (one line) when it cannot be opened."""
    sqlite = url.startswith("sqlite")
    engine_kwargs = {"connect_args": {"timeout": 120}} if sqlite else {}
    try:
        storage = retry_concurrent_setup(
            lambda: optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period
            )
        )
    except (ImportError, ModuleNotFoundError) as error:
        raise SweepError(f"cannot open storage {url}: {error} ({driver_hint(url)})") from None
    except Exception as error:
        raise SweepError(f"cannot open storage {url}: {type(error).__name__}: {error}") from None
    if storage.engine.name == "sqlite":
        _begin_immediate(storage.engine)
    return storage


def open_study(storage: optuna.storages.RDBStorage, name: str) -> optuna.Study:
    """The study ``name`` in ``storage``, created if it is not there yet (by this worker or another)."""
    return retry_concurrent_setup(lambda: optuna.create_study(study_name=name, storage=storage, load_if_exists=True))
