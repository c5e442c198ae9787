"""xcheck's parser of gdb's ``*stopped`` records against pygdbmi's (no QEMU)."""

from __future__ import annotations

import pytest
from pygdbmi import gdbmiparser

from xcheck.target.gdb import _parse, _stopped_payload

FRAME = 'frame={addr="0x00000000402029a8",func="??",args=[],arch="aarch64"}'
PRINTED = [  # as gdb-multiarch 13.1 printed them, stopped by QEMU 7.2's stub
    f'*stopped,reason="breakpoint-hit",disp="keep",bkptno="3",{FRAME},thread-id="1",'
    'stopped-threads="all"',
    f'*stopped,reason="breakpoint-hit",disp="del",bkptno="3",{FRAME},thread-id="1",'
    'stopped-threads="all"',
    '*stopped,reason="end-stepping-range",frame={addr="0x0000000040201f04",func="??",'
    'args=[],arch="aarch64"},thread-id="1",stopped-threads="all"',
    '*stopped,reason="signal-received",signal-name="SIGINT",signal-meaning="Interrupt",'
    f'{FRAME},thread-id="1",stopped-threads="all"',
]
DECLINED = [  # left to pygdbmi
    '*stopped,a="q\\"x"',  # an escape
    '*stopped,a="1",a="2"',  # a repeated name (pygdbmi makes a list)
    '*stopped,reason="x",a=[b="1",c="2"]',  # a list of results
    "*stopped",
    '*stopped,a={b="1"',
    '*stopped,a={b="1"]',
    '*stopped,a="1"junk',
]


@pytest.mark.parametrize("line", PRINTED)
def test_stop_records_parse_as_pygdbmi_parses_them(line: str) -> None:
    assert _stopped_payload(line) is not None
    assert _parse(line.encode()) == gdbmiparser.parse_response(line)


@pytest.mark.parametrize("line", DECLINED)
def test_other_shapes_are_left_to_pygdbmi(line: str) -> None:
    assert _stopped_payload(line) is None
    assert _parse(line.encode()) == gdbmiparser.parse_response(line)


def test_stop_pc_and_breakpoint_come_through() -> None:
    payload = _stopped_payload(PRINTED[0])
    assert payload is not None
    assert payload["frame"]["addr"] == "0x00000000402029a8" and payload["bkptno"] == "3"
