"""One writer per campaign: a second holder is refused with the first one's name; a dead
holder's lock is stale and taken over."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from sdl.records.errors import CampaignLocked
from sdl.records.lock import data_dir_lock, lock_file, postgres_lock

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

HOLD = """
import sys, time
from sdl.records.lock import {lock}
with {lock}({where!r}, {campaign!r}):
    print("holding", flush=True)
    time.sleep(600)
"""


def _holder(lock, where, campaign):
    """A separate process that takes the lock and keeps it until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(lock=lock, where=str(where), campaign=campaign)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "holding"
    return process


def _eventually_acquired(lock, *args):
    """Take ``lock`` once the database has noticed its dead holder (it may take a moment)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with lock(*args):
                return
        except CampaignLocked:
            assert time.monotonic() < deadline, "a dead holder's lock was never released"
            time.sleep(0.2)


def test_a_second_process_on_the_same_campaign_is_refused_with_the_holders_name(tmp_path):
    process = _holder("data_dir_lock", tmp_path, "tio2")
    try:
        with pytest.raises(CampaignLocked, match=f"process {process.pid} .* on "):
            with data_dir_lock(tmp_path, "tio2"):
                pass
        with data_dir_lock(tmp_path, "another-campaign"):
            pass
    finally:
        process.kill()
        process.wait()


def test_a_lock_left_by_a_killed_process_is_stale_and_taken_over(tmp_path):
    process = _holder("data_dir_lock", tmp_path, "tio2")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert str(process.pid) in lock_file(tmp_path, "tio2").read_text()  # left behind
    with data_dir_lock(tmp_path, "tio2"):
        assert f'"pid": {os.getpid()}' in lock_file(tmp_path, "tio2").read_text()
    assert lock_file(tmp_path, "tio2").read_text() == ""


def test_the_lock_file_is_never_followed_through_a_symlink(tmp_path):
    target = tmp_path / "victim"
    target.write_text("keep me")
    lock_file(tmp_path, "tio2").symlink_to(target)
    with pytest.raises(OSError):
        with data_dir_lock(tmp_path, "tio2"):
            pass
    assert target.read_text() == "keep me"


def _postgres_answers() -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", 5432)) == 0


@pytest.mark.services
def test_the_postgres_lock_refuses_a_second_session_and_frees_a_killed_holders(tmp_path):
    if not _postgres_answers():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 for the advisory lock")
    campaign = f"lock-{uuid.uuid4().hex[:8]}"
    with postgres_lock(POSTGRES, campaign):
        with pytest.raises(CampaignLocked, match=f"sdl {campaign} pid {os.getpid()}"):
            with postgres_lock(POSTGRES, campaign):
                pass
    process = _holder("postgres_lock", POSTGRES, campaign)
    with pytest.raises(CampaignLocked, match=f"pid {process.pid}"):
        with postgres_lock(POSTGRES, campaign):
            pass
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    _eventually_acquired(postgres_lock, POSTGRES, campaign)
