"""One demo per folder: the supervisor's lock on instance/billsync.pid, and the web port check."""

from __future__ import annotations

import os
import socket

import pytest

from connector.demo import DemoError, check_web_port, hold_demo_lock, webhook_endpoint


def test_the_lock_names_its_holder_and_is_free_again_once_released(tmp_path):
    path = tmp_path / "instance" / "billsync.pid"
    held = hold_demo_lock("http://127.0.0.1:5000", path)
    assert held is not None
    assert path.read_text() == f"{os.getpid()} http://127.0.0.1:5000\n"
    for keep in (True, False):
        with pytest.raises(DemoError) as refused:
            hold_demo_lock("http://127.0.0.1:5001", path, keep=keep)
        assert str(refused.value) == (f"billsync is already running from this folder (pid {os.getpid()}, "
                                      "http://127.0.0.1:5000); stop it with Ctrl-C there")
    assert path.read_text() == f"{os.getpid()} http://127.0.0.1:5000\n"  # the refused ones wrote nothing
    held.close()  # as when the supervisor exits, however it exits
    assert hold_demo_lock("http://127.0.0.1:5001", path, keep=False) is None
    again = hold_demo_lock("http://127.0.0.1:5001", path)
    assert again is not None and path.read_text().endswith(" http://127.0.0.1:5001\n")
    again.close()


def test_a_taken_web_port_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        with pytest.raises(DemoError, match=f"^port {port} on 127.0.0.1 is taken by another program"):
            check_web_port("127.0.0.1", port)
    check_web_port("127.0.0.1", port)


@pytest.mark.parametrize("host, url", [("127.0.0.1", "http://127.0.0.1:5000"), ("0.0.0.0", "http://127.0.0.1:5000"),
                                       ("::", "http://[::1]:5000")])
def test_the_sandbox_posts_to_the_web_process_on_loopback(host, url):
    assert webhook_endpoint(host, "5000", "t0k") == f"{url}/webhooks/salesforce/outbound-message/t0k"
