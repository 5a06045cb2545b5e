"""The model file's msgpack, read within a memory bound.

msgpack's own unpacker builds whatever the bytes describe before anything
can look at it: one byte is an empty map, about 80 bytes of Python objects,
so 20 MB of them took 1.45 GB. read() builds the same values one at a time
and charges each against a budget proportional to the bytes it reads,
before it exists where its size is declared (a container's entries, a
string's or bin's bytes); a file whose values would cost more is refused
before they do. It also refuses what no model file holds: extension types,
nesting deeper than the format's, map keys that are not strings.
docs/reliability.md states the bound, measured by bench/loadfuzz.py.
"""

from __future__ import annotations

import io
import sys

import msgpack


class ModelFormatError(ValueError):
    """The file is not a model rnnpipe can load; the message says why."""


def fail(message):
    # messages quote what the file holds: keep them to one short line
    message = message.replace("\r", "\\r").replace("\n", "\\n")
    raise ModelFormatError(message if len(message) <= 300 else message[:297] + "...")


# Bytes of Python objects a file's values may take per byte it holds, and a
# fixed allowance. A model is mostly weight data, which costs its own size (a
# bin is a bytes object); the factor covers the most vocabulary per weight
# byte (one unit, Adagrad: each character an 80-byte str and 8 bytes of
# list for 4 bytes of file and 24 of weights: 4.0), the allowance the most
# arrays a valid file holds (1,024 GRU layers of one unit, Adam, an
# interrupted run's state: 13,000 arrays, 9.4 MB of maps, lists and strings).
PER_BYTE = 4
ALLOWANCE = 16 << 20
DEPTH = 16  # the format nests 7 deep (state.resume.state[i][j].shape)
WINDOW = 1 << 20  # bytes the unpacker reads at a time

# CPython's objects on 64 bits: a list and its slots; a map, its first table, each entry as it
# grows (while the table is resized both are there); an empty map; a key kept once
LIST_COST, SLOT_COST, MAP_COST, ENTRY_COST, EMPTY_MAP, KEY_COST = 64, 8, 200, 48, 64, 64

# what each first byte of a msgpack value starts
SCALAR, STR, BIN, MAP, ARRAY, EXT = range(6)
KIND = bytearray([SCALAR]) * 256  # integers, floats, nil, true, false (and 0xc1, which unpack refuses)
for _first, _kind in (
    ((*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB), STR),
    ((0xC4, 0xC5, 0xC6), BIN),
    ((*range(0x80, 0x90), 0xDE, 0xDF), MAP),
    ((*range(0x90, 0xA0), 0xDC, 0xDD), ARRAY),
    ((0xC7, 0xC8, 0xC9, *range(0xD4, 0xD9)), EXT),
):
    for _b in _first:
        KIND[_b] = _kind
MISSING = object()  # a map's next entry awaits its key
LENGTH = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}  # bytes of a str's or bin's length


class _Over(Exception):
    """The values would take more memory than the budget allows."""


def read(data: bytes, what: str):
    """The msgpack value data holds, or ModelFormatError saying why not
    (what: how the message names the data, "the file")."""
    if not data:
        fail(f"{what} is empty")
    reader = _Reader(data, PER_BYTE * len(data) + ALLOWANCE)
    try:
        value = reader.value()
    except msgpack.OutOfData:
        fail(f"{what} is truncated: it ends after {len(data)} bytes, before its msgpack data does")
    except MemoryError:
        raise
    except _Over:
        fail(f"{what} holds more msgpack values than a model of {len(data):,} bytes can: reading them would take "
             f"over {PER_BYTE} times its size in memory")  # fmt: skip
    except ModelFormatError as e:
        fail(f"{what} holds {e}")
    except Exception as e:  # msgpack raises many types for garbage
        fail(f"{what} is not valid msgpack ({type(e).__name__})")
    if reader.unpacker.tell() != len(data):
        fail(f"{what} is not valid msgpack (ExtraData)")
    return value


def _size(v):
    """Bytes a new str or bin takes: CPython's small objects come in 16-byte
    steps; empty and one-character Latin-1 strings and bins of at most one
    byte are shared, made once."""
    if len(v) <= 1 and (not v or isinstance(v, bytes) or ord(v) < 256):
        return 0
    return (sys.getsizeof(v) + 15) & ~15


class _Reader:
    def __init__(self, data, budget):
        self.data, self.left, self.keys = data, budget, {}
        n = len(data)
        # no declared length can pass the bytes there are; read through a window, not a copy of
        # data (BytesIO shares a bytes object's buffer until written to)
        self.unpacker = msgpack.Unpacker(io.BytesIO(data), read_size=min(WINDOW, n), raw=False, max_buffer_size=n,
                                         max_bin_len=n, max_str_len=n, max_ext_len=n, max_array_len=n,
                                         max_map_len=n)  # fmt: skip

    def value(self):
        """The next value, built without recursion (and with local names
        only: a file of 1,024 layers holds 120,000 values): a stack of the
        containers being filled, each [container, entries left, key awaiting
        its value (None in a list)]."""
        u, data, size, keys, left = self.unpacker, self.data, len(self.data), self.keys, self.left
        tell, unpack, getsizeof = u.tell, u.unpack, sys.getsizeof
        stack, want_key = [], False
        while True:
            at = tell()
            if at >= size:
                raise msgpack.OutOfData
            first = data[at]
            kind = KIND[first]
            if want_key and kind != STR:
                fail(f"a map key that is not a string (at byte {at})")
            if kind == SCALAR:
                v = unpack()
                if type(v) is float:
                    left -= 32
                elif type(v) is int and not -5 <= v <= 256:  # nil, true, false and small integers are shared
                    left -= 32 if -(2**60) < v < 2**60 else 48
            elif kind == STR or kind == BIN:
                # charged before it exists, for what its length declares: UTF-8 is decoded one
                # byte a character, then copied into four at the first wide one
                n = first & 0x1F if first <= 0xBF else int.from_bytes(data[at + 1 : at + 1 + LENGTH[first]], "big")
                if n > size - at:
                    raise msgpack.OutOfData
                most = 5 * n + 96 if kind == STR else n + 48
                if left < most:
                    raise _Over
                v = unpack()
                if want_key:  # the same keys in every array's map (dtype, shape, data) are kept once
                    known = keys.get(v)
                    if known is None:
                        keys[v] = v
                        left -= _size(v) + KEY_COST  # and its place in keys
                    else:
                        v = known
                elif len(v) > 1:
                    left -= (getsizeof(v) + 15) & ~15
                elif len(v) == 1 and kind == STR and ord(v) > 255:  # bins of a byte and Latin-1 characters are shared
                    left -= (getsizeof(v) + 15) & ~15
            elif kind == EXT:
                fail(f"a msgpack extension type (0x{first:02x} at byte {at}), which the format never uses")
            elif len(stack) >= DEPTH:
                fail(f"values nested over {DEPTH} deep (at byte {at}); the format nests 7 deep")
            elif kind == ARRAY:
                n = u.read_array_header()
                if n > size - tell():  # every entry takes a byte at least
                    raise msgpack.OutOfData
                left -= LIST_COST + SLOT_COST * n
                if left < 0:  # before the list exists
                    raise _Over
                v = [None] * n
                if n:
                    stack.append([v, n, None])
                    continue
            else:
                n = u.read_map_header()
                if 2 * n > size - tell():
                    raise msgpack.OutOfData
                left -= MAP_COST + ENTRY_COST * n if n else EMPTY_MAP
                if left < 0:
                    raise _Over
                v = {}
                if n:
                    stack.append([v, n, MISSING])
                    want_key = True
                    continue
            if left < 0:
                raise _Over
            # v is whole: into its container, and each container it completes into its own
            while stack:
                top = stack[-1]
                container, key = top[0], top[2]
                if key is None:  # a list
                    container[len(container) - top[1]] = v
                elif key is MISSING:  # v is a key
                    top[2], want_key = v, False
                    break
                else:
                    container[key] = v
                    top[2], want_key = MISSING, True
                top[1] -= 1
                if top[1]:
                    break
                stack.pop()
                want_key = False
                v = container
            else:
                self.left = left
                return v
