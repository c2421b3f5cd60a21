"""The object stream between client and server: frames joined into blocks arrive whole."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.core.digest import hash_bytes
from cairn.wire import FrameParser, frame_header, in_blocks


@settings(max_examples=60, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=3000), max_size=40),
    block=st.integers(min_value=64, max_value=5000),
)
def test_objects_sent_in_blocks_arrive_as_sent(bodies: list[bytes], block: int) -> None:
    """Many small objects go out a block at a time (not two writes per object), and the
    server's parser gets back exactly the objects sent, in order, whatever the block size."""
    pieces = []
    for body in bodies:
        pieces += [frame_header(hash_bytes(body), len(body)), body]
    blocks = list(in_blocks(pieces, block))
    assert b"".join(blocks) == b"".join(pieces)
    largest_piece = max((len(p) for p in pieces), default=0)
    assert all(len(b) < block + largest_piece for b in blocks)
    if pieces:  # fewer writes than pieces once a block holds several
        assert len(blocks) <= len(pieces)
    parser = FrameParser(max_object=1 << 20)
    got = [(d, bytes(b)) for blk in blocks for d, b in parser.feed(blk)]
    assert got == [(hash_bytes(b), b) for b in bodies]


def test_a_stream_of_many_tiny_objects_is_a_few_blocks() -> None:
    bodies = [i.to_bytes(4, "big") * 135 for i in range(20_000)]  # 540 bytes each
    pieces = [p for b in bodies for p in (frame_header(hash_bytes(b), len(b)), b)]
    blocks = list(in_blocks(pieces))
    assert len(blocks) == 12  # ~12 MB in 1 MiB blocks, instead of 40,000 writes
