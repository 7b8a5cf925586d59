"""A start whose schema is current skips Alembic (its imports and its run); any other store is migrated as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from qualitybridge.store import connect
from qualitybridge.store.connect import open_store_waiting, schema_is_current, script_heads
from qualitybridge.store.database import create_engine, migrate
from tests.harness import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_schema_engine


def test_the_heads_read_from_the_migration_files_are_alembics() -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(connect.__file__).with_name("migrations")))
    assert script_heads() == frozenset(ScriptDirectory.from_config(config).get_heads())


def test_a_file_without_a_plain_revision_leaves_the_decision_to_alembic(tmp_path: Path) -> None:
    (tmp_path / "0001_a.py").write_text('revision = "0001"\ndown_revision = None\n', encoding="utf-8")
    (tmp_path / "0002_b.py").write_text('revision = "0002"\ndown_revision = ("0001",)\n', encoding="utf-8")
    assert script_heads(tmp_path) == frozenset({"0002"})
    (tmp_path / "0003_c.py").write_text("revision = make_revision()\n", encoding="utf-8")
    assert script_heads(tmp_path) is None


async def test_a_current_schema_is_not_migrated_again_and_a_new_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'qb.db'}"
    engine = create_engine(url)
    assert not await schema_is_current(engine)  # a new database: no version table yet
    await engine.dispose()
    migrations: list[object] = []
    real_migrate = connect.migrate

    async def counting_migrate(engine: object) -> None:
        migrations.append(engine)
        await real_migrate(engine)  # type: ignore[arg-type]

    monkeypatch.setattr(connect, "migrate", counting_migrate)
    store = await open_store_waiting(url)
    assert len(migrations) == 1
    assert await schema_is_current(store.engine)
    await store.aclose()
    store = await open_store_waiting(url)
    assert len(migrations) == 1  # current: Alembic not run
    assert await store.users() == []
    await store.aclose()


@pytest.mark.postgres
async def test_the_schema_check_on_postgresql() -> None:
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    async with postgres_schema_engine(POSTGRES_URL) as engine:
        assert not await schema_is_current(engine)  # no version table yet
        await migrate(engine)
        assert await schema_is_current(engine)
        async with engine.begin() as conn:
            await conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001' WHERE version_num = '0002'")
        assert not await schema_is_current(engine)  # behind: Alembic runs
